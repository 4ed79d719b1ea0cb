"""The HTTP transport of ``mlverify serve``: uvicorn's h11 protocol with the limits
an unauthenticated client must not be able to exhaust.

uvicorn (0.54) has no deadline for reading a request: a client that sends a few bytes
of headers and never finishes holds its connection forever, and 300 of them took
every connection slot, so every request (``/healthz`` included) answered 503. Here:

- **read timeout**: the request line, headers and body must arrive within
  ``read_timeout`` seconds of the connection (or of the previous response on a
  kept-alive connection); then the connection is closed;
- **per-client connection limit**: a client address holds at most ``per_client``
  connections at once; more are closed on arrival, so one client cannot take the slots
  that admission requests need.

Loaded only by ``mlverify serve`` (uvicorn is the ``serve`` extra).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("mlverify._internal.serve")


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a request read deadline and a per-client connection limit."""

    read_timeout: ClassVar[float] = 10.0
    per_client: ClassVar[int] = 64
    #: open connections per client address (one event loop: no lock needed)
    clients: ClassVar[Counter[str]] = Counter()

    @classmethod
    def configured(cls, *, read_timeout: float, per_client: int) -> type[GuardedH11Protocol]:
        """A subclass with these limits and its own connection counts."""
        return type(
            "GuardedH11Protocol",
            (cls,),
            {"read_timeout": read_timeout, "per_client": per_client, "clients": Counter()},
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._address = ""
        self._counted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = self.client[0] if self.client else ""
        self.clients[self._address] += 1
        self._counted = True
        if self.clients[self._address] > self.per_client:
            log.warning(
                "connection refused: too many open connections from this client",
                extra={"client": self._address, "limit": self.per_client},
            )
            transport.abort()
            return
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state is h11.DONE:
            return
        if self.conn.their_state is h11.SEND_BODY or self.conn.their_state is h11.IDLE:
            log.warning(
                "connection closed: request not received in time",
                extra={"client": self._address, "seconds": self.read_timeout},
            )
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.DONE:
            self._disarm()  # the whole request is in; the response has no deadline here

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection has its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted:
            self._counted = False
            self.clients[self._address] -= 1
            if self.clients[self._address] <= 0:
                del self.clients[self._address]
        super().connection_lost(exc)
