"""The event stream itself: whole lines from several processes, never a crash, never a
wait on its reader (real pipes, real files, /dev/full)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlverify._internal.report.events import EventStream, event_lines
from mlverify._internal.report.verdicts import undecided

REPO = Path(__file__).resolve().parents[2]

#: a verdict whose decision event is far longer than PIPE_BUF (4096): a write of it to a
#: shared pipe is not atomic by itself
BIG = undecided("m" * 20_000, "x" * 20_000, "sha256:" + "a" * 64, 1_700_000_000.0)

WRITER = """
import sys
from mlverify._internal.report.events import EventStream
from mlverify._internal.report.verdicts import undecided
stream = EventStream(sys.argv[1])
for i in range(int(sys.argv[2])):
    stream.emit(undecided(sys.argv[3] * 20_000 + str(i), "x" * 20_000, "sha256:" + "a" * 64, 0.0))
stream.close(timeout=60)
"""


def _writers(target: str, n: int, stdout: Any) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, target, str(n), letter], stdout=stdout, env=env
        )
        for letter in "abcd"
    ]
    for p in procs:
        assert p.wait(120) == 0


def _check_lines(text: str, n: int) -> None:
    lines = text.splitlines()
    assert len(lines) == 4 * n
    names = [json.loads(line)["resources"][0]["name"] for line in lines]  # each line whole
    assert sorted(names) == sorted(f"{c * 20_000}{i}" for c in "abcd" for i in range(n))


def test_processes_sharing_stdout_never_interleave(tmp_path: Path) -> None:
    """Four processes inherit one pipe as stdout (as worker processes do) and write lines
    of 40 kB each: every line read back is one whole event."""
    r, w = os.pipe()
    chunks: list[bytes] = []
    import threading

    def drain() -> None:
        while data := os.read(r, 1 << 16):
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        _writers("-", 50, w)
    finally:
        os.close(w)
        reader.join(60)
        os.close(r)
    _check_lines(b"".join(chunks).decode(), 50)


def test_processes_appending_to_one_file(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    _writers(str(out), 50, subprocess.DEVNULL)
    _check_lines(out.read_text(), 50)
    assert out.stat().st_mode & 0o777 & ~0o640 == 0  # created 0640 (less under a umask)


def test_events_are_the_ocsf_lines_of_the_document() -> None:
    lines = event_lines(BIG)
    (event,) = (json.loads(x) for x in lines)
    assert event["class_uid"] == 2003 and event["compliance"]["status_id"] == 3
    assert event["resources"][0]["uid"] == "sha256:" + "a" * 64  # the verdict's digest


def test_disk_full_is_logged_once_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    stream = EventStream("/dev/full")  # every write: ENOSPC
    with caplog.at_level(logging.WARNING, logger="mlverify._internal.events"):
        for _ in range(5):
            stream.emit(BIG)
        stream.close(timeout=30)
    failed = [r for r in caplog.records if "write failed" in r.getMessage()]
    assert len(failed) == 1 and "No space left" in str(failed[0].__dict__.get("error"))


def test_a_closed_pipe_is_logged_once(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)  # the reader went away
    saved = os.dup(1)
    os.dup2(w, 1)
    try:
        stream = EventStream("-")
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(w)
    with caplog.at_level(logging.WARNING, logger="mlverify._internal.events"):
        for _ in range(3):
            stream.emit(BIG)
        stream.close(timeout=30)
    failed = [x for x in caplog.records if "write failed" in x.getMessage()]
    assert len(failed) == 1 and "pipe" in str(failed[0].__dict__.get("error")).lower()


def test_a_reader_that_stops_reading_never_blocks_the_verdict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pipe fills, the writer thread waits on it; emitting still returns at once and
    the events beyond the bounded queue are dropped, logged once."""
    r, w = os.pipe()
    saved = os.dup(1)
    os.dup2(w, 1)
    try:
        stream = EventStream("-")
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(w)
    small = undecided("m", "denied", "", 0.0)
    with caplog.at_level(logging.WARNING, logger="mlverify._internal.events"):
        t0 = time.monotonic()
        for _ in range(30_000):
            stream.emit(small)
        assert time.monotonic() - t0 < 60
    dropped = [x for x in caplog.records if "dropped" in x.getMessage()]
    assert len(dropped) == 1
    os.close(r)  # the blocked write now fails (EPIPE), the thread ends on close
    stream.close(timeout=10)


def test_an_unwritable_path_is_one_line() -> None:
    from mlverify._internal.errors import UsageError

    with pytest.raises(UsageError) as e:
        EventStream("/nonexistent-dir/events.jsonl")
    assert str(e.value).startswith("events: /nonexistent-dir/events.jsonl: cannot open it")
