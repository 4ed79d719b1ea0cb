"""Scan many files fast: batches of files, scanned by worker processes.

For files of a few KiB a scan is Python's work (about a hundred detectors' worth of
byte tests per file), and Python threads share one GIL. So ``check`` scans a large
tree in batches (at most :data:`BATCH` files or :data:`BATCH_BYTES` bytes per
request) by worker processes, one per core, each an isolated interpreter (``-I``)
that imports this very package (the parent's copy, by path) and runs
:func:`_serve`. A request is the files' locations and display names; a reply is
one JSON array with one compact entry per file (:func:`scan_one`), then, per file, the
status of the file as opened for the scan (five numbers) and the SHA-256 of the bytes
scanned when the file was read whole (:class:`ScanResults`: the manifest of ``check`` is
made from these digests, so the bytes judged and the bytes signed are one read). Below
:data:`PROCESS_MIN_FILES` files (or on one core) the same function runs in this
process. Nothing here is ever unpickled: replies are JSON, made by our own worker.

Soundness: every file sent gets exactly one entry back, or the whole scan fails.
A worker that exits early (a crash, a kill) fails the scan with an error naming
the batch; a file that cannot be opened or read is an error naming it (as for an
in-process scan): a file is never counted as scanned when it was not. A worker counts
the files it starts in a word of memory it shares with its parent (no system call per
file); a worker whose count stays on one file longer than that file's budget
(:func:`file_budget`: a floor plus a time per MiB) is killed by the parent's watchdog,
whatever it is doing (stuck, stopped), and the scan fails naming that file; once a scan
fails, every worker is killed and waited for.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from operator import attrgetter
from pathlib import Path
from typing import Any

from mlverify._internal.errors import InputError, MlverifyError
from mlverify._internal.scan import engine
from mlverify._internal.scan.model import Finding, Limits, Severity, Status
from mlverify._internal.text import short, shown

#: files per request: large enough that the per-request work vanishes
BATCH = 256
#: bytes per request (a batch of large files is split earlier)
BATCH_BYTES = 64 << 20
#: the longest reply read from a worker (a batch's findings; a longer one fails the scan)
MAX_REPLY = 1 << 30
#: fewer files than this are scanned in this process (a worker costs ~0.2 s to start)
PROCESS_MIN_FILES = 2000
#: how long a worker may take over one file: this floor (seconds: also a file's inflated
#: members, a few GiB at tens of MB/s) plus this much per MiB of the file (1 MB/s, far
#: below any scan's pace); past it the scan did not finish and nothing is decided
SCAN_FLOOR = 300.0
SCAN_PER_MIB = 1.0
#: how often the watchdog looks at the workers' deadlines (seconds)
_WATCH_EVERY = 0.2
#: the files a worker has started, as the word it shares with its parent holds it
_COUNT = struct.Struct("<Q")

#: status codes, one byte per file in :class:`ScanResults`
STATUSES: tuple[Status, ...] = (Status.DATA, Status.CLEAN, Status.FINDINGS, Status.UNSUPPORTED)
_CODE = {s.value: i for i, s in enumerate(STATUSES)}

#: how a worker starts: the parent's package directory first on the path
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from mlverify._internal.scan.workers import _serve; _serve(sys.argv[2], int(sys.argv[3]))"
)

_U32x2 = struct.Struct("<II")

#: the status numbers kept per file (device, inode, size, mtime, ctime)
KEY_FIELDS = 5
#: the digest computed from the bytes scanned (the hash ``check``'s manifest uses)
DIGEST_SIZE = 32
#: bytes per file after a reply's JSON: its key (native int64s), its digest, a flag (1:
#: the digest is of the file's bytes; 0: not read whole, so not hashed here)
_TAIL = 8 * KEY_FIELDS + DIGEST_SIZE + 1
_NO_KEY = (-1,) * KEY_FIELDS
_NO_DIGEST = bytes(DIGEST_SIZE)


#: What tells a file's version apart, from its ``stat``: device, inode, size, mtime and
#: ctime (an attrgetter: no Python call per file).
stat_key: Callable[[os.stat_result], tuple[int, int, int, int, int]] = attrgetter(
    "st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns"
)


def scan_one(location: str, name: str, limits: Limits) -> tuple[Any, tuple[int, ...], bytes]:
    """One file's compact entry: ``0`` (data, no finding), ``[code, formats, findings]``
    (findings as lists of their fields), or ``{"error": message}``; with the file's
    :func:`stat_key` when opened and the SHA-256 of the bytes scanned (``b""`` when it was
    scanned from the file, not read whole)."""
    try:
        ctx, st, data = engine.scan_context(location, limits, display=name)
    except MlverifyError as e:
        return {"error": str(e)}, _NO_KEY, b""
    except Exception as e:  # a scanner bug: an error naming the file, never a pass
        if os.environ.get("MLVERIFY_DEBUG"):
            raise
        return (
            {
                "error": f"{shown(name)}: the scanner failed on this file ({type(e).__name__}: "
                f"{str(e)[:200]}); nothing was decided: report it with the file if you can"
            },
            _NO_KEY,
            b"",
        )
    digest = b"" if data is None else sha256(data).digest()
    if not ctx.formats and not ctx.findings:
        return 0, stat_key(st), digest  # data, no finding: most files of a dataset
    report = engine.report_of(ctx, st.st_size)
    entry = [
        _CODE[report.status.value],
        list(report.formats),
        [
            [f.rule_id, int(f.severity), f.member, f.offset, f.subject, f.message, f.chain]
            for f in report.findings
        ],
    ]
    return entry, stat_key(st), digest


def _scan_batch(
    locations: Sequence[str],
    names: Sequence[str],
    limits: Limits,
    started: Callable[[], None] | None = None,
) -> tuple[list[Any], bytes]:
    """The entries of a batch of files, and its tail (see :data:`_TAIL`): keys, digests,
    flags, each for every file in order. ``started`` is called as each file's scan starts."""
    entries = []
    keys = array("q")
    digests = bytearray()
    flags = bytearray()
    for location, name in zip(locations, names, strict=True):
        if started is not None:
            started()
        entry, key, digest = scan_one(location, name, limits)
        entries.append(entry)
        keys.extend(key)
        digests += digest or _NO_DIGEST
        flags.append(1 if digest else 0)
    return entries, keys.tobytes() + digests + flags


def _limits_json(limits: Limits) -> str:
    d = asdict(limits)
    d["extra_allow"] = sorted(limits.extra_allow)
    return json.dumps(d)


def _limits_from_json(text: str) -> Limits:
    d = json.loads(text)
    d["extra_allow"] = frozenset(d["extra_allow"])
    return Limits(**d)


def _serve(limits_text: str, progress_fd: int) -> None:
    """Worker main loop: read requests on stdin, write replies on stdout; the files started
    are counted in the shared word at ``progress_fd`` (the parent's watchdog reads it)."""
    limits = _limits_from_json(limits_text)
    shared = mmap.mmap(progress_fd, _COUNT.size)
    os.close(progress_fd)
    count_into = _COUNT.pack_into
    started_files = 0
    # the protocol owns the real stdout; anything a library prints goes to stderr
    wr = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    rd = sys.stdin.buffer

    def exact(n: int) -> bytes:
        data = rd.read(n)
        if len(data) != n:
            raise SystemExit(0)
        return data

    while True:
        count, length = _U32x2.unpack(exact(8))
        if count == 0:
            return
        parts = os.fsdecode(exact(length)).split("\0")

        def started() -> None:  # the parent's watchdog times each file from here
            nonlocal started_files
            started_files += 1
            count_into(shared, 0, started_files)

        entries, tail = _scan_batch(parts[0::2], parts[1::2], limits, started)
        reply = json.dumps(entries, separators=(",", ":")).encode()
        wr.write(_U32x2.pack(len(reply), len(tail)) + reply + tail)
        wr.flush()


@dataclass(frozen=True)
class ScanResults:
    """What the scan of many files found, compactly: one status byte per file, the
    formats and findings of the few files that have any, and what each file was when
    scanned: its :func:`stat_key` when opened (five numbers per file) and the SHA-256 of
    the bytes scanned (``hashed[i]`` 1; 0 when it was scanned from the file, not read
    whole: then it must be hashed elsewhere, and only its stat key ties the two reads).

    Per file, ``(digest, scan outcome)`` is the evidence a check rests on."""

    codes: bytes  #: per file, an index into :data:`STATUSES`
    formats: dict[int, tuple[str, ...]]  #: file index -> formats detected (when any)
    findings: dict[int, tuple[Finding, ...]]  #: file index -> findings (when any)
    keys: array[int] = field(default_factory=lambda: array("q"))  #: KEY_FIELDS per file
    digests: bytes = b""  #: DIGEST_SIZE bytes per file (zeros where not hashed)
    hashed: bytes = b""  #: per file, 1 when its digest is of the bytes scanned

    def status(self, i: int) -> Status:
        return STATUSES[self.codes[i]]

    def key(self, i: int) -> tuple[int, ...]:
        return tuple(self.keys[KEY_FIELDS * i : KEY_FIELDS * (i + 1)])

    def digest(self, i: int) -> bytes | None:
        """The SHA-256 of the bytes file ``i`` was scanned from, if it was read whole."""
        if not self.hashed[i]:
            return None
        return self.digests[DIGEST_SIZE * i : DIGEST_SIZE * (i + 1)]


class _Collector:
    def __init__(self, names: Sequence[str], count: int) -> None:
        self.names = names
        self.codes = bytearray(count)
        self.formats: dict[int, tuple[str, ...]] = {}
        self.findings: dict[int, tuple[Finding, ...]] = {}
        self.errors: dict[int, str] = {}
        self.keys = array("q", bytes(8 * KEY_FIELDS * count))
        self.digests = bytearray(DIGEST_SIZE * count)
        self.hashed = bytearray(count)

    def put(self, start: int, entries: list[Any], tail: bytes) -> None:
        """Record one reply; anything but the entries and tail :func:`_scan_batch` makes
        is refused (ValueError), never read as a result."""
        n = len(entries)
        if len(tail) != _TAIL * n:
            raise ValueError(f"a malformed scan reply for {shown(self.names[start])}")
        flags = tail[(_TAIL - 1) * n :]
        if flags.count(0) + flags.count(1) != n:
            raise ValueError(f"a malformed scan reply for {shown(self.names[start])}")
        keys = array("q")
        keys.frombytes(tail[: 8 * KEY_FIELDS * n])
        self.keys[KEY_FIELDS * start : KEY_FIELDS * (start + n)] = keys
        self.digests[DIGEST_SIZE * start : DIGEST_SIZE * (start + n)] = tail[
            8 * KEY_FIELDS * n : (8 * KEY_FIELDS + DIGEST_SIZE) * n
        ]
        self.hashed[start : start + n] = flags
        for j, e in enumerate(entries):
            if type(e) is int and e == 0:
                continue
            i = start + j
            if type(e) is dict and type(e.get("error")) is str:
                self.errors[i] = e["error"]
                continue
            if type(e) is not list or len(e) != 3:
                raise ValueError(f"a malformed scan result for {shown(self.names[i])}")
            code, formats, findings = e
            if type(code) is not int or not 0 <= code < len(STATUSES):
                raise ValueError(f"a malformed scan status for {shown(self.names[i])}")
            self.codes[i] = code
            if formats:
                self.formats[i] = tuple(formats)
            if findings:
                name = self.names[i]
                self.findings[i] = tuple(
                    Finding(r, Severity(s), name, m, o, subj, msg, ch)
                    for r, s, m, o, subj, msg, ch in findings
                )

    def result(self) -> ScanResults:
        if self.errors:
            raise InputError(self.errors[min(self.errors)])
        return ScanResults(
            bytes(self.codes),
            self.formats,
            self.findings,
            self.keys,
            bytes(self.digests),
            bytes(self.hashed),
        )


def file_budget(size: int) -> float:
    """Seconds a worker may take over a file of ``size`` bytes (:data:`SCAN_FLOOR`)."""
    return SCAN_FLOOR + SCAN_PER_MIB * max(size, 0) / 2**20


class _Watchdog:
    """Times each worker's current file from the count of files it has started (a word of
    memory each worker shares with this process, read every :data:`_WATCH_EVERY` s): a
    worker whose count stays on one file past that file's budget is killed (a stopped or
    stuck process too), so its feeder's reads end, and :meth:`late` says which file it was
    on. Once the scan has failed, every worker is killed (nothing is decided any more).

    A count read while the worker writes it can only look like progress (it never stays
    put while the worker moves on): at worst a kill comes one look later."""

    def __init__(
        self,
        procs: Sequence[subprocess.Popen[bytes]],
        counters: Sequence[mmap.mmap],
        sizes: Sequence[int],
        failed: Callable[[], bool],
    ) -> None:
        self._procs = procs
        self._counters = dict(zip(procs, counters, strict=True))
        self._sizes = sizes
        self._failed = failed
        self._lock = threading.Lock()
        #: a worker's request in flight: (its count before it, first file, end, armed at)
        self._busy: dict[subprocess.Popen[bytes], tuple[int, int, int, float]] = {}
        #: the count last seen of each busy worker, and since when
        self._seen: dict[subprocess.Popen[bytes], tuple[int, float]] = {}
        self._late: dict[subprocess.Popen[bytes], tuple[int, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self, proc: subprocess.Popen[bytes]) -> int:
        return int(_COUNT.unpack_from(self._counters[proc], 0)[0])

    def arm(self, proc: subprocess.Popen[bytes], before: int, start: int, end: int) -> None:
        """``proc`` is sent files ``start``-``end``, having started ``before`` files."""
        with self._lock:
            self._busy[proc] = (before, start, end, time.monotonic())
            self._seen.pop(proc, None)

    def disarm(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._busy.pop(proc, None)
            self._seen.pop(proc, None)

    def late(self, proc: subprocess.Popen[bytes]) -> tuple[int, float] | None:
        """The file ``proc`` was killed on, and its budget; None if it was not."""
        with self._lock:
            return self._late.get(proc)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _due(self, proc: subprocess.Popen[bytes], now: float) -> tuple[int, float] | None:
        """The file ``proc`` is late on and its budget, if it is (the lock held)."""
        before, start, end, armed = self._busy[proc]
        count = self.count(proc)
        seen = self._seen.get(proc)
        if seen is None or seen[0] != count:
            self._seen[proc] = seen = (count, now)
        if count <= before:  # the request sent, its first file not started yet
            return (start, SCAN_FLOOR) if now - armed > SCAN_FLOOR else None
        file = min(start + count - before - 1, end - 1)
        budget = file_budget(self._sizes[file])
        return (file, budget) if now - seen[1] > budget else None

    def _run(self) -> None:
        while not self._stop.wait(_WATCH_EVERY):
            now = time.monotonic()
            with self._lock:
                late = [(p, d) for p in self._busy if (d := self._due(p, now)) is not None]
                for p, d in late:
                    self._late[p] = d
                    del self._busy[p]
            for p, _ in late:
                p.kill()
            if self._failed():
                for p in self._procs:
                    p.kill()
                return


def _batches(sizes: Sequence[int]) -> list[tuple[int, int]]:
    out = []
    start = 0
    total = 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= BATCH or total + size > BATCH_BYTES):
            out.append((start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        out.append((start, len(sizes)))
    return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def scan_many(
    locations: Sequence[str],
    names: Sequence[str],
    sizes: Sequence[int],
    limits: Limits,
    *,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> ScanResults:
    """Scan every file (``locations[i]``, shown as ``names[i]``, of about ``sizes[i]``
    bytes). Raises :class:`InputError` naming the first file (in the given order) that
    could not be scanned. ``progress`` is called with the number of files just done."""
    n = len(locations)
    col = _Collector(names, n)
    workers = _cores() if workers is None else workers
    if workers < 2 or n < PROCESS_MIN_FILES:
        for start, end in _batches(sizes):
            col.put(start, *_scan_batch(locations[start:end], names[start:end], limits))
            if progress:
                progress(end - start)
        return col.result()
    _scan_in_workers(locations, names, sizes, limits, col, workers, progress)
    return col.result()


def _scan_in_workers(
    locations: Sequence[str],
    names: Sequence[str],
    sizes: Sequence[int],
    limits: Limits,
    col: _Collector,
    workers: int,
    progress: Callable[[int], None] | None,
) -> None:
    import mlverify

    root = str(Path(mlverify.__file__).resolve().parent.parent)
    # -I: no PYTHON* variable, no user site; the same text mode as this process, so
    # that a name encodes and decodes to the same bytes on both sides
    argv = [sys.executable, "-I", "-X", f"utf8={sys.flags.utf8_mode}", "-c", _BOOT, root]
    text = _limits_json(limits)
    if _limits_from_json(text) != limits:  # a field JSON cannot carry: never other limits
        raise InputError("internal error: the scan limits cannot be handed to a worker")
    argv.append(text)
    batches = iter(_batches(sizes))
    lock = threading.Lock()
    failures: list[BaseException] = []
    procs: list[subprocess.Popen[bytes]] = []
    counters: list[mmap.mmap] = []  # the word each worker counts its files in
    try:
        for _ in range(workers):
            with tempfile.TemporaryFile() as word:
                word.truncate(_COUNT.size)
                counters.append(mmap.mmap(word.fileno(), _COUNT.size))
                fd = word.fileno()
                procs.append(
                    subprocess.Popen(
                        [*argv, str(fd)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        close_fds=True,
                        pass_fds=(fd,),
                    )
                )
    except OSError as e:
        for p in procs:
            p.kill()
            p.wait()
        for c in counters:
            c.close()
        raise InputError(
            f"cannot start a scanner worker ({e}); check the Python installation"
        ) from None

    def feed(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            while not failures:
                with lock:
                    batch = next(batches, None)
                if batch is None:
                    return
                start, end = batch
                # one encoding of the joined text: the same bytes as each part's (no
                # character of a name encodes across a NUL)
                request = os.fsencode(
                    "\0".join(s for i in range(start, end) for s in (locations[i], names[i]))
                )
                entries: Any = None
                tail = b""
                try:
                    watch.arm(proc, sent[proc], start, end)
                    sent[proc] += end - start
                    proc.stdin.write(_U32x2.pack(end - start, len(request)) + request)
                    proc.stdin.flush()
                    head = proc.stdout.read(8)
                    length, tail_length = _U32x2.unpack(head) if len(head) == 8 else (-1, -1)
                    # the tail's length is fixed by the batch: never more is read
                    ok = 0 <= length <= MAX_REPLY and tail_length == _TAIL * (end - start)
                    reply = proc.stdout.read(length) if ok else b""
                    if ok and len(reply) == length:
                        entries = json.loads(reply)
                        tail = proc.stdout.read(tail_length)
                        if len(tail) != tail_length:
                            entries = None
                except (OSError, ValueError):
                    entries = None
                watch.disarm(proc)
                late = watch.late(proc)
                if late is not None:
                    file, seconds = late
                    raise InputError(
                        f"{shown(short(names[file]))}: the scan did not finish within "
                        f"{seconds:.0f} s (a file may take {SCAN_FLOOR:.0f} s plus "
                        f"{SCAN_PER_MIB:g} s per MiB); its worker was stopped and nothing was "
                        "decided: check the file (it may be made to stall a scanner), and "
                        "report it with the file if it repeats"
                    )
                if not isinstance(entries, list) or len(entries) != end - start:
                    try:
                        code: int | str | None = proc.wait(timeout=1)
                    except subprocess.TimeoutExpired:
                        code = "none: it answered wrongly"
                    raise InputError(
                        f"{shown(names[start])}: a scanner worker stopped while scanning it or "
                        f"one of the {end - start - 1} files after it (exit code {code}); "
                        "nothing was decided: check again, and report it if it repeats"
                    )
                with lock:
                    col.put(start, entries, tail)
                if progress:
                    progress(end - start)
        except BaseException as e:  # reported by the caller's thread
            failures.append(e)

    from mlverify._internal.workerpool import feed_workers

    sent = dict.fromkeys(procs, 0)  # files sent to each worker (each feeder its own)
    try:
        with _Watchdog(procs, counters, sizes, lambda: bool(failures)) as watch:
            feed_workers(procs, feed, goodbye=_U32x2.pack(0, 0), failed=lambda: bool(failures))
    finally:
        for c in counters:
            c.close()
    if failures:
        first = failures[0]
        if isinstance(first, MlverifyError):
            raise first
        raise InputError(
            f"the scanner workers failed ({type(first).__name__}: {first}); nothing was decided"
        )
