"""Refresh the pinned Sigstore trusted root with sigstore-python's TUF client.

This is the only code in mlverify that opens network connections, and it runs
only on an explicit ``mlverify trust update``.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlverify._internal.errors import InputError, MlverifyError, Remedy
from mlverify._internal.files import write_atomically
from mlverify._internal.signing.sigstore_sign import describe_exception
from mlverify._internal.signing.sigstore_verify import (
    load_trusted_root,
    refreshed_trust_root_path,
    require_sigstore,
)


class TrustUpdateError(MlverifyError):
    """The trusted root could not be refreshed (network or TUF failure; exit 2)."""

    code = "trust-update"


def update_trusted_root(out: Path | None, *, staging: bool = False) -> tuple[Path, str]:
    """Fetch, check and write the trusted root; returns (path, one-line summary)."""
    require_sigstore()
    from sigstore._internal.tuf import DEFAULT_TUF_URL, STAGING_TUF_URL, TrustUpdater

    url = STAGING_TUF_URL if staging else DEFAULT_TUF_URL
    try:
        updater = TrustUpdater(url, offline=False)
        fetched = Path(updater.get_trusted_root_path())
        data = fetched.read_bytes()
    except Exception as e:
        detail = describe_exception(e)
        raise TrustUpdateError(
            f"cannot refresh the Sigstore trusted root from {url} ({detail})",
            remedy=Remedy("check network access, or keep using the pinned root", "trust_root"),
        ) from None
    target = out or refreshed_trust_root_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{target.parent}: cannot create directory ({e.strerror})") from None
    write_atomically(target, data)
    load_trusted_root(target)  # refuse to leave an unusable root behind
    doc = json.loads(data)
    summary = (
        f"{len(doc.get('tlogs', []))} transparency logs, "
        f"{len(doc.get('certificateAuthorities', []))} certificate authorities, "
        f"{len(doc.get('ctlogs', []))} CT logs, "
        f"{len(doc.get('timestampAuthorities', []))} timestamp authorities"
    )
    return target, summary
