"""Run one call on a daemon thread: the process can exit without waiting for it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BackgroundCall(Generic[T]):
    """``fn(*args)`` started now; ``result()`` waits and returns or re-raises.

    Unlike a thread pool, an abandoned call (e.g. hashing after a signature
    failed) does not delay the process's exit.
    """

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn(*args)
            except BaseException as e:  # handed to the caller of result()
                self._error = e

        self._thread = threading.Thread(target=run, name="mlverify-background", daemon=True)
        self._thread.start()

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
