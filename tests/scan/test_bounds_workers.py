"""A scan worker that stops answering fails the scan within its file's budget, naming the
file, and leaves no process behind. Real worker processes, really stopped (SIGSTOP)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from mlverify._internal.errors import InputError
from mlverify._internal.scan import workers
from mlverify._internal.scan.model import Limits

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def _children() -> set[int]:
    """This process's child processes (zombies too: a child not waited for is one)."""
    me = os.getpid()
    out = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == me:
            out.add(int(d.name))
    return out


def _files(root: Path, n: int) -> list[Path]:
    root.mkdir()
    out = []
    for i in range(n):
        p = root / f"f{i:03d}.txt"
        p.write_bytes(b"plain text %d\n" % i)
        out.append(p)
    return out


def _scan_in_thread(paths: list[Path], progress: object) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def run() -> None:
        try:
            result.append(
                workers.scan_many(
                    [str(p) for p in paths],
                    [p.name for p in paths],
                    [p.stat().st_size for p in paths],
                    Limits(),
                    progress=progress,  # type: ignore[arg-type]
                    workers=2,
                )
            )
        except BaseException as e:  # handed to the test's thread
            result.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def test_a_stopped_worker_fails_the_scan_naming_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "m", 40)
    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 0)
    monkeypatch.setattr(workers, "BATCH", 2)  # batches left when the workers stop
    monkeypatch.setattr(workers, "SCAN_FLOOR", 1.0)  # the budget, made small
    monkeypatch.setattr(workers, "SCAN_PER_MIB", 0.0)
    before = _children()
    stopped: list[int] = []

    def progress(n: int) -> None:  # after the first batch: every worker stops
        if not stopped:
            for pid in _children() - before:
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)

    t, result = _scan_in_thread(paths, progress)
    t.join(60)
    if t.is_alive():  # the bug: waits forever; let the workers go so the test ends
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        t.join(60)
        pytest.fail("the scan waited on a stopped worker")
    assert stopped, "no worker was started"
    (error,) = result
    assert isinstance(error, InputError), error
    message = str(error)
    assert "did not finish within 1 s" in message and "nothing was decided" in message
    assert message.split(":")[0] in {p.name for p in paths}  # the file it was on
    # torn down: every worker killed and waited for (no orphan, no zombie)
    assert _children() - before == set()
    for pid in stopped:
        assert not Path(f"/proc/{pid}").exists()


def test_a_worker_paused_shorter_than_the_budget_finishes_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline is re-armed as each file starts: a pause below one file's budget is no
    timeout, and every file is scanned."""
    paths = _files(tmp_path / "m", 12)
    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 0)
    monkeypatch.setattr(workers, "BATCH", 2)
    monkeypatch.setattr(workers, "SCAN_FLOOR", 20.0)
    before = _children()
    paused: list[int] = []

    def progress(n: int) -> None:
        if not paused:
            paused.extend(_children() - before)
            for pid in paused:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(1.5)
            for pid in paused:
                os.kill(pid, signal.SIGCONT)

    t, result = _scan_in_thread(paths, progress)
    t.join(120)
    assert not t.is_alive()
    (scan,) = result
    assert isinstance(scan, workers.ScanResults), scan
    assert len(scan.codes) == len(paths) and paused
    assert _children() - before == set()


def test_the_budget_grows_with_the_file() -> None:
    mib = 2**20
    assert workers.file_budget(0) == workers.SCAN_FLOOR
    assert workers.file_budget(10 * mib) == workers.SCAN_FLOOR + 10 * workers.SCAN_PER_MIB
    assert workers.file_budget(10 * 2**30) > 3600  # a 10 GiB file: hours, never forever
