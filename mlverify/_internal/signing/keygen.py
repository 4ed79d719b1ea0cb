"""Make a signing key pair: PEM files, the private one mode 0600 (optionally encrypted)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlverify._internal.errors import UsageError

KEY_TYPES = ("ec-p256", "ec-p384", "ec-p521", "ed25519")


@dataclass(frozen=True)
class KeyPair:
    private_key: Path
    public_key: Path
    #: the fingerprint every command names this key by (``sha256:...``)
    fingerprint: str


def generate_key_pair(
    prefix: Path, *, key_type: str = "ec-p256", password: str | None = None, overwrite: bool = False
) -> KeyPair:
    """Write ``PREFIX.key`` (private, 0600) and ``PREFIX.pub``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from mlverify._internal.files import write_atomically
    from mlverify._internal.signing.keys import PrivateKey, key_fingerprint, public_key_pem

    if key_type not in KEY_TYPES:
        raise UsageError(
            f"{key_type!r}: expected one of {', '.join(KEY_TYPES)}", setting="key_type"
        )
    private_path = prefix.with_name(prefix.name + ".key")
    public_path = prefix.with_name(prefix.name + ".pub")
    for p in (private_path, public_path):
        if p.exists() and not overwrite:
            raise UsageError(
                f"{p}: already exists", remedy="choose another name or allow overwriting"
            )
    key: PrivateKey
    if key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        curves: dict[str, ec.EllipticCurve] = {
            "ec-p256": ec.SECP256R1(),
            "ec-p384": ec.SECP384R1(),
            "ec-p521": ec.SECP521R1(),
        }
        key = ec.generate_private_key(curves[key_type])
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if password:
        encryption = serialization.BestAvailableEncryption(password.encode())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_atomically(private_path, pem, mode=0o600)
    write_atomically(public_path, public_key_pem(key.public_key()))
    return KeyPair(private_path, public_path, key_fingerprint(key.public_key()))
