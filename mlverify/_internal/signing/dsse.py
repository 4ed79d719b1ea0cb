"""DSSE envelopes: pre-authentication encoding, parsing and serialising.

Signatures are always checked over the payload bytes as received; the payload
is never re-serialised before verification.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from mlverify._internal.errors import InputError

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSEv1 pre-authentication encoding of ``payload``."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def b64decode_strict(value: object, *, what: str, where: str) -> bytes:
    """Decode standard (or URL-safe) base64, refusing anything else."""
    if not isinstance(value, str):
        raise InputError(f"{where}: {what} must be a base64 string, found {type(value).__name__}")
    text = value.strip()
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        # what b64decode(validate=True) does, without its ASCII copy of a large payload
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise InputError(
            f"{where}: {what} is not valid base64 (truncated or corrupted); "
            "re-download or re-create the signature"
        ) from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class DsseSignature:
    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: payload bytes exactly as signed, and its signatures."""

    payload_type: str
    payload: bytes
    signatures: tuple[DsseSignature, ...]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def to_json(self, *, with_payload: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"payload": b64encode(self.payload)} if with_payload else {}
        out["payloadType"] = self.payload_type
        out["signatures"] = [{"sig": b64encode(s.sig), "keyid": s.keyid} for s in self.signatures]
        return out

    @classmethod
    def from_json(cls, data: object, *, where: str) -> Envelope:
        if not isinstance(data, dict):
            raise InputError(f"{where}: the DSSE envelope must be a JSON object")
        payload_type = data.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise InputError(f"{where}: the DSSE envelope has no 'payloadType'")
        payload = b64decode_strict(data.get("payload"), what="DSSE payload", where=where)
        raw_sigs = data.get("signatures")
        if not isinstance(raw_sigs, list) or not raw_sigs:
            raise InputError(f"{where}: the DSSE envelope carries no signatures")
        sigs = []
        for s in raw_sigs:
            if not isinstance(s, dict):
                raise InputError(f"{where}: a DSSE signature entry is not an object")
            keyid = s.get("keyid") or ""
            if not isinstance(keyid, str):
                raise InputError(f"{where}: a DSSE signature 'keyid' is not a string")
            sigs.append(
                DsseSignature(
                    sig=b64decode_strict(s.get("sig"), what="DSSE signature", where=where),
                    keyid=keyid,
                )
            )
        return cls(payload_type=payload_type, payload=payload, signatures=tuple(sigs))
