"""Key primitives: in-memory keys, PEM parsing, signature checks, fingerprints.

Keys named by URI (``file:``, ``pkcs11:``, cloud KMS) are loaded by the method
registry in :mod:`mlverify._internal.signing.methods`. Supported algorithms:
ECDSA on P-256, P-384, P-521 (hash follows the curve, as the OMS spec and
Sigstore require) and Ed25519.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mlverify._internal.errors import InputError

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

#: the largest key or certificate file we read (bounded reads at I/O boundaries)
MAX_KEY_FILE = 1024 * 1024

_HINT = re.compile(r"[0-9a-fA-F]{64}")

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


class RawSigner(Protocol):
    """Anything that signs bytes with a private key and names its public key.

    ``sign`` returns the signature over ``data`` as the OMS key method needs it:
    DER ECDSA with the curve's hash (P-256: SHA-256, P-384: SHA-384, P-521:
    SHA-512), or Ed25519. Key files, PKCS#11 tokens and cloud KMS keys all are.
    """

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


def check_algorithm(key: object, where: str) -> None:
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
    check_algorithm(key, where)
    return key  # type: ignore[return-value]


def public_key_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_hint(key: PublicKey) -> str:
    """The OMS key hint: hex SHA-256 of the canonical PEM SubjectPublicKeyInfo."""
    return hashlib.sha256(public_key_pem(key)).hexdigest()


def key_fingerprint(key: PublicKey) -> str:
    """The one fingerprint mlverify prints for a key: ``sha256:`` + the OMS key hint.

    That is SHA-256 over the key's canonical PEM SubjectPublicKeyInfo, so it is
    what ``sha256sum`` prints for a public key file written by ``mlverify keygen``
    or ``openssl pkey -pubout``, and the ``hint`` that mlverify and model_signing
    write into every key-signed bundle: a wrong-key message can name the key that
    signed even when the bundle carries only its hint (docs/signatures.md).
    """
    return "sha256:" + public_key_hint(key)


def fingerprint_of_hint(hint: str | None) -> str | None:
    """The fingerprint a bundle's (untrusted) key hint stands for, if it is one."""
    if hint is None or _HINT.fullmatch(hint) is None:
        return None
    return "sha256:" + hint.lower()


def curve_hash(key: PublicKey) -> hashes.HashAlgorithm | None:
    """The hash ECDSA signatures by ``key`` use (None for Ed25519, which hashes itself)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return None
    return _CURVE_HASH[key.curve.name]()


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
    check_algorithm(key, where)
    return key  # type: ignore[return-value]
