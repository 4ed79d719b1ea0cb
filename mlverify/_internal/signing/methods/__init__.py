"""Signers and verifiers as plug-ins, chosen by URI in one place.

Two kinds of plug-in, one file each:

* **key sources**, one per URI scheme family: :mod:`.file` (``file:`` and bare
  paths), :mod:`.pkcs11` (RFC 7512 ``pkcs11:``), :mod:`.kms` (securesystemslib's
  ``awskms:``, ``gcpkms:``, ``azurekms:``, ``hv:``), and :mod:`.sigstore`
  (``sigstore:``, keyless). Each module offers ``load_signer(uri, options) ->
  Signer`` and ``load_public_key(uri) -> PublicKey``.
* **bundle methods**, one per kind of verification material: :mod:`.key`
  (``publicKey``), :mod:`.x509` (``x509CertificateChain``), :mod:`.sigstore`
  (a Fulcio ``certificate`` and a transparency-log entry). Each offers a
  :class:`Verifier`; :mod:`mlverify._internal.signing.trust` builds them.

Adding a key source is one new file and one line in :data:`SCHEMES`.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mlverify._internal.errors import UsageError

if TYPE_CHECKING:
    from mlverify._internal.signing.bundle import SignatureBundle
    from mlverify._internal.signing.keys import PublicKey
    from mlverify._internal.signing.oms import VerifiedStatement


class Signer(Protocol):
    """Signs in-toto statements into Sigstore bundles (DSSE envelopes)."""

    @property
    def name(self) -> str:
        """Who signs, as verification names the signer (e.g. ``key sha256:...``)."""
        ...

    def sign_statement(self, payload: bytes) -> bytes:
        """A complete bundle (JSON bytes) whose DSSE envelope signs ``payload``."""
        ...


class Verifier(Protocol):
    """Judges the bundles of one method against the signers a user trusts."""

    def accepts(self, bundle: SignatureBundle) -> bool:
        """Whether ``bundle``'s verification material is this method's."""
        ...

    def describe(self) -> str:
        """The trusted signers, for messages (e.g. ``key sha256:...``)."""
        ...

    def verify(self, bundle: SignatureBundle) -> list[VerifiedStatement]:
        """Every trusted signer with a valid signature; raise when there is none."""
        ...


def _no_password() -> bytes | None:
    return None


@dataclass(frozen=True)
class SignerOptions:
    """What a signer may need besides its URI (each source reads what it uses)."""

    #: asked only when a key file turns out to be encrypted
    password: Callable[[], bytes | None] = _no_password
    #: Sigstore keyless: an OIDC identity token (else ambient credentials)
    identity_token: str | None = None


#: URI scheme -> the module (in this package) that loads its keys
SCHEMES: dict[str, str] = {
    "file": "file",
    "pkcs11": "pkcs11",
    "awskms": "kms",
    "gcpkms": "kms",
    "azurekms": "kms",
    "hv": "kms",
    "sigstore": "sigstore",
}

# two characters at least, so a Windows drive letter (C:) stays a path
_URI_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


_SECRET = re.compile(r"(?i)([?&;]pin-value=)[^&]*")


def redact(uri: str) -> str:
    """``uri`` as it may be shown: secrets in it (a PKCS#11 ``pin-value``) blanked."""
    return _SECRET.sub(r"\1***", uri)


class KeySource(Protocol):
    def load_signer(self, uri: str, options: SignerOptions) -> Signer: ...

    def load_public_key(self, uri: str) -> PublicKey: ...


def scheme_of(uri: str) -> str:
    """The scheme of a key URI; a bare path (or an existing file) is ``file``."""
    m = _URI_SCHEME.match(uri)
    if m is None or os.path.exists(uri):
        return "file"
    scheme = m.group(1).lower()
    if scheme not in SCHEMES:
        supported = ", ".join(f"{s}:" for s in SCHEMES)
        raise UsageError(
            f"key URI scheme '{m.group(1)}:' is not supported (supported: {supported}); "
            "give a PEM file path or one of these URIs"
        )
    return scheme


def source(uri: str) -> KeySource:
    """The module that loads keys named like ``uri``."""
    module = importlib.import_module(f"{__name__}.{SCHEMES[scheme_of(uri)]}")
    return module


def load_signer(uri: str, options: SignerOptions | None = None) -> Signer:
    """The signer named by ``uri`` (a key file, a token key, a KMS key, ``sigstore:``)."""
    return source(uri).load_signer(uri, options or SignerOptions())


def load_public_key(uri: str) -> PublicKey:
    """The public key named by ``uri`` (a PEM file, a token's public key object, ...)."""
    return source(uri).load_public_key(uri)
