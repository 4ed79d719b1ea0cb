"""Keys named by URI: load private keys to sign and public keys to verify.

Only the ``file:`` scheme exists today (a bare path means ``file:``); other
schemes (``pkcs11:``, cloud KMS) plug in through :func:`load_signer` without
touching callers. Supported algorithms: ECDSA on P-256, P-384, P-521 (hash
follows the curve, as the OMS spec and Sigstore require) and Ed25519.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mlverify._internal.errors import InputError, UsageError
from mlverify._internal.files import read_bounded

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

#: the largest key or certificate file we read (bounded reads at I/O boundaries)
MAX_KEY_FILE = 1024 * 1024

_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


class Signer(Protocol):
    """Anything that signs bytes and names its public key."""

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


def key_path(uri: str) -> Path:
    """The file behind a key URI (``file:PATH``, ``file:///PATH`` or a bare path)."""
    if uri.startswith("file:"):
        parsed = urlparse(uri)
        return Path(unquote(parsed.path if parsed.netloc in ("", "localhost") else uri[5:]))
    scheme = _URI_SCHEME.match(uri)
    if scheme and not os.path.exists(uri):
        raise UsageError(
            f"key URI scheme '{scheme.group(1)}:' is not supported yet; "
            "give a PEM file path or file:PATH"
        )
    return Path(uri)


def _check_algorithm(key: object, where: str) -> None:
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if key.curve.name in _CURVE_HASH:
            return
        raise InputError(
            f"{where}: elliptic curve {key.curve.name} is not supported; "
            "use P-256, P-384, P-521 or Ed25519"
        )
    raise InputError(
        f"{where}: key type {type(key).__name__} is not supported; "
        "use an EC (P-256/P-384/P-521) or Ed25519 key"
    )


def load_public_key_pem(data: bytes, *, where: str) -> PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(
            f"{where}: not a PEM public key (expected '-----BEGIN PUBLIC KEY-----'); "
            "export it with 'openssl pkey -pubout'"
        ) from None
    _check_algorithm(key, where)
    return key  # type: ignore[return-value]


def load_public_key(uri: str) -> PublicKey:
    path = key_path(uri)
    return load_public_key_pem(
        read_bounded(path, what="public key", limit=MAX_KEY_FILE), where=str(path)
    )


def public_key_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_hint(key: PublicKey) -> str:
    """The OMS key hint: hex SHA-256 of the PEM SubjectPublicKeyInfo bytes."""
    return hashlib.sha256(public_key_pem(key)).hexdigest()


def key_fingerprint(key: PublicKey) -> str:
    """SHA-256 over the DER SubjectPublicKeyInfo: a stable signer name."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def verify_signature(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` by ``key`` covers ``data``."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(_CURVE_HASH[key.curve.name]()))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class KeySigner:
    """Signs with an in-memory private key."""

    private_key: PrivateKey

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(data)
        algorithm = _CURVE_HASH[self.private_key.curve.name]()
        return self.private_key.sign(data, ec.ECDSA(algorithm))


def load_private_key_pem(
    data: bytes, *, where: str, password: Callable[[], bytes | None]
) -> PrivateKey:
    """Load a PEM private key, asking for a password only when it is encrypted."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: needs a password
        secret = password()
        if not secret:
            raise InputError(
                f"{where}: the private key is encrypted; set MLVERIFY_KEY_PASSWORD "
                "or run in a terminal to be prompted"
            ) from None
        try:
            key = serialization.load_pem_private_key(data, password=secret)
        except ValueError:
            raise InputError(f"{where}: wrong password for the private key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(
            f"{where}: not a PEM private key (expected '-----BEGIN ... PRIVATE KEY-----'); "
            "create one with 'mlverify keygen'"
        ) from None
    _check_algorithm(key, where)
    return key  # type: ignore[return-value]


def load_signer(uri: str, *, password: Callable[[], bytes | None]) -> Signer:
    """A signer for the key named by ``uri``."""
    path = key_path(uri)
    data = read_bounded(path, what="private key", limit=MAX_KEY_FILE)
    return KeySigner(load_private_key_pem(data, where=str(path), password=password))
