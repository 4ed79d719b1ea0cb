"""Helpers for the signing tests: run the CLI in-process, make a PKI, keys and models."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.core.helpers import Result, run

__all__ = ["Result", "run"]  # shared CLI runner, re-exported

UTC = dt.timezone.utc
VECTORS = Path(__file__).resolve().parents[2] / ".." / "shared" / "vectors"


def vectors_dir() -> Path:
    """The public test vectors beside the project, or skip (a user's clone has none)."""
    if not VECTORS.is_dir():
        pytest.skip(f"{VECTORS} is absent: public test vectors are not available here")
    return VECTORS


def make_model(root: Path, name: str = "model") -> Path:
    model = root / name
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"layers": 2}\n')
    (model / "weights.bin").write_bytes(os.urandom(20_000))
    (model / "sub" / "tokenizer.txt").write_text("a b c\n")
    return model


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def write_public_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Pki:
    """A root CA, an intermediate, and a way to issue code-signing leaves."""

    directory: Path
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    inter_key: ec.EllipticCurvePrivateKey
    inter: x509.Certificate

    @property
    def root_pem(self) -> Path:
        return self.directory / "root.pem"

    @property
    def inter_pem(self) -> Path:
        return self.directory / "inter.pem"

    def leaf(
        self,
        name: str,
        sans: list[x509.GeneralName],
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        code_signing: bool = True,
        digital_signature: bool = True,
        public_key: ec.EllipticCurvePublicKey | None = None,
    ) -> tuple[Path, Path]:
        """Issue a leaf; returns (private key PEM, certificate PEM).

        With ``public_key`` (a key held elsewhere, e.g. on a token) the leaf certifies
        that key, and the private key file written is an unrelated throwaway.
        """
        now = dt.datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        eku = [
            ExtendedKeyUsageOID.CODE_SIGNING if code_signing else ExtendedKeyUsageOID.CLIENT_AUTH
        ]
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.inter.subject)
            .public_key(public_key or key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(days=1))
            .not_valid_after(not_after or now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature,
                    not digital_signature,
                    False,
                    False,
                    False,
                    False,
                    False,
                    False,
                    False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.inter_key.public_key()),
                critical=False,
            )
            .sign(self.inter_key, hashes.SHA256())
        )
        key_path = write_private_key(self.directory / f"{name}.key", key)
        cert_path = self.directory / f"{name}.pem"
        cert_path.write_bytes(pem(cert))
        return key_path, cert_path


def _ca(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = dt.datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=3650))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
        .sign(issuer_key, hashes.SHA256())
    )


def make_pki(directory: Path, prefix: str = "") -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _ca(f"{prefix}root-ca", root_key, _name(f"{prefix}root-ca"), root_key)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _ca(f"{prefix}intermediate-ca", inter_key, root.subject, root_key)
    pki = Pki(directory, root_key, root, inter_key, inter)
    pki.root_pem.write_bytes(pem(root))
    pki.inter_pem.write_bytes(pem(inter))
    return pki
