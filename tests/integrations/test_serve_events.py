"""``serve --events`` and ``GET /report`` against ``mlverify serve`` as a real process:
OCSF events on stdout (nothing else there), one decision event per verdict reached, a
hit is not an event; write failures never touch a verdict; the posture page behind the
token, with its headers, escaped, read in a real Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integrations.conftest import (
    TOKEN,
    Server,
    _stop,
    free_port,
    make_clean_model,
    make_evil_model,
    wait_http,
)

pytest.importorskip("py_ocsf_models")
pytest.importorskip("matplotlib")

from tests.atlas.test_ocsf import validated
from tests.atlas.test_posture import browser  # noqa: F401 - the Chromium fixture

HOSTILE = "m<script>document.title='pwned'\x1b[2K\u202e"


class Started:
    def __init__(self, server: Server, out: Path, err: Path) -> None:
        self.server, self.out, self.err = server, out, err

    def events(self) -> list[dict[str, Any]]:
        # whole lines only: the server may be writing the last one as it is read
        whole = self.out.read_text().split("\n")[:-1]
        return [validated(line) for line in whole]

    def decisions(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["class_uid"] == 2003]

    def wait_decisions(self, n: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 60
        while len(found := self.decisions()) < n:
            assert time.monotonic() < deadline, f"{len(found)} decision events, expected {n}"
            time.sleep(0.1)
        return found

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.err.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


@pytest.fixture
def serve_events(tmp_path: Path) -> Iterator[Callable[..., Started]]:
    """``mlverify serve`` with stdout and stderr in separate files (or as given)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, stdout: Any = None) -> Started:
        port = free_port()
        out, err = tmp_path / f"out-{len(procs)}", tmp_path / f"err-{len(procs)}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLVERIFY_SERVE_TOKEN": TOKEN,
               "XDG_CACHE_HOME": str(tmp_path / "cache")}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlverify", "serve", "--port", str(port), *args],
            stdout=open(out, "wb") if stdout is None else stdout,  # noqa: SIM115
            stderr=open(err, "wb"),  # noqa: SIM115
            env=env,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(base + "/healthz", timeout=30)
        except OSError:
            pytest.fail(f"mlverify serve did not start: {err.read_text()[-3000:]}")
        return Started(Server(base, proc, err), out, err)

    yield start
    for p in procs:
        _stop(p)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("events-root")
    make_clean_model(d, "clean")
    make_evil_model(d, "evil")
    make_evil_model(d, HOSTILE)
    return d


def check(s: Started, ref: Path | str) -> dict[str, Any]:
    code, _, doc = s.server.request("POST", "/v1/check", {"ref": str(ref), "evidence": True})
    assert code == 200, doc
    assert isinstance(doc, dict)
    return doc


def test_events_on_stdout_one_decision_per_verdict(
    serve_events: Callable[..., Started], root: Path
) -> None:
    s = serve_events("--root", str(root), "--events", "-")
    clean = check(s, root / "clean")
    evil = check(s, root / "evil")
    assert clean["allowed"] is True and evil["allowed"] is False
    first, second = s.wait_decisions(2)
    # stdout holds events only: every line is an OCSF event (validated() parses each)
    assert all(e["metadata"]["product"]["name"] == "mlverify" for e in s.events())
    assert {first["resources"][0]["name"], second["resources"][0]["name"]} == {
        str(root / "clean"),
        str(root / "evil"),
    }
    by_name = {e["resources"][0]["name"]: e for e in (first, second)}
    for doc, name in ((clean, "clean"), (evil, "evil")):
        event = by_name[str(root / name)]
        root_digest = doc["evidence"]["artifact"]["root_digest"]
        assert event["resources"][0]["uid"] == f"sha256:{root_digest}"  # the artifact digest
    bad = by_name[str(root / "evil")]
    assert bad["compliance"]["status_id"] == 3
    ids = {a.get("sub_technique", a["technique"])["uid"] for a in bad["finding_info"]["attacks"]}
    assert "AML.T0011.000" in ids and "atlas:AML.M0016" in bad["metadata"]["labels"]
    assert by_name[str(root / "clean")]["compliance"]["status_id"] in (1, 2)
    findings = [e for e in s.events() if e["class_uid"] == 2004]
    assert findings and all(e["resources"][0]["name"] == str(root / "evil") for e in findings)
    assert any(e["finding_info"]["analytic"]["uid"] == "MLV101" for e in findings)
    # a path is judged every time (never a cached verdict): each check is one more decision
    check(s, root / "evil")
    assert len(s.wait_decisions(3)) == 3
    time.sleep(0.5)
    assert len(s.decisions()) == 3
    # nothing but events on stdout; the logs went to stderr
    assert any(r.get("msg") == "checked" for r in s.records())


def test_a_hit_is_not_an_event(
    serve_events: Callable[..., Started], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    registry = request.getfixturevalue("registry")  # skips without docker-registry
    from tests.integrations.test_oci import oras_push
    from tests.integrations.test_serve import digest_of

    oras_push(registry, make_clean_model(tmp_path, "clean"), "events/clean:v1")
    ref = f"oci://{registry.host}/events/clean@{digest_of(registry, 'events/clean', 'v1')}"
    s = serve_events("--registry", registry.host, "--events", "-")
    first = check(s, ref)
    assert first["cached"] is False
    (event,) = s.wait_decisions(1)
    assert event["resources"][0]["name"].endswith(ref.rsplit("/", 1)[1])
    assert check(s, ref)["cached"] is True  # served from the cache: no new event
    time.sleep(1)
    assert len(s.decisions()) == 1


@pytest.mark.parametrize("where", ["disk-full", "closed-pipe"])
def test_a_failing_stream_never_changes_a_verdict(
    serve_events: Callable[..., Started], root: Path, where: str
) -> None:
    if where == "disk-full":
        s = serve_events("--root", str(root), "--events", "/dev/full")
    else:
        s = serve_events("--root", str(root), "--events", "-", stdout=subprocess.PIPE)
        assert s.server.proc.stdout is not None
        s.server.proc.stdout.close()  # the SIEM shipper went away
    for _ in range(3):
        assert check(s, root / "evil")["allowed"] is False
        assert check(s, root / "clean")["allowed"] is True
    assert s.server.request("GET", "/healthz")[0] == 200 and s.server.proc.poll() is None
    time.sleep(0.5)
    failed = [r for r in s.records() if str(r.get("msg", "")).startswith("event stream:")]
    assert [r["msg"] for r in failed] == [
        "event stream: write failed; events are lost until writes succeed"
    ]
    assert failed[0]["level"] == "error"


def test_report_behind_the_token(serve_events: Callable[..., Started], root: Path) -> None:
    s = serve_events("--root", str(root))
    check(s, root / "evil")
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token-0123456789"}):
        code, hdrs, body = s.server.request("GET", "/report", headers=headers)
        api = s.server.request("GET", "/v1/verdicts", headers=headers)
        assert (code, body) == (api[0], api[2]) == (401, {"error": "missing or wrong bearer token"})
        assert hdrs["www-authenticate"] == api[1]["www-authenticate"]
    code, hdrs, page = s.server.request("GET", "/report")
    assert code == 200 and isinstance(page, str)
    assert hdrs["content-type"] == "text/html; charset=utf-8"
    assert hdrs["x-content-type-options"] == "nosniff"
    csp = hdrs["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp  # no script at all
    assert "frame-ancestors 'none'" in csp
    assert "evil" in page and "AML.T0011.000" in page


def test_report_in_chromium_escapes_hostile_names(
    serve_events: Callable[..., Started],
    root: Path,
    browser: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    s = serve_events("--root", str(root))
    assert check(s, root / HOSTILE)["allowed"] is False
    check(s, root / "clean")
    browser.call("Network.enable")
    browser.call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        browser.open(s.server.base + "/report")
        browser.screenshot(tmp_path / "report.png")
        assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert browser.evaluate("document.title") == "mlverify posture (serve)"
        assert browser.evaluate("document.querySelectorAll('script').length") == 0
        total = browser.evaluate("document.querySelector('#total-denied').textContent")
        assert total == "1denied"
        denied = browser.evaluate("document.querySelector('#denied').textContent")
        # the name as text, its control characters as visible escapes
        assert "m<script>document.title='pwned'\\x1b[2K\\u202e" in denied
        assert "\x1b" not in denied and "\u202e" not in denied
        assert "MLV101" in denied
    finally:
        browser.call("Network.setExtraHTTPHeaders", headers={})


def test_report_is_bounded_on_a_large_store(tmp_path: Path) -> None:
    """The real application in process, over a SQLite store holding more verdicts than a
    page renders: the newest PAGE_LIMIT are drawn, and the page says so."""
    import asyncio

    from mlverify._internal.policy.model import load_policies
    from mlverify._internal.report.verdicts import PAGE_LIMIT
    from mlverify._internal.serve.app import build_app
    from mlverify._internal.serve.executors.local import LocalExecutor
    from mlverify._internal.serve.service import ServeConfig, Service
    from mlverify._internal.serve.store import StoredVerdict, open_store

    store = open_store(f"sqlite:///{tmp_path / 'v.db'}")
    for i in range(PAGE_LIMIT + 200):
        store.put(
            StoredVerdict(f"k{i}", f"/models/m{i}", "sha256:" + "0" * 64, False, "failed",
                          1_700_000_000.0 + i, 1_700_000_000.0 + i, (f"reason {i}",)),
            now=0.0,
        )  # fmt: skip
    config = ServeConfig(policies=load_policies(["builtin:default"]))
    service = Service(config, LocalExecutor(config, store), store)
    app = build_app(service, token=TOKEN)
    status, headers, body = asyncio.run(_get(app, "/report", TOKEN))
    service.close()
    assert status == 200 and headers[b"content-type"] == b"text/html; charset=utf-8"
    page = body.decode()
    assert f"{PAGE_LIMIT} artifact(s)" in page and 'id="limit-note"' in page
    assert f"/models/m{PAGE_LIMIT + 199}" in page  # the newest are shown
    assert "/models/m199<" not in page and "/models/m0<" not in page


async def _get(app: Any, path: str, token: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET through the ASGI application (no HTTP client library needed)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_a_replica_emits_the_denies_it_reaches_itself(root: Path, tmp_path: Path) -> None:
    """Distributed: workers emit the verdicts they decide; a replica emits the denies it
    reaches without a worker (here: the queue is down, the job cannot be queued)."""
    pytest.importorskip("dramatiq")
    from mlverify._internal.distributed.broker import Queue
    from mlverify._internal.distributed.keys import Config
    from mlverify._internal.policy.model import load_policies
    from mlverify._internal.report.events import EventStream
    from mlverify._internal.serve.executors.queue import QueueExecutor
    from mlverify._internal.serve.service import ServeConfig
    from mlverify._internal.serve.store.memory import MemoryStore

    out = tmp_path / "events.jsonl"
    events = EventStream(str(out))
    config = ServeConfig(policies=load_policies(["builtin:default"]), roots=[root], events=events)
    queue = Queue(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    executor = QueueExecutor(config, MemoryStore(), queue, Config.of(config.policies))
    try:
        verdict = executor.submit(str(root / "clean")).result(timeout=60)
    finally:
        executor.close()
        events.close()
    assert verdict.allowed is False and "cannot enqueue" in verdict.error
    (event,) = (validated(line) for line in out.read_text().splitlines())
    assert event["compliance"]["status_id"] == 3 and "cannot enqueue" in event["status_detail"]
    assert event["resources"][0]["name"] == str(root / "clean")
