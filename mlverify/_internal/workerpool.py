"""Feeding a set of worker processes from threads, and stopping them: the one lifecycle the
hashing and the scanning workers share."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence


def feed_workers(
    procs: Sequence[subprocess.Popen[bytes]],
    feed: Callable[[subprocess.Popen[bytes]], None],
    *,
    goodbye: bytes,
    failed: Callable[[], bool],
) -> None:
    """Run ``feed(proc)`` in one thread per process until all return, then stop them: each
    is sent ``goodbye`` (its end-of-work message) and waited for, or killed at once when
    the feeding was interrupted (Ctrl-C) or ``failed()``; a worker that does not exit within
    5 s is killed. Pipes are closed in every case."""
    threads = [threading.Thread(target=feed, args=(p,), daemon=True) for p in procs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        # interrupted (Ctrl-C): stop the workers now; their feeders then see EOF and end
        stop_now = any(t.is_alive() for t in threads) or failed()
        for p in procs:
            try:
                assert p.stdin is not None
                if stop_now:
                    p.kill()
                else:
                    p.stdin.write(goodbye)
                p.stdin.close()
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
