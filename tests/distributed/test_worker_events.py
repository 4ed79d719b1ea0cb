"""``worker --events`` and the posture page of the verdict store, against the real worker
tier: Redis, `mlverify worker` (two processes sharing one stdout), `backfill`, a SQLite
store; then `mlverify report --html --store` rendered in a real Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.distributed.conftest import REPO, Redis
from tests.integrations.conftest import make_clean_model, make_evil_model

pytest.importorskip("dramatiq")
pytest.importorskip("py_ocsf_models")
pytest.importorskip("matplotlib")

from tests.atlas.test_ocsf import validated
from tests.atlas.test_posture import browser  # noqa: F401 - the Chromium fixture

FAST = ["--heartbeat-timeout", "3", "--retry-backoff", "0.2", "--max-backoff", "1"]
HOSTILE = "h<img src=x onerror=document.title=1>\x1b]0;pwned\x07"


def run(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "mlverify", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


@pytest.fixture
def worker_tier(
    tmp_path: Path, redis_server: Redis, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """Models under a root, a SQLite store, and `mlverify worker --concurrency 2 --events -`
    (or the target a test asks for) with its stdout in one file and its logs in another."""
    target = getattr(request, "param", "-")
    root = tmp_path / "models"
    root.mkdir()
    make_clean_model(root, "clean")
    make_evil_model(root, "evil")
    make_evil_model(root, HOSTILE)
    shutil.copytree(REPO / "fixtures" / "models" / "tampered-classifier", root / "tampered")
    store = f"sqlite:///{tmp_path / 'verdicts.db'}"
    out, err = tmp_path / "events.jsonl", tmp_path / "worker.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlverify", "worker", "--queue", redis_server.url, "--store",
         store, "--root", str(root), "--concurrency", "2", "--events", target, *FAST],
        stdout=open(out, "wb"), stderr=open(err, "wb"), env=env,  # noqa: SIM115
    )  # fmt: skip

    def records() -> list[dict[str, Any]]:
        found = []
        for line in err.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    deadline = time.monotonic() + 90
    while sum(r.get("msg") == "worker process ready" for r in records()) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
        time.sleep(0.2)
    try:
        yield {"root": root, "store": store, "events": out, "records": records,
               "queue": redis_server.url, "tmp": tmp_path}  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_worker_events_one_per_decision(worker_tier: dict[str, Any]) -> None:
    root, store = worker_tier["root"], worker_tier["store"]
    r = run("backfill", root, "--queue", worker_tier["queue"], "--store", store)
    assert r.returncode == 0, r.stderr
    from mlverify._internal.serve.store import open_store

    db = open_store(store)
    stored = {v.ref: v for v in db.verdicts()}
    db.close()
    assert len(stored) == 4
    deadline = time.monotonic() + 30

    def decisions() -> list[dict[str, Any]]:
        # whole lines only: a worker may be writing the last one as it is read
        whole = worker_tier["events"].read_text().split("\n")[:-1]
        events = [validated(x) for x in whole]
        return [e for e in events if e["class_uid"] == 2003]

    while len(decisions()) < 4:  # written right after each verdict, by its process
        assert time.monotonic() < deadline, decisions()
        time.sleep(0.2)
    by_ref = {e["resources"][0]["name"]: e for e in decisions()}
    assert sorted(by_ref) == sorted(stored)  # one decision event each, for every verdict
    for ref, v in stored.items():
        doc = v.result_json()
        assert doc is not None
        event = by_ref[ref]
        digest = doc["evidence"]["artifact"]["root_digest"]
        assert event["resources"][0]["uid"] == f"sha256:{digest}"
        assert event["compliance"]["status_id"] == (3 if not v.allowed else 2)
    evil = by_ref[str(root / "evil")]
    uids = {a.get("sub_technique", a["technique"])["uid"] for a in evil["finding_info"]["attacks"]}
    assert "AML.T0011.000" in uids
    tampered = by_ref[str(root / "tampered")]
    assert "signature.mismatch" in tampered["status_detail"]
    assert "atlas:AML.M0014" in tampered["metadata"]["labels"]
    # a second run finds everything decided: duplicates are not events
    r = run("backfill", root, "--queue", worker_tier["queue"], "--store", store)
    assert r.returncode == 0 and "4 already decided, 0 queued" in r.stderr, r.stderr
    time.sleep(1)
    assert len(decisions()) == 4
    # stdout held events only; the logs went to stderr
    assert all(line.startswith('{"activity_id"') for line in
               worker_tier["events"].read_text().splitlines())  # fmt: skip


def test_report_from_the_store_in_chromium(
    worker_tier: dict[str, Any],
    browser: Any,  # noqa: F811 - the fixture imported above
) -> None:
    root, store, tmp = worker_tier["root"], worker_tier["store"], worker_tier["tmp"]
    r = run("backfill", root, "--queue", worker_tier["queue"], "--store", store)
    assert r.returncode == 0, r.stderr
    page = tmp / "posture.html"
    r = run("report", "--html", page, "--store", store)
    assert r.returncode == 0, r.stderr  # a report over what was decided, not a gate
    assert "4 verdict(s) from the store" in r.stderr
    browser.open(page.as_uri())
    browser.screenshot(tmp / "posture.png")
    assert (tmp / "posture.png").stat().st_size > 20_000

    def text(selector: str) -> str:
        value = browser.evaluate(f"document.querySelector({json.dumps(selector)}).textContent")
        assert isinstance(value, str), selector
        return " ".join(value.split())

    assert text("#total-allowed") == "1allowed" and text("#total-denied") == "3denied"
    denied = text("#denied")
    assert str(root / "evil") in denied and "MLV101" in denied
    assert "signature.mismatch" in denied and "the files differ" in denied
    assert "h<img src=x onerror=document.title=1>\\x1b]0;pwned\\x07" in denied
    assert browser.evaluate("document.querySelectorAll('img, script').length") == 0
    assert text('[id="heat-AML.T0011.000-blocked"]') == "3"  # two pickles, the tampered one
    assert "AML.T0020" in text("#coverage")
    # the same page through `posture`
    again = tmp / "again.html"
    r = run("posture", "--html", again, "--store", store)
    assert r.returncode == 0 and "4 result(s) from the store" in r.stderr, r.stderr


@pytest.mark.parametrize("worker_tier", ["/dev/full"], indirect=True)
def test_a_full_disk_never_changes_a_verdict(worker_tier: dict[str, Any]) -> None:
    root, store = worker_tier["root"], worker_tier["store"]
    r = run("backfill", root, "--queue", worker_tier["queue"], "--store", store)
    assert r.returncode == 0, r.stderr
    from mlverify._internal.serve.store import open_store

    db = open_store(store)
    allowed = {Path(v.ref).name: v.allowed for v in db.verdicts()}
    db.close()
    assert allowed == {"clean": True, "evil": False, HOSTILE: False, "tampered": False}
    time.sleep(1)
    failed = [x for x in worker_tier["records"]() if "write failed" in str(x.get("msg"))]
    assert 1 <= len(failed) <= 2  # once per worker process that wrote
    assert not any(x.get("msg") == "job failed, will retry" for x in worker_tier["records"]())


def test_store_pages_refuse_what_cannot_work(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    for args, expect in (
        (("report", "--html", tmp_path / "p.html", "--store", missing), "no such verdict store"),
        (("report", "--store", missing), "--store renders the posture page only"),
        (("report", "r.json", "--html", "p.html", "--store", missing), "and no RESULTS.json"),
        (("posture", "--html", tmp_path / "p.html"), "or --store, one of them"),
        (("report",), "name RESULTS.json"),
    ):
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "none.db").exists()  # a typo never creates an empty store
