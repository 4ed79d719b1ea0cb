"""The verdict stores (memory, SQLite, PostgreSQL: one protocol, one schema) and the
worker pipeline without a broker: idempotent writes, delivery counts, dead letters,
retries of operational errors, what a worker refuses to judge."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlverify._internal.distributed.jobs import (
    Job,
    RetryJob,
    WorkerContext,
    artifact_digest,
    run_job,
    valid_until,
)
from mlverify._internal.distributed.keys import Config, Entry, tree_digest
from mlverify._internal.errors import MlverifyError, UsageError
from mlverify._internal.policy.model import load_policies
from mlverify._internal.serve.store import ScanRequest, StoredVerdict, StoreError, open_store
from mlverify._internal.serve.store.base import VerdictStore
from tests.distributed.conftest import Redis
from tests.integrations.conftest import make_clean_model, make_evil_model


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VerdictStore]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/v.db"
    else:
        pytest.importorskip("psycopg")
        url = request.getfixturevalue("pg_url")
    s = open_store(url)
    yield s
    s.close()


def verdict(key: str, allowed: bool, now: float, ttl: float = 60, by: str = "w1") -> StoredVerdict:
    return StoredVerdict(key, f"ref-{key}", "sha256:x", allowed, "decided", now, now + ttl,
                         ("because",), json.dumps({"a": 1}), by)  # fmt: skip


def test_store_protocol(store: VerdictStore) -> None:
    now = time.time()
    assert store.get("k1") is None
    assert store.put(verdict("k1", True, now), now=now) is True
    # a second delivery's write is refused while the first is current
    assert store.put(verdict("k1", False, now, by="w2"), now=now) is False
    got = store.get("k1")
    assert got is not None and got.allowed is True and got.decided_by == "w1"
    assert got.reasons == ("because",) and got.result_json() == {"a": 1}
    # once expired, the key is judged again and the new verdict replaces it
    assert store.put(verdict("k1", False, now + 61, by="w3"), now=now + 61) is True
    assert store.get("k1").decided_by == "w3"  # type: ignore[union-attr]
    assert store.put(verdict("k2", False, now + 1), now=now) is True
    assert [v.key for v in store.verdicts()] == ["k2", "k1"]
    assert [v.key for v in store.verdicts(denied=True)] == ["k2", "k1"]
    assert [v.key for v in store.verdicts(newest=True, limit=1)] == ["k1"]
    assert store.states(["k1", "k2", "nope"]) == {"k1": (False, now + 121), "k2": (False, now + 61)}
    assert set(store.get_many(["k1", "k2", "nope"])) == {"k1", "k2"}
    assert [store.deliver("j", "r", now) for _ in range(3)] == [1, 2, 3]
    assert store.deliveries("j") == 3 and store.deliveries("other") == 0
    # once decided, the next delivery (the verdict expired: judged again) starts a new
    # round: deliveries of earlier rounds never dead-letter a later one
    assert store.put(verdict("j", True, now + 1, ttl=1), now=now + 1)
    assert [store.deliver("j", "r", now + 3) for _ in range(2)] == [1, 2]
    store.note_error("j", "boom", now)
    # a current verdict holds the key: deliver counts nothing and says so (0), in the one
    # statement that looks it up; once the verdict expired the delivery is counted again
    assert store.put(verdict("d", True, now), now=now)
    assert store.deliver("d", "r", now) == 0 and store.deliveries("d") == 0
    assert store.deliver("d", "r", now + 59) == 0
    assert store.deliver("d", "r", now + 61) == 1 and store.deliveries("d") == 1
    assert store.put(verdict("d", False, now + 61), now=now + 61)  # the new round's verdict
    assert store.deliver("d", "r", now + 62) == 0 and store.deliveries("d") == 1
    scan = ScanRequest("id1", "", "oci://h/r@sha256:0", "r", "sha256:0", now)
    store.add_scan(scan)
    store.add_scan(scan)
    assert store.get_scan("id1") == scan and store.get_scan("id2") is None


def test_sqlite_store_is_shared_between_connections(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/v.db"
    a, b = open_store(url), open_store(url)
    now = time.time()
    assert a.put(verdict("k", True, now), now=now)
    assert not b.put(verdict("k", False, now), now=now)
    assert b.get("k").allowed is True  # type: ignore[union-attr]


def test_store_urls(tmp_path: Path) -> None:
    for url in ("mysql://x", "sqlite:///", f"sqlite:///{tmp_path}/no/such/dir/v.db"):
        with pytest.raises(UsageError) as e:
            open_store(url)
        assert len(str(e.value).splitlines()) == 1
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError) as se:
        open_store("postgresql://u:secret@127.0.0.1:1/db")
    assert "secret" not in str(se.value) and "***" in str(se.value)


# -- the pipeline ------------------------------------------------------------------------


@pytest.fixture
def ctx(tmp_path: Path) -> WorkerContext:
    return WorkerContext(
        policies=load_policies(["builtin:default"]),
        store=open_store(f"sqlite:///{tmp_path}/v.db"),
        roots=[tmp_path / "models"],
        max_deliveries=3,
    )


def job_for(ctx: WorkerContext, ref: str) -> Job:
    name, digest = artifact_digest(ref, roots=ctx.roots)
    c = ctx.config
    return Job(name, digest, c.policy, c.trust, c.version, "backfill")


def test_job_decides_once(ctx: WorkerContext, tmp_path: Path) -> None:
    models = tmp_path / "models"
    clean = make_clean_model(models, "clean")
    evil = make_evil_model(models, "evil")
    j = job_for(ctx, str(clean))
    assert run_job(ctx, j) == "allowed"
    assert run_job(ctx, j) == "duplicate"  # at-least-once made harmless
    assert ctx.store.deliveries(j.key) == 1
    e = job_for(ctx, str(evil))
    assert run_job(ctx, e) == "denied"
    v = ctx.store.get(e.key)
    assert v is not None and not v.allowed and "os.system" in " ".join(v.reasons)
    assert json.loads(v.result)["evidence"]["findings"]
    # the message round-trips; a forged key or queue is refused
    assert Job.from_message(j.to_message()) == j
    for bad in ({**j.to_message(), "key": "sha256:0"}, {**j.to_message(), "queue": "x"}, [1]):
        with pytest.raises(UsageError):
            Job.from_message(bad)


def test_content_changed_since_queued_is_retried_then_dead_lettered(
    ctx: WorkerContext, tmp_path: Path
) -> None:
    model = make_clean_model(tmp_path / "models", "m")
    j = job_for(ctx, str(model))
    (model / "config.json").write_text("{}")
    for _ in range(2):
        with pytest.raises(RetryJob, match="not what was queued"):
            run_job(ctx, j)
    assert run_job(ctx, j) == "dead-letter"  # the third delivery was the last
    v = ctx.store.get(j.key)
    assert v is not None and v.allowed is False and v.kind == "dead-letter"
    assert "not verified after 3 deliveries" in v.reasons[0]
    assert run_job(ctx, j) == "duplicate"


def test_a_job_that_kills_its_worker_is_dead_lettered(ctx: WorkerContext, tmp_path: Path) -> None:
    """Deliveries are counted in the store: a redelivered message whose worker died
    every time is recorded as a deny, never retried forever."""
    model = make_clean_model(tmp_path / "models", "m")
    j = job_for(ctx, str(model))
    for _ in range(3):
        ctx.store.deliver(j.key, j.ref, time.time())  # three deliveries that never finished
    assert run_job(ctx, j) == "dead-letter"
    assert "ended its worker" in ctx.store.get(j.key).reasons[0]  # type: ignore[union-attr]


def test_worker_with_other_policies_does_not_judge(ctx: WorkerContext, tmp_path: Path) -> None:
    model = make_clean_model(tmp_path / "models", "m")
    j = job_for(ctx, str(model))
    other = Job(j.ref, j.digest, "sha256:other", j.trust, j.version, "backfill")
    with pytest.raises(RetryJob, match="other policies"):
        run_job(ctx, other)
    assert ctx.store.get(other.key) is None


def test_paths_outside_roots_and_odd_files(ctx: WorkerContext, tmp_path: Path) -> None:
    import os

    outside = make_clean_model(tmp_path, "outside")
    with pytest.raises(MlverifyError, match="not under a configured model root"):
        artifact_digest(str(outside), roots=ctx.roots)
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    fifo_dir = models / "fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "pipe")
    with pytest.raises(UsageError, match="not a regular file"):
        tree_digest(fifo_dir)
    with pytest.raises(UsageError, match="unsupported scheme"):
        artifact_digest("s3://bucket/x", roots=ctx.roots)
    with pytest.raises(UsageError, match="pinned"):
        artifact_digest("hf://org/name", roots=ctx.roots)


def test_keys_name_everything_a_verdict_rests_on(tmp_path: Path) -> None:
    a = make_clean_model(tmp_path, "a")
    d1, _ = tree_digest(a)
    (a / "model.sig").write_text("{}")  # a signature file changes the verdict: and the digest
    d2, _ = tree_digest(a)
    assert d1 != d2
    c = Config("sha256:p", "sha256:t", "1")
    keys = {c.key("r", "d"), c.key("r2", "d"), c.key("r", "d2"),
            Config("sha256:p2", "sha256:t", "1").key("r", "d"),
            Config("sha256:p", "sha256:t2", "1").key("r", "d"),
            Config("sha256:p", "sha256:t", "2").key("r", "d")}  # fmt: skip
    assert len(keys) == 6


def test_a_refreshed_sigstore_root_is_a_new_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Red-team r4: a policy trusting Sigstore identities without naming a root had the
    constant "public-good" in its trust digest, so verdicts outlived `trust update`."""
    from mlverify._internal.distributed.keys import trust_digest
    from mlverify._internal.signing.sigstore_verify import shipped_trust_root_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n"
        "  signatures:\n    required: true\n    trusted:\n"
        "      - sigstore: {issuer: 'https://token.actions.githubusercontent.com',"
        " identities: ['https://github.com/acme/m/.github/workflows/release.yml@refs/heads/main']}\n"
    )
    shipped = trust_digest(load_policies([str(policy)]))
    refreshed = tmp_path / "data" / "mlverify" / "trusted_root.json"
    refreshed.parent.mkdir(parents=True)
    refreshed.write_bytes(shipped_trust_root_path().read_bytes().replace(b"}", b" }", 1))
    assert trust_digest(load_policies([str(policy)])) != shipped
    refreshed.unlink()
    assert trust_digest(load_policies([str(policy)])) == shipped


def test_verdicts_never_outlive_their_utc_day() -> None:
    import datetime as dt

    late = dt.datetime(2026, 3, 1, 23, 59, tzinfo=dt.timezone.utc).timestamp()
    assert valid_until(late, 86400) == late + 60
    assert valid_until(late - 3600, 10) == late - 3590


def test_postgres_schema_made_by_processes_starting_together(pg_url: str) -> None:
    """CREATE TABLE IF NOT EXISTS races in PostgreSQL's catalog: made under a lock."""
    import subprocess
    import sys

    code = (
        "import sys; from mlverify._internal.serve.store import open_store; open_store(sys.argv[1])"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url], stderr=subprocess.PIPE)
             for _ in range(6)]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()


def test_oci_jobs_only_from_configured_registries(ctx: WorkerContext) -> None:
    """A job naming a registry the worker was not given is not pulled (the queue is not a
    way to make workers fetch from anywhere)."""
    c = ctx.config
    job = Job("oci://evil.example/x@sha256:" + "0" * 64, "sha256:" + "0" * 64, c.policy,
              c.trust, c.version)  # fmt: skip
    with pytest.raises(RetryJob, match="not one this worker may pull from"):
        run_job(ctx, job)


def test_file_of_references_is_read_bounded(tmp_path: Path) -> None:
    from mlverify._internal.distributed.backfill import MAX_REF_LINE, references

    f = tmp_path / "refs.txt"
    f.write_text("# models\n\n/models/a\n  oci://h/r@sha256:" + "0" * 64 + "  \n")
    roots, refs = references(str(f))
    assert roots is None and list(refs) == ["/models/a", "oci://h/r@sha256:" + "0" * 64]
    f.write_bytes(b"x" * (MAX_REF_LINE + 10))
    with pytest.raises(MlverifyError, match="line longer"):
        list(references(str(f))[1])
    f.write_bytes(b"/ok\n\xff\xfe\n")
    with pytest.raises(MlverifyError, match="not UTF-8"):
        list(references(str(f))[1])
    with pytest.raises(MlverifyError, match="not a directory"):
        references(str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="expected oci://HOST"):
        references("oci://h/r:tag")


def test_content_swapped_with_its_mtime_set_back_is_not_judged(
    ctx: WorkerContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes changed between the job digest's read and the check's, with size, mtime and
    inode kept (os.utime sets mtime back): the change time differs, so the job is
    retried, never decided about bytes its key does not name."""
    import os

    from mlverify._internal.distributed import jobs

    model = make_clean_model(tmp_path / "models", "m")
    j = job_for(ctx, str(model))
    target = model / "config.json"
    real = jobs.digest_entries

    def digest_then_swap(listed: list[Entry], known: dict[str, str] | None = None) -> str:
        out = real(listed, known)
        st = os.stat(target)
        size = st.st_size
        time.sleep(0.05)  # a change time the (coarse) file-system clock tells apart
        target.write_bytes(b'{"x":' + b"1" * (size - 7) + b"}\n")
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(target).st_size == size and os.stat(target).st_mtime_ns == st.st_mtime_ns
        return out

    monkeypatch.setattr(jobs, "digest_entries", digest_then_swap)
    with pytest.raises(RetryJob, match="changed while being checked"):
        run_job(ctx, j)
    assert ctx.store.get(j.key) is None


def test_broker_requeues_what_it_fetched_but_does_not_hold(
    redis_server: Redis, tmp_path: Path
) -> None:
    """A fetch whose reply never reached the consumer (or a consumer that dropped its
    cache) leaves messages in a live process's acks set, where no heartbeat timeout
    frees them: reclaim() requeues them on its second sighting, never what a thread
    holds; a closed consumer requeues what it fetched but did not hand on."""
    pytest.importorskip("dramatiq")
    from mlverify._internal.distributed.broker import NAMESPACE, QUEUE_NAMES, Queue, make_broker

    q = QUEUE_NAMES["backfill"]

    def waiting() -> int:  # messages queued, not fetched
        return int(broker.client.llen(f"{NAMESPACE}:{q}"))

    producer = Queue(redis_server.url)
    c = Config("sha256:p", "sha256:t", "1")
    for i in range(3):
        producer.enqueue(Job(f"/m/{i}", "blake3:0", c.policy, c.trust, c.version, "backfill"))
    broker = make_broker(redis_server.url)
    consumer = broker.consume(q, prefetch=2, timeout=100)
    held = next(consumer)  # handed on: a worker thread holds it
    assert held is not None and waiting() == 1
    lost = broker.do_fetch(q, 1)  # fetched, its reply "lost": in our acks set, held nowhere
    assert len(lost) == 1 and waiting() == 0
    assert broker.reclaim() == 0  # first sighting: maybe a reply in flight
    assert broker.reclaim() == 1 and waiting() == 1  # second: requeued
    assert broker.reclaim() == 0  # the held message stays with its thread
    consumer.close()  # its cache (the second prefetched message) goes back
    assert waiting() == 2
    consumer.ack(held)
    assert broker.reclaim() == 0 and broker.reclaim() == 0
    broker.close()
    producer.close()


@pytest.mark.parametrize("swap", ["fifo", "symlink", "other-file"])
def test_an_entry_replaced_after_listing_is_never_read_as_listed(tmp_path: Path, swap: str) -> None:
    """Listed as a regular file, replaced before its bytes are read: by a FIFO (opening
    it would wait forever for a writer), by a symlink (to bytes elsewhere), by another
    file: the digest refuses it in one line, at once."""
    import os

    from mlverify._internal.distributed.keys import digest_entries, entries

    model = make_clean_model(tmp_path, "m")
    listed = entries(model)
    target = model / "config.json"
    target.unlink()
    if swap == "fifo":
        os.mkfifo(target)
    elif swap == "symlink":
        target.symlink_to(model / "model.safetensors")
    else:
        target.write_text('{"other": true}')
    t0 = time.monotonic()
    with pytest.raises(MlverifyError, match=r"changed while being read|cannot read it"):
        digest_entries(listed)
    assert time.monotonic() - t0 < 5


def test_content_swapped_beside_a_large_check_is_not_judged(
    ctx: WorkerContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest of a large tree is read beside the check (a thread), not before it: a
    change made after both read, with size, mtime and inode kept, still differs from the
    fingerprint listed before either read."""
    import os

    from mlverify._internal.distributed import jobs

    monkeypatch.setattr(jobs, "INLINE_DIGEST", 0)
    model = make_clean_model(tmp_path / "models", "m")
    j = job_for(ctx, str(model))
    target = model / "config.json"
    real = jobs.digest_entries

    def digest_then_swap(listed: list[Entry], known: dict[str, str] | None = None) -> str:
        out = real(listed, known)
        st = os.stat(target)
        time.sleep(0.05)
        target.write_bytes(b'{"x":' + b"1" * (st.st_size - 7) + b"}\n")
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        return out

    monkeypatch.setattr(jobs, "digest_entries", digest_then_swap)
    with pytest.raises(RetryJob, match="changed while being checked"):
        run_job(ctx, j)
    assert ctx.store.get(j.key) is None


def test_a_directory_listing_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlverify._internal.distributed import keys

    monkeypatch.setattr(keys, "MAX_ENTRIES", 50)
    d = tmp_path / "deep"
    p = d
    for i in range(60):  # directories count too: empty ones cost a listing each
        p = p / f"d{i}"
    p.mkdir(parents=True)
    with pytest.raises(MlverifyError, match="more than 50 entries"):
        keys.entries(d)


def test_a_worker_lost_between_its_verdict_and_its_ack_loses_nothing(
    ctx: WorkerContext, redis_server: Redis, tmp_path: Path
) -> None:
    """A job's verdict is written (durably) before its message is acked, never after: a
    worker that dies in between leaves the message unacked, so it is redelivered once the
    worker's heartbeat stopped, and the second delivery finds the verdict in the one
    statement that would count it: nothing judged again, no verdict written twice, no
    delivery counted twice, the queue drained."""
    pytest.importorskip("dramatiq")
    from mlverify._internal.distributed.broker import NAMESPACE, QUEUE_NAMES, Queue, make_broker

    q = QUEUE_NAMES["backfill"]
    j = job_for(ctx, str(make_clean_model(tmp_path / "models", "clean")))
    producer = Queue(redis_server.url)
    producer.enqueue(j)
    dead = make_broker(redis_server.url, heartbeat_timeout=0.5)
    held = next(dead.consume(q, prefetch=1, timeout=100))
    assert held is not None and Job.from_message(held.args[0]) == j
    assert run_job(ctx, Job.from_message(held.args[0])) == "allowed"
    first = ctx.store.get(j.key)
    assert first is not None and first.allowed
    # ... and the process dies here: no ack, no more heartbeats (the broker is abandoned)
    live = make_broker(redis_server.url, heartbeat_timeout=0.5)
    consumer = live.consume(q, prefetch=1, timeout=100)
    again = None
    deadline = time.monotonic() + 30
    while again is None and time.monotonic() < deadline:
        time.sleep(0.2)
        live.do_qsize(q)  # queue maintenance: a dead worker's messages go back
        again = next(consumer)
    assert again is not None, "the lost worker's message was never redelivered"
    assert Job.from_message(again.args[0]) == j
    other = WorkerContext(
        policies=ctx.policies, store=open_store(ctx.store.url), roots=ctx.roots,
        worker_id="other:1",
    )  # fmt: skip
    assert run_job(other, Job.from_message(again.args[0])) == "duplicate"
    consumer.ack(again)
    assert ctx.store.get(j.key) == first  # the first verdict, written once
    assert ctx.store.deliveries(j.key) == 1  # the duplicate counted no delivery
    assert [v.key for v in ctx.store.verdicts()] == [j.key]
    assert live.do_qsize(q) == 0
    assert not live.client.smembers(f"{NAMESPACE}:__acks__.{live.broker_id}.{q}")
    consumer.close()
    live.close()
    dead.close()
    producer.close()
