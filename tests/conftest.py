"""Fixtures shared by all test packages."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared reference material beside the project (absent in a user's clone)."""
    if not (SHARED / "vectors").is_dir():
        pytest.skip(f"{SHARED} is absent: public test vectors are not available here")
    return SHARED


_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> None:
    host = address[0] if isinstance(address, tuple) else address
    if self.family in (socket.AF_INET, socket.AF_INET6):
        allowed = isinstance(host, str) and (
            host.startswith("127.") or host in ("::1", "localhost")
        )
        if not allowed:
            raise OSError(f"test suite blocks non-loopback network access (to {address!r})")
    _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Offline by design: every test runs with non-loopback sockets blocked."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    yield
