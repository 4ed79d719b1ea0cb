"""A test-only "virtual Sigstore": Fulcio, CT log and Rekor stand-ins, fully offline.

* Fulcio: an own CA issuing short-lived leaves with the identity as SAN, the
  OIDC issuer extensions (1.3.6.1.4.1.57264.1.1 raw, 1.1.8 DER UTF8String),
  KU digitalSignature, EKU codeSigning and an embedded SCT.
* CT log: a P-256 key signing the SCT over ``issuer key hash || TBS precert``
  (the certificate is built once with a placeholder SCT, then rebuilt with the
  same serial and the real one).
* Rekor: a P-256 key signing the SET and a checkpoint over a one-leaf tree
  (root hash ``sha256(0x00 || canonicalized body)``), dsse 0.0.1 entries.
* ``trusted_root.json`` listing all three.

Bundles made here are accepted by the unmodified sigstore-python Verifier.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from mlverify._internal.signing.dsse import INTOTO_PAYLOAD_TYPE, pae

UTC = dt.timezone.utc
OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OID_SOURCE_REPOSITORY_URI = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.12")
OID_SOURCE_REPOSITORY_REF = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.14")
OID_BUILD_CONFIG_URI = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.18")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def der_utf8(text: str) -> bytes:
    raw = text.encode()
    n = len(raw)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | ((n.bit_length() + 7) // 8)])
        + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return b"\x0c" + length + raw


def der_octet_string(raw: bytes) -> bytes:
    n = len(raw)
    if n < 0x80:
        return b"\x04" + bytes([n]) + raw
    size = (n.bit_length() + 7) // 8
    return b"\x04" + bytes([0x80 | size]) + n.to_bytes(size, "big") + raw


def spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    return hashlib.sha256(spki(key)).digest()


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "virtual-sigstore.test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass
class VirtualSigstore:
    """One virtual Sigstore instance; ``now`` is when its CA and logs start."""

    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(UTC))
    name: str = "virtual"

    def __post_init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP384R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        start = self.now - dt.timedelta(days=365)
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{self.name}-fulcio"))
            .issuer_name(_name(f"{self.name}-fulcio"))
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(self.now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), False
            )
            .sign(self.ca_key, hashes.SHA384())
        )
        self.start = start

    # -- trust root ---------------------------------------------------------
    def trusted_root(self) -> dict[str, Any]:
        valid = {"start": self.start.strftime("%Y-%m-%dT%H:%M:%SZ")}

        def log(key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(spki(key.public_key())),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": valid,
                },
                "logId": {"keyId": b64(key_id(key.public_key()))},
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.rekor_key, f"https://rekor.{self.name}.test")],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "virtual-sigstore.test", "commonName": "fulcio"},
                    "uri": f"https://fulcio.{self.name}.test",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": b64(self.ca_cert.public_bytes(serialization.Encoding.DER))}
                        ]
                    },
                    "validFor": valid,
                }
            ],
            "ctlogs": [log(self.ct_key, f"https://ctfe.{self.name}.test")],
            "timestampAuthorities": [],
        }

    def write_trusted_root(self, path: Path) -> Path:
        path.write_text(json.dumps(self.trusted_root(), indent=2))
        return path

    # -- Fulcio + CT --------------------------------------------------------
    def issue(
        self,
        key: ec.EllipticCurvePrivateKey,
        identity: str,
        issuer: str,
        *,
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
        claims: dict[x509.ObjectIdentifier, str] | None = None,
    ) -> x509.Certificate:
        """A Fulcio-style leaf for ``identity`` with an embedded SCT."""
        nb = not_before or (self.now - dt.timedelta(minutes=1))
        serial = x509.random_serial_number()
        san: x509.GeneralName = (
            x509.UniformResourceIdentifier(identity)
            if "://" in identity
            else x509.RFC822Name(identity)
        )

        def build(sct_list: bytes) -> x509.Certificate:
            b = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(self.ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(nb)
                .not_valid_after(nb + lifetime)
                .add_extension(
                    x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                    critical=True,
                )
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
                .add_extension(x509.SubjectAlternativeName([san]), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                    False,
                )
                .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V1, issuer.encode()), False)
                .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V2, der_utf8(issuer)), False)
            )
            for oid, value in (claims or {}).items():
                b = b.add_extension(x509.UnrecognizedExtension(oid, der_utf8(value)), False)
            b = b.add_extension(
                x509.UnrecognizedExtension(
                    ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS,
                    der_octet_string(sct_list),
                ),
                False,
            )
            return b.sign(self.ca_key, hashes.SHA384())

        placeholder = build(self._sct_list(b"\x00" * 70, nb))
        tbs = placeholder.tbs_precertificate_bytes
        issuer_key_hash = key_id(self.ca_key.public_key())  # type: ignore[arg-type]
        timestamp_ms = int(nb.timestamp() * 1000)
        signed = struct.pack(
            f"!BBQH32s3s{len(tbs)}sH",
            0,  # v1
            0,  # certificate_timestamp
            timestamp_ms,
            1,  # precert_entry
            issuer_key_hash,
            len(tbs).to_bytes(3, "big"),
            tbs,
            0,  # no extensions
        )
        sig = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return build(self._sct_list(sig, nb))

    def _sct_list(self, sig: bytes, when: dt.datetime) -> bytes:
        sct = (
            b"\x00"
            + key_id(self.ct_key.public_key())
            + struct.pack("!Q", int(when.timestamp() * 1000))
            + struct.pack("!H", 0)
            + b"\x04\x03"  # sha256, ecdsa
            + struct.pack("!H", len(sig))
            + sig
        )
        item = struct.pack("!H", len(sct)) + sct
        return struct.pack("!H", len(item)) + item

    # -- Rekor ---------------------------------------------------------------
    def log_entry(
        self, cert: x509.Certificate, envelope: dict[str, Any], integrated: dt.datetime
    ) -> dict[str, Any]:
        payload = base64.b64decode(envelope["payload"])
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        body_doc = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest(),
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
                "signatures": [
                    {"signature": s["sig"], "verifier": b64(cert_pem)}
                    for s in envelope["signatures"]
                ],
            },
        }
        body = json.dumps(body_doc, sort_keys=True, separators=(",", ":")).encode()
        log_id = key_id(self.rekor_key.public_key())
        itime = int(integrated.timestamp())
        set_payload = json.dumps(
            {"body": b64(body), "integratedTime": itime, "logID": log_id.hex(), "logIndex": 0},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        set_sig = self.rekor_key.sign(set_payload, ec.ECDSA(hashes.SHA256()))
        root_hash = hashlib.sha256(b"\x00" + body).digest()
        origin = f"rekor.{self.name}.test - 1"
        note = f"{origin}\n1\n{b64(root_hash)}\n"
        note_sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = f"{note}\n\u2014 rekor.{self.name}.test {b64(log_id[:4] + note_sig)}\n"
        return {
            "logIndex": "0",
            "logId": {"keyId": b64(log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": str(itime),
            "inclusionPromise": {"signedEntryTimestamp": b64(set_sig)},
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": b64(root_hash),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": b64(body),
        }

    # -- the whole flow --------------------------------------------------------
    def sign_dsse(
        self,
        payload: bytes,
        identity: str,
        issuer: str,
        *,
        payload_type: str = INTOTO_PAYLOAD_TYPE,
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
        integrated: dt.datetime | None = None,
        claims: dict[x509.ObjectIdentifier, str] | None = None,
    ) -> bytes:
        """A keyless Sigstore bundle v0.3 (DSSE) as the real services would make it."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue(
            key, identity, issuer, not_before=not_before, lifetime=lifetime, claims=claims
        )
        sig = key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
        envelope = {
            "payload": b64(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": b64(sig), "keyid": ""}],
        }
        when = integrated or (cert.not_valid_before_utc + dt.timedelta(seconds=30))
        bundle = {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [self.log_entry(cert, envelope, when)],
            },
            "dsseEnvelope": envelope,
        }
        return (json.dumps(bundle, indent=2) + "\n").encode()
