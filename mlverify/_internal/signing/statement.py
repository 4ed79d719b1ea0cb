"""in-toto Statement v1 carrying the OMS predicate: build and parse."""

from __future__ import annotations

import json
from typing import Any

from mlverify._internal.errors import InputError
from mlverify._internal.manifest.manifest import (
    Manifest,
    Resource,
    Serialization,
    compact_resource_hook,
)

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
OMS_PREDICATE_TYPE = "https://model_signing/signature/v1.0"
#: written by model_signing before 1.0; read-only support
LEGACY_PREDICATE_TYPE = "https://model_signing/Digests/v0.1"


#: where the resources go in ``json.dumps(statement, indent=2, sort_keys=True)``
_RESOURCES_SLOT = '\n    "resources": [],\n'


def statement_bytes(manifest: Manifest) -> bytes:
    """The statement for ``manifest``, serialised deterministically.

    The bytes of ``json.dumps(statement, indent=2, sort_keys=True)``, with the
    resources (one entry per file: a million for a large dataset) written by
    one loop instead of the pure-Python indenting encoder.
    """
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [manifest.subject()],
        "predicateType": OMS_PREDICATE_TYPE,
        "predicate": {"resources": [], "serialization": manifest.serialization.to_json()},
    }
    text = json.dumps(statement, indent=2, sort_keys=True)
    rl = manifest.compact
    if not len(rl):
        return text.encode()
    # the only newline-delimited occurrence: strings cannot hold a raw newline
    assert text.count(_RESOURCES_SLOT) == 1
    before, after = text.split(_RESOURCES_SLOT)
    enc = json.encoder.encode_basestring_ascii
    head = (
        '      {\n        "algorithm": ' + enc(manifest.serialization.hash_type) + ","
        '\n        "digest": "'
    )
    if len(rl) > 20_000:
        from mlverify._internal.memory import release_large_blocks

        release_large_blocks()
    names = rl.names()
    w = rl.width
    raw = rl.digests
    # written into one growing buffer: no list of a million entry strings
    out = bytearray((before + '\n    "resources": [\n').encode())
    for i in range(len(names)):
        if i:
            out += b",\n"
        out += (
            f'{head}{raw[i * w : (i + 1) * w].hex()}",\n        "name": {enc(names[i])}\n      }}'
        ).encode()
    out += ("\n    ],\n" + after).encode()
    return bytes(out)


def load_statement(payload: bytes, *, where: str, compact: bool = False) -> dict[str, Any]:
    """The statement object; ``compact``: resource-shaped objects decode to tuples
    (see :func:`compact_resource_hook`), for :func:`manifest_from_statement` only."""
    try:
        statement = json.loads(payload, object_hook=compact_resource_hook if compact else None)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{where}: the signed payload is not JSON ({e})") from None
    except RecursionError:
        raise InputError(f"{where}: the signed payload's JSON is nested too deeply") from None
    if not isinstance(statement, dict):
        raise InputError(f"{where}: the signed payload is not a JSON object")
    if statement.get("_type") != STATEMENT_TYPE:
        raise InputError(
            f"{where}: payload _type is {statement.get('_type')!r}; expected {STATEMENT_TYPE!r}"
        )
    return statement


#: the last payload parsed by :func:`manifest_of_payload`, and its manifest
_last_parsed: tuple[bytes, Manifest] | None = None


def manifest_of_payload(payload: bytes, *, where: str) -> Manifest:
    """The manifest of an OMS statement's bytes.

    The same payload object is parsed once (verify checks it before and after
    the signature, a million entries each time): bytes are immutable and the
    manifest depends on nothing else. Errors are never remembered.
    """
    global _last_parsed
    last = _last_parsed
    if last is not None and last[0] is payload:
        return last[1]
    manifest = manifest_from_statement(
        load_statement(payload, where=where, compact=True), where=where
    )
    _last_parsed = (payload, manifest)
    return manifest


def manifest_from_statement(statement: dict[str, Any], *, where: str) -> Manifest:
    """The manifest a (verified) OMS statement vouches for.

    Rejects a statement whose subject digest is not the root digest of its
    own resources: such a statement says two different things.
    """
    predicate_type = statement.get("predicateType")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise InputError(f"{where}: the statement has no subject")
    if predicate_type == LEGACY_PREDICATE_TYPE:
        return _legacy_manifest(subjects, where=where)
    if predicate_type != OMS_PREDICATE_TYPE:
        raise InputError(
            f"{where}: predicateType is {predicate_type!r}; expected {OMS_PREDICATE_TYPE!r} "
            "(an OMS model signature)"
        )
    if len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise InputError(
            f"{where}: an OMS statement has exactly one subject, found {len(subjects)}"
        )
    subject = subjects[0]
    digest = subject.get("digest")
    name = subject.get("name")
    if not isinstance(digest, dict) or not isinstance(digest.get("sha256"), str):
        raise InputError(f"{where}: the subject has no sha256 digest")
    manifest = Manifest.from_predicate(
        statement.get("predicate"), name if isinstance(name, str) else "", where=where
    )
    if digest["sha256"].lower() != manifest.root_digest:
        raise InputError(
            f"{where}: subject digest {digest['sha256']} is not the root digest of the listed "
            f"resources ({manifest.root_digest}); the statement is inconsistent"
        )
    return manifest


def _legacy_manifest(subjects: list[Any], *, where: str) -> Manifest:
    """v0.x statements list one subject per file, SHA-256, no serialization block."""
    resources: list[Resource] = []
    for s in subjects:
        if not isinstance(s, dict):
            raise InputError(f"{where}: legacy subject is not an object")
        name, digest = s.get("name"), s.get("digest")
        algo = (s.get("annotations") or {}).get("actual_hash_algorithm", "file-sha256")
        if algo != "file-sha256":
            raise InputError(
                f"{where}: unsupported legacy format (hash {algo!r}); "
                "re-sign the model with a current tool"
            )
        if not isinstance(name, str) or not isinstance(digest, dict):
            raise InputError(f"{where}: legacy subject without name or digest")
        sha = digest.get("sha256")
        if not isinstance(sha, str):
            raise InputError(f"{where}: legacy subject {name!r} has no sha256 digest")
        predicate = {
            "resources": [{"name": name, "algorithm": "sha256", "digest": sha}],
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": False},
        }
        resources.extend(Manifest.from_predicate(predicate, "", where=where).resources)
    resources.sort(key=lambda r: r.path)
    return Manifest(
        subject_name="",
        serialization=Serialization(),
        resources=tuple(resources),
    )
