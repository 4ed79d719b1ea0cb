"""Shared by the benchmarks: run a command, time it, measure its own peak RSS."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Case:
    name: str
    argv: Sequence[str]
    group: str
    reference: bool = False
    ok_codes: tuple[int, ...] = (0,)
    walls: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    #: user + system CPU seconds of the command and everything it waited for
    cpus: list[float] = field(default_factory=list)


GNU_TIME = shutil.which("time", path="/usr/bin:/bin")


def run_timed(case: Case) -> None:
    """Run one case; its peak RSS comes from GNU time, which forks from a small
    process (a child of ours would inherit our high-water mark through exec)."""
    fd, rss_path = tempfile.mkstemp(prefix="rss-")
    os.close(fd)
    argv = list(case.argv)
    if GNU_TIME:
        argv = [GNU_TIME, "-f", "%M", "-o", rss_path, *argv]
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_WRONLY)
    start = time.perf_counter()
    pid = os.posix_spawnp(
        argv[0],
        argv,
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ],
    )
    os.close(err_w)
    err = b""
    while chunk := os.read(err_r, 65536):
        err += chunk
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    os.close(err_r)
    os.close(devnull)
    code = os.waitstatus_to_exitcode(status)
    if code not in case.ok_codes:
        raise SystemExit(f"{case.name} failed ({code}): {err.decode().strip()[:500]}")
    case.walls.append(wall)
    case.cpus.append(usage.ru_utime + usage.ru_stime)
    text = Path(rss_path).read_text().strip()
    os.unlink(rss_path)
    case.rss_kib.append(int(text.splitlines()[-1]) if GNU_TIME and text else usage.ru_maxrss)


def run_rounds(cases: Sequence[Case], rounds: int, warmup: Sequence[Case] = ()) -> None:
    """Run ``warmup`` once (results dropped), then every case, interleaved, ``rounds`` times."""
    for c in warmup:
        run_timed(c)
        c.walls.clear()
        c.rss_kib.clear()
        c.cpus.clear()
    for _ in range(rounds):
        for c in cases:
            run_timed(c)
