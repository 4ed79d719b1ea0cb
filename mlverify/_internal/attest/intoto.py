"""in-toto Statement v1: build any statement, parse one, find attestation files.

A statement is only ever parsed from a payload whose signature was checked
(or, before that, to name a format defect); callers get a typed
:class:`Statement` and the subject digests to compare with the artifact.
"""

from __future__ import annotations

import json
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlverify._internal.errors import InputError
from mlverify._internal.files import read_bounded
from mlverify._internal.signing.bundle import SignatureBundle, bundle_from_doc, bundle_limit
from mlverify._internal.signing.dsse import INTOTO_PAYLOAD_TYPE, Envelope
from mlverify._internal.signing.statement import STATEMENT_TYPE, load_statement

SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
OMS_SIGNATURE_V1 = "https://model_signing/signature/v1.0"
VULNS_V02 = "https://in-toto.io/attestation/vulns/v0.2"

#: short names accepted by --type
PREDICATE_ALIASES: Mapping[str, str] = {
    "slsa": SLSA_PROVENANCE_V1,
    "oms": OMS_SIGNATURE_V1,
    "vulns": VULNS_V02,
}


@dataclass(frozen=True)
class Subject:
    name: str
    digest: Mapping[str, str]
    annotations: Mapping[str, Any]


@dataclass(frozen=True)
class Statement:
    """A parsed in-toto Statement v1."""

    source: str
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, Any]


def statement_json(
    subjects: Sequence[Mapping[str, Any]], predicate_type: str, predicate: Mapping[str, Any]
) -> bytes:
    """Serialise a statement deterministically (sorted keys, fixed indentation)."""
    doc = {
        "_type": STATEMENT_TYPE,
        "subject": list(subjects),
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def parse_statement(payload: bytes, *, where: str, compact: bool = False) -> Statement:
    """``compact``: resource-shaped objects decode to tuples (see ``load_statement``), for a
    caller that needs the statement's shape and type, not its predicate's objects."""
    raw = load_statement(payload, where=where, compact=compact)
    subjects_raw = raw.get("subject")
    if not isinstance(subjects_raw, list) or not subjects_raw:
        raise InputError(f"{where}: the statement has no subject; it attests nothing")
    subjects = []
    for s in subjects_raw:
        if not isinstance(s, dict) or not isinstance(s.get("digest"), dict):
            raise InputError(f"{where}: a subject without a digest object")
        digest = {
            str(k).lower(): str(v).lower() for k, v in s["digest"].items() if isinstance(v, str)
        }
        annotations = s.get("annotations")
        subjects.append(
            Subject(
                name=str(s.get("name", "")),
                digest=digest,
                annotations=annotations if isinstance(annotations, dict) else {},
            )
        )
    predicate_type = raw.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise InputError(f"{where}: the statement has no predicateType")
    predicate = raw.get("predicate", {})
    if not isinstance(predicate, dict):
        raise InputError(f"{where}: the predicate is not a JSON object")
    return Statement(
        source=where,
        subjects=tuple(subjects),
        predicate_type=predicate_type,
        predicate=predicate,
    )


def resolve_predicate_type(name: str) -> str:
    return PREDICATE_ALIASES.get(name, name)


def read_attestations(
    path: Path, *, artifact: Path | None = None
) -> list[SignatureBundle | Envelope]:
    """Every attestation in a file: a Sigstore bundle, a bare DSSE envelope, or
    JSON lines of either (``*.intoto.jsonl``). ``artifact`` (what it is about)
    sets the size bound (an OMS dataset attestation lists every file)."""
    data = read_bounded(
        path,
        what="attestation file",
        limit=bundle_limit(path, artifact),
        too_big_text="oversize envelope; refusing to parse it",
    )
    text = data.strip()
    if not text:
        raise InputError(f"{path}: the attestation file is empty")
    try:
        docs = [json.loads(text)]
    except RecursionError:
        raise InputError(f"{path}: the attestation's JSON is nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        try:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        except RecursionError:
            raise InputError(f"{path}: the attestation's JSON is nested too deeply") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(
                f"{path}: not JSON nor JSON lines ({e}); expected a Sigstore bundle or a "
                "DSSE envelope"
            ) from None
    out: list[SignatureBundle | Envelope] = []
    for i, doc in enumerate(docs):
        where = str(path) if len(docs) == 1 else f"{path} line {i + 1}"
        if isinstance(doc, dict) and "mediaType" in doc:
            out.append(bundle_from_doc(doc, source=where))
        elif isinstance(doc, dict) and "payloadType" in doc:
            env = Envelope.from_json(doc, where=where)
            if env.payload_type != INTOTO_PAYLOAD_TYPE:
                raise InputError(
                    f"{where}: DSSE payloadType is {env.payload_type!r}; "
                    f"expected {INTOTO_PAYLOAD_TYPE!r}"
                )
            out.append(env)
        else:
            raise InputError(
                f"{where}: neither a Sigstore bundle (mediaType) nor a DSSE envelope (payloadType)"
            )
    return out


ATTESTATION_SUFFIXES = (".intoto.jsonl", ".sigstore.json", ".sigstore")


#: Directories whose sorted listing is kept: a check of every model in a directory of N
#: models looks beside each one, and N listings of N names each would be quadratic.
_LISTED: dict[str, tuple[tuple[int, int, int, int], list[str]]] = {}
_LISTED_MAX = 16
_LISTED_LOCK = threading.Lock()
#: a listing is kept only when the directory last changed this long before it was read:
#: directory times are as coarse as the kernel's clock tick, so an entry added in the
#: same tick as a listing would leave the time unchanged and the listing stale
_SETTLED_NS = 2_000_000_000


def _listing(parent: Path) -> list[str]:
    """The names in ``parent``, sorted; reused while the directory is unchanged (same
    inode, device, modification and change times)."""
    where = str(parent)
    try:
        st = os.stat(where)
    except OSError:
        return []
    stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    with _LISTED_LOCK:
        kept = _LISTED.get(where)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    try:
        names = sorted(os.listdir(where))
    except OSError:
        return []
    if time.time_ns() - st.st_mtime_ns > _SETTLED_NS:
        with _LISTED_LOCK:
            if len(_LISTED) >= _LISTED_MAX:
                _LISTED.pop(next(iter(_LISTED)))
            _LISTED[where] = (stamp, names)
    return names


def discover_attestations(artifact: Path) -> Iterator[Path]:
    """Attestation files found by convention next to an artifact.

    Inside a model directory: ``attestations/*``, ``*.sigstore.json``,
    ``*.intoto.jsonl``, ``model.sig``; beside it: ``<name>.*`` with those suffixes.
    """
    seen: set[Path] = set()
    candidates: list[Path] = []
    if artifact.is_dir():
        folder = artifact / "attestations"
        if folder.is_dir():
            candidates.extend(sorted(p for p in folder.iterdir() if p.is_file()))
        candidates.extend(
            sorted(p for p in artifact.iterdir() if p.name.endswith(ATTESTATION_SUFFIXES))
        )
        if (artifact / "model.sig").is_file():
            candidates.append(artifact / "model.sig")
    parent = artifact.parent
    prefix = artifact.name + "."
    names = _listing(parent)
    i = bisect_left(names, prefix)
    while i < len(names) and names[i].startswith(prefix):
        if names[i].endswith((*ATTESTATION_SUFFIXES, ".sig")):
            candidates.append(parent / names[i])
        i += 1
    for p in candidates:
        if p not in seen and p.is_file():
            seen.add(p)
            yield p
