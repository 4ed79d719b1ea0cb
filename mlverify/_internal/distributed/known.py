"""Files of an artifact hashed and scanned elsewhere (by file jobs), handed to the check.

:func:`mlverify._internal.check.check_artifact` takes ``known`` (name -> :class:`KnownFile`)
and uses it in exactly two places: the scan (:func:`scan_with_known`: a known file's entry
instead of scanning it) and the manifest (:func:`known_digests`: a known file's SHA-256
instead of hashing it). Both look at the file again first: a known file is used only while
its (st_dev, st_ino, size, mtime_ns, ctime_ns) are the ones its evidence was made at, and
its scan entry only if made with the scan limits the check scans with; any other file is
read by the check itself. The check's own fingerprints before and after then cover it as
they cover every file it reads.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlverify._internal.artifact import ModelTree
    from mlverify._internal.manifest.hashing import HashJob
    from mlverify._internal.scan.model import Limits
    from mlverify._internal.scan.workers import ScanResults

#: (st_dev, st_ino, size, mtime_ns, ctime_ns): what a file's evidence is about
FilePrint = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class KnownFile:
    """One file's digest and scan entry, made elsewhere over the bytes at ``fingerprint``."""

    sha256: bytes  #: 32 bytes
    entry: Any  #: ``scan_one``'s compact entry
    limits: str  #: :func:`limits_digest` of the limits it was scanned with
    fingerprint: FilePrint


def limits_digest(limits: Limits) -> str:
    from mlverify._internal.scan.workers import _limits_json

    return hashlib.sha256(_limits_json(limits).encode()).hexdigest()


def print_of(st: os.stat_result) -> FilePrint:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _still(location: str, k: KnownFile) -> bool:
    try:
        return print_of(os.lstat(location)) == k.fingerprint
    except OSError:
        return False


def scan_with_known(
    known: Mapping[str, KnownFile],
) -> Callable[..., ScanResults]:
    """``scan_many``, with the entries of ``known`` files (by name) taken, not scanned: as
    if scanned, with the status and the SHA-256 their evidence was made at (the check
    then ties each to the file's status at its end, as it ties every file to its scan)."""
    from mlverify._internal.errors import InputError
    from mlverify._internal.scan.workers import (
        DIGEST_SIZE,
        KEY_FIELDS,
        ScanResults,
        _Collector,
        scan_many,
    )
    from mlverify._internal.text import shown

    def scan(
        locations: Sequence[str],
        names: Sequence[str],
        sizes: Sequence[int],
        limits: Limits,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> ScanResults:
        want = limits_digest(limits)
        taken: dict[int, KnownFile] = {}
        for i, name in enumerate(names):
            k = known.get(name)
            if k is not None and k.limits == want and _still(locations[i], k):
                taken[i] = k
        rest = [i for i in range(len(names)) if i not in taken]
        sub = scan_many(
            [locations[i] for i in rest],
            [names[i] for i in rest],
            array("q", (sizes[i] for i in rest)),
            limits,
            progress=progress,
        )
        n = len(names)
        col = _Collector(names, n)
        for i, k in taken.items():
            tail = array("q", k.fingerprint).tobytes() + k.sha256 + b"\x01"
            try:
                col.put(i, [k.entry], tail)
            except ValueError as e:  # a malformed entry is refused, never read as a result
                raise InputError(
                    f"{shown(names[i])}: its stored scan evidence is unusable ({e})"
                ) from None
        mine = col.result()  # an error entry fails the scan, as the file's own would
        if progress and taken:
            progress(len(taken))
        codes = bytearray(mine.codes)
        formats = dict(mine.formats)
        findings = dict(mine.findings)
        keys = array("q", mine.keys)
        digests = bytearray(mine.digests)
        hashed = bytearray(mine.hashed)
        w, kf = DIGEST_SIZE, KEY_FIELDS
        for j, i in enumerate(rest):
            codes[i] = sub.codes[j]
            if j in sub.formats:
                formats[i] = sub.formats[j]
            if j in sub.findings:
                findings[i] = sub.findings[j]
            keys[kf * i : kf * i + kf] = sub.keys[kf * j : kf * j + kf]
            digests[w * i : w * i + w] = sub.digests[w * j : w * j + w]
            hashed[i] = sub.hashed[j]
        return ScanResults(bytes(codes), formats, findings, keys, bytes(digests), bytes(hashed))

    return scan


class _KnownStore:
    """A digest store (``build_manifest``'s ``cache``) answering for the known files."""

    def __init__(self, by_location: dict[str, KnownFile]) -> None:
        self._known = by_location

    def lookup_many(self, hash_type: str, locations: Sequence[str]) -> tuple[bytearray, list[int]]:
        out = bytearray(32 * len(locations))
        missing = []
        for i, loc in enumerate(locations):
            k = self._known.get(loc) if hash_type == "sha256" else None
            if k is None or not _still(loc, k):
                missing.append(i)
            else:
                out[32 * i : 32 * i + 32] = k.sha256
        if hash_type != "sha256":
            from mlverify._internal.manifest.hashing import DIGEST_SIZES

            return bytearray(DIGEST_SIZES[hash_type] * len(locations)), list(range(len(locations)))
        return out, missing

    def lookup_for(self, hash_type: str) -> Callable[[HashJob], str | None]:
        def lookup(job: HashJob) -> str | None:
            k = self._known.get(str(job.path))
            if hash_type != "sha256" or k is None or job.start or job.end is not None:
                return None
            return k.sha256.hex() if _still(str(job.path), k) else None

        return lookup

    def store_for(self, hash_type: str) -> Callable[[HashJob, str], None]:
        return lambda job, digest: None


def known_digests(known: Mapping[str, KnownFile], tree: ModelTree) -> _KnownStore:
    """The digest store of ``known`` (by name) for the files of ``tree``."""
    return _KnownStore({f.location: known[f.name] for f in tree.files if f.name in known})
