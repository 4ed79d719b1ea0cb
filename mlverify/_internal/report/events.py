"""The event stream of ``serve --events`` and ``worker --events``: OCSF events (see
:mod:`mlverify._internal.report.ocsf`) as JSON lines, written as each verdict is reached.

Per verdict: the Detection Finding of each scanner finding (at most
:data:`MAX_FINDING_EVENTS`), then its decision events (a Compliance Finding per policy
decision, or one Fail for a verdict reached without a decision).

How it is written:

- ``-`` is standard output (the process writes nothing else there: logs go to stderr);
  a path is opened ``O_APPEND`` (created ``0640``), so processes sharing the file append;
- one writer thread per process takes lines from a bounded queue: the thread that
  reached the verdict never waits on the reader of the stream (a full queue drops the
  event, counted, logged once);
- each line is written whole under an exclusive ``flock`` on the stream (worker
  processes share it), so lines from several processes never interleave;
- a failed write (disk full, closed pipe) is an operational error logged once on
  stderr (and once more when writes succeed again); it never ends the process and never
  touches a verdict. A line cut short by a failure is ended before the next one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
from typing import Any

from mlverify._internal.errors import UsageError
from mlverify._internal.text import shown

log = logging.getLogger("mlverify._internal.events")

#: lines waiting for the writer, at most
MAX_PENDING = 10_000
#: Detection Findings per verdict, at most (the decision event counts every finding)
MAX_FINDING_EVENTS = 1000


def event_lines(doc: Any) -> list[str]:
    """The JSON lines of one verdict's check-result document."""
    from mlverify._internal.atlas import check_results
    from mlverify._internal.report.ocsf import decision_events, finding_events

    out: list[dict[str, Any]] = []
    for r in check_results(doc):
        out += finding_events(r)[:MAX_FINDING_EVENTS]
        out += decision_events(r)
    return [json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in out]


class EventStream:
    """JSON lines to ``target`` (``-``: standard output, else a file appended to)."""

    def __init__(self, target: str) -> None:
        self.target = "stdout" if target == "-" else target
        if target == "-":
            self._fd = _own_stdout()
        else:
            try:
                self._fd = os.open(
                    target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
                )
            except OSError as e:
                raise UsageError(
                    f"{shown(target)}: cannot open it for appending ({e.strerror}); "
                    "name a writable file or -",
                    setting="events",
                ) from None
        self._queue: queue.Queue[str | None] = queue.Queue(MAX_PENDING)
        self._failing = False  #: the last write failed (logged once)
        self._torn = False  #: the last line was cut short
        self._dropped = 0
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write_all, name="mlverify-events", daemon=True)
        self._thread.start()

    def emit(self, doc: Any) -> None:
        """Queue the events of one verdict's document; never raises, never blocks."""
        try:
            lines = event_lines(doc)
        except Exception as e:  # a document we cannot render: say so, keep serving
            log.error(
                "event stream: events not rendered",
                extra={"stream": self.target, "error": f"{type(e).__name__}: {e}"[:300]},
            )
            return
        for line in lines:
            try:
                self._queue.put_nowait(line)
            except queue.Full:
                with self._count_lock:
                    self._dropped += 1
                    first = self._dropped == 1
                if first:
                    log.error(
                        "event stream: events dropped (the reader does not keep up)",
                        extra={"stream": self.target, "pending": MAX_PENDING},
                    )

    def _write_all(self) -> None:
        while True:
            line = self._queue.get()
            if line is None:
                return
            self._write(line)

    def _write(self, line: str) -> None:
        data = (b"\n" if self._torn else b"") + line.encode()
        written = 0
        try:
            with self._locked():
                while written < len(data):
                    written += os.write(self._fd, data[written:])
        except OSError as e:
            self._torn = self._torn or written > 0
            if not self._failing:
                self._failing = True
                log.error(
                    "event stream: write failed; events are lost until writes succeed",
                    extra={"stream": self.target, "error": e.strerror or type(e).__name__},
                )
            return
        self._torn = False
        if self._failing:
            self._failing = False
            log.warning("event stream: writing again", extra={"stream": self.target})

    @contextlib.contextmanager
    def _locked(self) -> Any:
        import fcntl

        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:  # a stream that cannot be locked (some file systems): write anyway
            yield
            return
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for at most ``timeout`` seconds), then close."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _own_stdout() -> int:
    """Standard output opened anew (its own open file description, so the ``flock`` of
    each process excludes the others: worker processes inherit one stdout, and a lock on
    an inherited descriptor is shared, not exclusive); a duplicate where it cannot be
    reopened (a socket)."""
    try:
        return os.open("/proc/self/fd/1", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        pass
    try:
        return os.dup(1)
    except OSError as e:
        raise UsageError(
            f"-: standard output is not open ({e.strerror}); name a file", setting="events"
        ) from None


def open_events(target: str | None) -> EventStream | None:
    """The stream ``--events`` names, or None."""
    return EventStream(target) if target else None
