"""mlverify: supply-chain verification for machine-learning artifacts.

The pipeline: artifact -> manifest -> signatures and attestations -> scan findings ->
evidence -> policy decision -> report. This package is the public interface; everything
under ``mlverify._internal`` may change without notice.

>>> import mlverify
>>> result = mlverify.check("fixtures/allowed/model.safetensors")  # doctest: +SKIP
>>> result.allowed, [r.message for d in result.decisions for r in d.reasons]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlverify._internal.errors import (
    ArtifactMismatchError,
    InputError,
    MlverifyError,
    Remedy,
    SignatureNotFoundError,
    UntrustedSignerError,
    UsageError,
    VerificationError,
)
from mlverify._internal.version import __version__

if TYPE_CHECKING:  # resolved lazily at run time: `import mlverify` stays cheap
    from mlverify._internal.api import (
        ScanReport,
        check,
        hash,
        keygen,
        load_policy,
        load_signer,
        scan,
        sign,
        verify,
    )
    from mlverify._internal.check import CheckResult
    from mlverify._internal.manifest.manifest import Manifest
    from mlverify._internal.policy.engine import Decision, Reason
    from mlverify._internal.policy.model import Policy
    from mlverify._internal.scan.model import Finding, Limits, Severity, Status
    from mlverify._internal.scan.model import ScanReport as FileReport
    from mlverify._internal.signing.api import Verification
    from mlverify._internal.signing.keygen import KeyPair
    from mlverify._internal.signing.methods import Signer
    from mlverify._internal.signing.trust import (
        Trust,
        TrustedCertificate,
        TrustedKey,
        TrustedSigstore,
    )
    from mlverify._internal.sources.settings import AdmissionRules, SourceSettings

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "check": "mlverify._internal.api",
    "scan": "mlverify._internal.api",
    "hash": "mlverify._internal.api",
    "load_policy": "mlverify._internal.api",
    "load_signer": "mlverify._internal.api",
    "sign": "mlverify._internal.api",
    "verify": "mlverify._internal.api",
    "keygen": "mlverify._internal.api",
    "Verification": "mlverify._internal.signing.api",
    "KeyPair": "mlverify._internal.signing.keygen",
    "Signer": "mlverify._internal.signing.methods",
    "Trust": "mlverify._internal.signing.trust",
    "SourceSettings": "mlverify._internal.sources.settings",
    "AdmissionRules": "mlverify._internal.sources.settings",
    "TrustedKey": "mlverify._internal.signing.trust",
    "TrustedCertificate": "mlverify._internal.signing.trust",
    "TrustedSigstore": "mlverify._internal.signing.trust",
    "ScanReport": "mlverify._internal.api",
    "CheckResult": "mlverify._internal.check",
    "Manifest": "mlverify._internal.manifest.manifest",
    "Decision": "mlverify._internal.policy.engine",
    "Reason": "mlverify._internal.policy.engine",
    "Policy": "mlverify._internal.policy.model",
    "Finding": "mlverify._internal.scan.model",
    "Limits": "mlverify._internal.scan.model",
    "Severity": "mlverify._internal.scan.model",
    "Status": "mlverify._internal.scan.model",
    "FileReport": ("mlverify._internal.scan.model", "ScanReport"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'mlverify' has no attribute {name!r}")
    import importlib

    module, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


__all__ = [
    "AdmissionRules",
    "ArtifactMismatchError",
    "CheckResult",
    "Decision",
    "FileReport",
    "Finding",
    "InputError",
    "KeyPair",
    "Limits",
    "Manifest",
    "MlverifyError",
    "Policy",
    "Reason",
    "Remedy",
    "ScanReport",
    "Severity",
    "SignatureNotFoundError",
    "Signer",
    "SourceSettings",
    "Status",
    "Trust",
    "TrustedCertificate",
    "TrustedKey",
    "TrustedSigstore",
    "UntrustedSignerError",
    "UsageError",
    "Verification",
    "VerificationError",
    "__version__",
    "check",
    "hash",
    "keygen",
    "load_policy",
    "load_signer",
    "scan",
    "sign",
    "verify",
]
