"""A registry in front of the real one, on loopback, that misbehaves on request:
answers 503 to blob pulls (a flaky registry), or anything a test scripts (a hostile
one: token challenges naming other hosts, redirects to wherever)."""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: a scripted answer: (status, headers, body), or None to forward to the real registry
Answer = tuple[int, dict[str, str], bytes]
Script = Callable[[http.server.BaseHTTPRequestHandler], "Answer | None"]


@dataclass
class Proxy:
    upstream: str  #: 127.0.0.1:PORT of the real registry
    fail_blob_gets: int = 0  #: answer this many blob GETs with 503 first
    script: Script | None = None
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    host: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take_failure(self, method: str, path: str) -> bool:
        with self._lock:
            if method == "GET" and "/blobs/" in path and self.fail_blob_gets > 0:
                self.fail_blob_gets -= 1
                return True
        return False


def _handler(proxy: Proxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            proxy.seen.append((self.command, self.path, dict(self.headers.items())))
            if proxy.script is not None:
                scripted = proxy.script(self)
                if scripted is not None:
                    self._answer(*scripted)
                    return
            if proxy.take_failure(self.command, self.path):
                self._answer(503, {"Content-Type": "text/plain"}, b"try again later")
                return
            conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            hdrs = dict(resp.getheaders())
            if "Location" in hdrs:
                hdrs["Location"] = hdrs["Location"].replace(proxy.upstream, proxy.host)
            conn.close()
            self._answer(resp.status, hdrs, data)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _any

    return Handler


@contextmanager
def running(proxy: Proxy) -> Iterator[Proxy]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    proxy.host = f"127.0.0.1:{server.server_address[1]}"
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
