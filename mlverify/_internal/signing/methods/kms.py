"""Cloud KMS and Vault keys through securesystemslib's signer URIs (one adapter).

* ``awskms:KEY_ID`` (an id, ``alias/NAME`` or the key ARN; EC P-256/P-384):
  needs ``boto3`` and AWS credentials;
* ``gcpkms:projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V``
  (EC P-256/P-384): needs ``google-cloud-kms`` and GCP credentials;
* ``azurekms://VAULT.vault.azure.net/keys/NAME[/VERSION]`` (EC P-256/P-384/P-521):
  needs ``azure-identity`` and ``azure-keyvault-keys`` and Azure credentials;
* ``hv:NAME[/VERSION]`` (a HashiCorp Vault transit key, Ed25519): needs ``hvac``,
  ``VAULT_ADDR`` and ``VAULT_TOKEN``.

The back ends sign with their key's current version; a URI that names another
version is refused rather than signed with a different key than it names.

The public key is fetched from the service when the signer is loaded (it names
the signer in the bundle); each signature is made by the service over the
digest of the DSSE PAE and checked locally with that public key before it is
used. Credentials come from the back end's usual environment; mlverify reads
none itself. RSA keys are refused (the OMS key method here is EC or Ed25519).
Without the back end's package the error names the package to install; without
credentials or network, the service's own error is reported in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from cryptography.hazmat.primitives import serialization

from mlverify._internal.errors import InputError, MlverifyError, UsageError
from mlverify._internal.signing.keys import (
    PublicKey,
    check_algorithm,
    key_fingerprint,
    verify_signature,
)
from mlverify._internal.signing.methods import SignerOptions
from mlverify._internal.signing.methods.key import KeyBundleSigner
from mlverify._internal.text import shown


class KmsError(MlverifyError):
    """The key service could not be used (credentials, network, permissions: exit 2)."""


@dataclass(frozen=True)
class Backend:
    scheme: str
    signer_class: str  #: the securesystemslib.signer class
    packages: str  #: what to pip install
    service: str


BACKENDS = {
    "awskms": Backend("awskms", "AWSSigner", "boto3", "AWS KMS"),
    "gcpkms": Backend("gcpkms", "GCPSigner", "google-cloud-kms", "Google Cloud KMS"),
    "azurekms": Backend(
        "azurekms", "AzureSigner", "azure-identity azure-keyvault-keys", "Azure Key Vault"
    ),
    "hv": Backend("hv", "VaultSigner", "hvac", "HashiCorp Vault"),
}


@dataclass(frozen=True)
class KmsUri:
    backend: Backend
    uri: str
    #: the arguments of the back end's ``import_`` (which fetches the public key)
    import_args: tuple[str, ...]
    #: the URI names a key version: the service's key must be that version
    pinned: bool = False


def parse_uri(uri: str) -> KmsUri:
    """Check a KMS URI's shape (no network)."""
    scheme, _, rest = uri.partition(":")
    backend = BACKENDS.get(scheme.lower())
    if backend is None:
        raise UsageError(f"{shown(uri)!r}: not a KMS URI ({', '.join(BACKENDS)})")
    if backend.scheme == "azurekms":
        parsed = urlparse(uri)
        vault = parsed.netloc.split(".", 1)[0]
        parts = [p for p in parsed.path.split("/") if p]
        if (
            not parsed.netloc.endswith(".vault.azure.net")
            or len(parts) not in (2, 3)
            or parts[0] != "keys"
        ):
            raise UsageError(
                f"{shown(uri)!r}: expected azurekms://VAULT.vault.azure.net/keys/NAME[/VERSION]"
            )
        return KmsUri(backend, uri, (vault, parts[1]), pinned=len(parts) == 3)
    if not rest or rest.startswith("/") or any(c.isspace() for c in rest):
        example = {
            "awskms": "awskms:KEY_ID (or alias/NAME, or the key ARN)",
            "gcpkms": "gcpkms:projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V",
            "hv": "hv:KEY_NAME",
        }[backend.scheme]
        raise UsageError(f"{shown(uri)!r}: expected {example}")
    if backend.scheme == "gcpkms":
        parts = rest.split("/")
        if len(parts) != 10 or parts[0::2] != [
            "projects",
            "locations",
            "keyRings",
            "cryptoKeys",
            "cryptoKeyVersions",
        ]:
            raise UsageError(
                f"{shown(uri)!r}: expected gcpkms:projects/P/locations/L/keyRings/R/"
                "cryptoKeys/K/cryptoKeyVersions/V"
            )
    if backend.scheme == "hv":
        return KmsUri(backend, uri, (rest.split("/", 1)[0],), pinned="/" in rest)
    return KmsUri(backend, uri, (rest,))


def _signer_class(kms: KmsUri) -> Any:
    from securesystemslib import signer as sslib

    cls = getattr(sslib, kms.backend.signer_class)
    module = __import__(cls.__module__, fromlist=["_"])
    missing = next((v for k, v in vars(module).items() if k.endswith("_IMPORT_ERROR") and v), None)
    if missing:
        raise UsageError(
            f"{kms.uri}: signing with {kms.backend.service} needs {kms.backend.packages}; "
            f"install it with pip install {kms.backend.packages}"
        )
    return cls


def _service_error(kms: KmsUri, doing: str, e: BaseException) -> KmsError:
    detail = " ".join(str(e).split())[:200] or type(e).__name__
    return KmsError(
        f"{kms.uri}: cannot {doing} at {kms.backend.service} ({type(e).__name__}: {detail})",
        remedy="check the key name, the credentials in the environment and network access",
    )


def _require_securesystemslib() -> None:
    try:
        import securesystemslib  # noqa: F401
    except ImportError:
        raise UsageError(
            "KMS keys need securesystemslib; install it with pip install 'mlverify[kms]'"
        ) from None


@dataclass(frozen=True)
class KmsKey:
    """A key held by a KMS: it signs, mlverify checks each signature with its public key."""

    kms: KmsUri
    signer: Any  #: the securesystemslib signer
    public_key: PublicKey

    def sign(self, data: bytes) -> bytes:
        try:
            signature = self.signer.sign(data)
            raw = bytes.fromhex(signature.signature)
        except ValueError as e:
            raise _service_error(self.kms, "sign", e) from None
        except Exception as e:  # the back ends raise their own client errors
            raise _service_error(self.kms, "sign", e) from None
        if not verify_signature(self.public_key, raw, data):
            raise KmsError(
                f"{self.kms.uri}: the signature returned by {self.kms.backend.service} does "
                f"not verify with the key's public key {key_fingerprint(self.public_key)}"
            )
        return raw


def load_key(uri: str) -> KmsKey:
    kms = parse_uri(uri)
    _require_securesystemslib()
    cls = _signer_class(kms)
    try:
        private_uri, sslib_key = cls.import_(*kms.import_args)
        signer = cls.from_priv_key_uri(private_uri, sslib_key)
    except Exception as e:
        raise _service_error(kms, "fetch the public key", e) from None
    if kms.pinned and private_uri != uri:
        raise KmsError(
            f"{uri}: names a key version, but {kms.backend.service} offers {private_uri}; "
            "name the current version (or none)"
        )
    pem = sslib_key.keyval.get("public", "")
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise InputError(f"{uri}: the service returned a public key that is not PEM") from None
    check_algorithm(key, uri)
    return KmsKey(kms, signer, key)  # type: ignore[arg-type]


def load_signer(uri: str, options: SignerOptions) -> KeyBundleSigner:
    return KeyBundleSigner(load_key(uri))


def load_public_key(uri: str) -> PublicKey:
    """Refused: verification never touches the network, so a KMS key is trusted by its
    public key, exported once to a file (or pinned inline in a policy)."""
    kms = parse_uri(uri)
    raise UsageError(
        f"{shown(uri)}: a {kms.backend.service} key cannot be trusted by its URI: verifying "
        "never contacts a service",
        remedy="export the key's public key to a PEM file once and trust that file",
    )
