"""OMS signature files: Sigstore bundle v0.3 around a DSSE envelope.

Reading is strict and bounded: a signature file larger than the most a
signature of the model being verified can need (see
:mod:`mlverify._internal.manifest.limits`; :data:`MAX_BUNDLE_BYTES` when no model is
given) is refused from its size, before it is read; malformed JSON, a missing envelope or missing
verification material are input errors that name the defect.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlverify._internal.errors import InputError, SignatureNotFoundError
from mlverify._internal.files import read_bounded
from mlverify._internal.manifest.limits import FLOOR, signature_limit_for
from mlverify._internal.signing.dsse import (
    INTOTO_PAYLOAD_TYPE,
    DsseSignature,
    Envelope,
    b64decode_strict,
)
from mlverify._internal.signing.keys import RawSigner, public_key_hint

#: the bundle mediaType the reference tool accepts (it rejects the newer alias)
BUNDLE_MEDIA_TYPE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
KNOWN_MEDIA_TYPES = frozenset(
    {
        BUNDLE_MEDIA_TYPE_V03,
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
    }
)
#: the bound when no model is given (the model-derived bound never goes below it)
MAX_BUNDLE_BYTES = FLOOR

MaterialKind = Literal["publicKey", "x509CertificateChain", "certificate"]


@dataclass(frozen=True)
class VerificationMaterial:
    """What the bundle offers to check its signature with."""

    kind: MaterialKind
    key_hint: str | None = None  #: hex hint, advisory only
    key_pem: bytes | None = None  #: legacy bundles embed the PEM key (untrusted)
    certificates: tuple[bytes, ...] = ()  #: DER, leaf first
    has_tlog_entries: bool = False


@dataclass(frozen=True)
class SignatureBundle:
    """A parsed OMS signature file."""

    source: str
    media_type: str
    envelope: Envelope
    material: VerificationMaterial
    #: the JSON document (for a ``publicKey`` bundle, without the envelope's payload)
    raw: dict[str, Any] = field(repr=False, compare=False)


def bundle_limit(path: Path, model: Path | None) -> int:
    """How large the signature file at ``path`` may be to be read for ``model``."""
    if model is None:
        return MAX_BUNDLE_BYTES
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0  # the read reports it
    return signature_limit_for(model, needed=size)


def read_bundle(path: Path, *, model: Path | None = None) -> SignatureBundle:
    """Read and structurally validate the signature file at ``path``.

    ``model`` (the model it is meant to verify) sets the size bound.
    """
    data = read_bounded(
        path,
        what="signature file",
        limit=bundle_limit(path, model),
        missing=SignatureNotFoundError,
        missing_text="no signature found; sign the model first, or name its signature file",
        too_big_text=_too_big(model),
    )
    if not data.strip():
        raise InputError(f"{path}: the signature file is empty; expected a Sigstore bundle")
    if len(data) > MAX_BUNDLE_BYTES:
        from mlverify._internal.memory import release_large_blocks

        release_large_blocks()
    # Decoded here so the bytes are freed before the JSON is parsed: a signature
    # of a million files is 230 MB, held once at a time, not three times.
    try:
        text = data.decode(json.detect_encoding(data), "surrogatepass")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: the signature is not valid JSON ({e}); expected a Sigstore bundle"
        ) from None
    del data
    return bundle_from_doc(_json_doc(text, source=str(path)), source=str(path))


def _too_big(model: Path | None) -> str:
    if model is None:
        return "this is not an OMS signature"
    return (
        f"that is more than a signature of the model at {model} can need (16 MiB plus about "
        "1 KiB per file under it): this is not its signature"
    )


def parse_bundle(data: bytes | str, *, source: str) -> SignatureBundle:
    if not data.strip():
        raise InputError(f"{source}: the signature file is empty; expected a Sigstore bundle")
    return bundle_from_doc(_json_doc(data, source=source), source=source)


def _json_doc(data: bytes | str, *, source: str) -> object:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(
            f"{source}: the signature is not valid JSON ({e}); expected a Sigstore bundle"
        ) from None
    except RecursionError:
        raise InputError(
            f"{source}: the signature's JSON is nested too deeply; expected a Sigstore bundle"
        ) from None


def bundle_from_doc(doc: object, *, source: str) -> SignatureBundle:
    """Validate a bundle's decoded JSON document."""
    if not isinstance(doc, dict):
        raise InputError(f"{source}: expected a JSON object (Sigstore bundle)")
    media_type = doc.get("mediaType")
    if not isinstance(media_type, str) or media_type not in KNOWN_MEDIA_TYPES:
        raise InputError(
            f"{source}: unknown bundle mediaType {media_type!r}; expected {BUNDLE_MEDIA_TYPE_V03!r}"
        )
    if "dsseEnvelope" not in doc:
        what = "a message signature" if "messageSignature" in doc else "nothing"
        raise InputError(
            f"{source}: the bundle has no 'dsseEnvelope' (found {what}); "
            "an OMS signature is a DSSE envelope over an in-toto statement"
        )
    envelope = Envelope.from_json(doc["dsseEnvelope"], where=source)
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise InputError(
            f"{source}: DSSE payloadType is {envelope.payload_type!r}; "
            f"expected {INTOTO_PAYLOAD_TYPE!r}"
        )
    material = _parse_material(doc.get("verificationMaterial"), source=source)
    if material.kind == "publicKey" and isinstance(doc["dsseEnvelope"], dict):
        # Only Sigstore verification reads the raw envelope again (keyless bundles):
        # a key bundle keeps one copy of its payload (decoded), not the base64 as well
        # (a million-file signature is 230 MB of base64).
        envelope_raw = {k: v for k, v in doc["dsseEnvelope"].items() if k != "payload"}
        doc = {**doc, "dsseEnvelope": envelope_raw}
    return SignatureBundle(
        source=source, media_type=media_type, envelope=envelope, material=material, raw=doc
    )


def _parse_material(vm: object, *, source: str) -> VerificationMaterial:
    if vm is None:
        raise InputError(
            f"{source}: the bundle has no 'verificationMaterial'; "
            "expected a publicKey, x509CertificateChain or certificate"
        )
    if not isinstance(vm, dict):
        raise InputError(f"{source}: 'verificationMaterial' must be an object")
    # Bundles older than OMS v1.1 omit 'tlogEntries' for key and certificate
    # signatures (spec section 11); a keyless signature without it has no proof.
    if "tlogEntries" not in vm and "certificate" in vm:
        raise InputError(
            f"{source}: keyless (Sigstore) signature without 'tlogEntries'; "
            "the transparency log entry is required to verify it"
        )
    tlog = vm.get("tlogEntries", [])
    if not isinstance(tlog, list):
        raise InputError(f"{source}: 'tlogEntries' must be a list")
    if "publicKey" in vm:
        pk = vm["publicKey"]
        if not isinstance(pk, dict):
            raise InputError(f"{source}: 'publicKey' must be an object")
        hint = pk.get("hint")
        raw = pk.get("rawBytes")
        return VerificationMaterial(
            kind="publicKey",
            key_hint=hint if isinstance(hint, str) else None,
            key_pem=b64decode_strict(raw, what="publicKey.rawBytes", where=source)
            if raw is not None
            else None,
            has_tlog_entries=bool(tlog),
        )
    if "x509CertificateChain" in vm:
        chain = vm["x509CertificateChain"]
        certs = chain.get("certificates") if isinstance(chain, dict) else None
        if not isinstance(certs, list) or not certs:
            raise InputError(f"{source}: 'x509CertificateChain' has no certificates")
        ders = tuple(
            b64decode_strict(
                c.get("rawBytes") if isinstance(c, dict) else None,
                what="certificate rawBytes",
                where=source,
            )
            for c in certs
        )
        return VerificationMaterial(
            kind="x509CertificateChain", certificates=ders, has_tlog_entries=bool(tlog)
        )
    if "certificate" in vm:
        cert = vm["certificate"]
        der = b64decode_strict(
            cert.get("rawBytes") if isinstance(cert, dict) else None,
            what="certificate rawBytes",
            where=source,
        )
        return VerificationMaterial(
            kind="certificate", certificates=(der,), has_tlog_entries=bool(tlog)
        )
    raise InputError(
        f"{source}: 'verificationMaterial' holds none of publicKey, "
        "x509CertificateChain, certificate"
    )


def key_signed_bundle(payload: bytes, signer: RawSigner) -> bytes:
    """A bundle whose DSSE envelope over an in-toto ``payload`` is signed by a key."""
    unsigned = Envelope(INTOTO_PAYLOAD_TYPE, payload, ())
    signature = DsseSignature(signer.sign(unsigned.pae()), "")
    envelope = Envelope(INTOTO_PAYLOAD_TYPE, payload, (signature,))
    material = {"publicKey": {"hint": public_key_hint(signer.public_key)}, "tlogEntries": []}
    return bundle_json(envelope, material)


#: where the payload goes in the indented bundle JSON (strings hold no raw newline)
_PAYLOAD_SLOT = '\n    "payload": "",\n'


def bundle_json(envelope: Envelope, material: dict[str, Any]) -> bytes:
    """Serialise a bundle deterministically (sorted keys, fixed indentation).

    The bytes of ``json.dumps(doc, indent=2, sort_keys=True) + "\\n"``, with the
    base64 payload (230 MB for a million-file signature) spliced in as bytes
    rather than carried through the indenting encoder as a string.
    """
    env = envelope.to_json(with_payload=False)
    doc = {
        "mediaType": BUNDLE_MEDIA_TYPE_V03,
        "verificationMaterial": material,
        "dsseEnvelope": {**env, "payload": ""},
    }
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    assert text.count(_PAYLOAD_SLOT) == 1
    before, after = text.split(_PAYLOAD_SLOT)
    b64 = base64.b64encode(envelope.payload)  # base64 needs no JSON escaping
    return b"".join((before.encode(), b'\n    "payload": "', b64, b'",\n', after.encode()))
