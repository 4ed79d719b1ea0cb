"""Fan-out of large path artifacts, in process (no broker): a parent queues one file job
per large file without evidence and itself again (not a delivery); file jobs store
evidence (or failed evidence after their deliveries); the join takes the evidence only
about the very fingerprint listed, and the check does not read those files again."""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlverify._internal.distributed import filejob, jobs
from mlverify._internal.distributed.filejob import FileJob, evidence_key, run_file_job
from mlverify._internal.distributed.jobs import (
    Job,
    RetryJob,
    WorkerContext,
    artifact_digest,
    max_waits,
    run_job,
)
from mlverify._internal.distributed.known import KnownFile, limits_digest, scan_with_known
from mlverify._internal.errors import InputError, UsageError
from mlverify._internal.policy.model import load_policies
from mlverify._internal.scan.model import Limits
from mlverify._internal.serve.store import open_store
from mlverify._internal.serve.store.base import FileEvidence, VerdictStore
from tests.integrations.conftest import make_clean_model

BIG = 64 << 10  #: a "large" file here (the threshold is patched to 32 KiB)


def evil_pickle(size: int) -> bytes:
    """A pickle of ``size`` bytes calling os.system('true') (bytes only: never loaded)."""
    tail = b"0cos\nsystem\n(S'true'\ntR."
    n = size - 2 - 5 - len(tail)
    return b"\x80\x03B" + struct.pack("<I", n) + b"\x07" * n + tail


def big_model(root: Path, name: str = "big", large: int = 3) -> Path:
    """The clean fixture model (its small files) and ``large`` large data files."""
    model = make_clean_model(root, name)
    for i in range(large):
        (model / f"weights-{i}.bin").write_bytes(bytes([i + 1]) * BIG)
    return model


@dataclass
class Recorded:
    """A fan-out that records what a broker would be given."""

    files: list[FileJob] = field(default_factory=list)
    again: list[tuple[Job, float]] = field(default_factory=list)

    def file_job(self, job: FileJob) -> None:
        self.files.append(job)

    def again_job(self, job: Job, delay: float) -> None:
        self.again.append((job, delay))


class Fanout:
    def __init__(self, rec: Recorded) -> None:
        self.rec = rec

    def file_job(self, job: FileJob) -> None:
        # through the message, as a broker would carry it
        self.rec.file_job(FileJob.from_message(json.loads(json.dumps(job.to_message()))))

    def again(self, job: Job, delay: float) -> None:
        self.rec.again_job(Job.from_message(json.loads(json.dumps(job.to_message()))), delay)


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


@pytest.fixture
def rec() -> Recorded:
    return Recorded()


@pytest.fixture
def ctx(tmp_path: Path, rec: Recorded) -> WorkerContext:
    return WorkerContext(
        policies=load_policies(["builtin:default"]),
        store=open_store(f"sqlite:///{tmp_path}/v.db"),
        roots=[tmp_path / "models"],
        max_deliveries=3,
        fanout=Fanout(rec),
        fanout_bytes=32 << 10,
        fanout_wait=30,
    )


def job_for(ctx: WorkerContext, ref: str) -> Job:
    name, digest = artifact_digest(ref, roots=ctx.roots)
    c = ctx.config
    return Job(name, digest, c.policy, c.trust, c.version, "uploads")


def drain(ctx: WorkerContext, rec: Recorded) -> Job:
    """Run the recorded file jobs (each twice: a duplicate delivery is harmless); the
    parent's next message."""
    for f in rec.files:
        assert run_file_job(ctx, f) == "evidence"
        assert run_file_job(ctx, f) == "duplicate"
    rec.files.clear()
    (again, _), *more = rec.again
    assert not more
    rec.again.clear()
    return again


def test_evidence_store_protocol(store: VerdictStore) -> None:
    fp = (1, 2, 3, 4, 5)
    e = FileEvidence("k1", "w.bin", fp, "aa" * 32, "bb" * 32, 3, "0", time.time())
    assert store.get_evidence(["k1", "k2"]) == {}
    assert store.put_evidence(e) is True
    # the first write wins (a second delivery's, or a failed one's, writes nothing)
    assert store.put_evidence(FileEvidence("k1", "w.bin", fp, "", "", 3, "", 0.0, "x")) is False
    assert store.get_evidence(["k1", "k2"]) == {"k1": e}


def test_fanout_waits_then_joins_without_reading_large_files_again(
    ctx: WorkerContext, rec: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = big_model(tmp_path / "models")
    j = job_for(ctx, str(model))
    assert run_job(ctx, j) == "waiting"
    assert ctx.store.deliveries(j.key) == 0  # waiting is not a delivery
    assert sorted(f.name for f in rec.files) == ["weights-0.bin", "weights-1.bin", "weights-2.bin"]
    ((again, delay),) = rec.again
    assert again.key == j.key and again.waits == 1 and delay == 0.1
    assert sorted(again.asked) == sorted(f.key for f in rec.files)
    # a duplicate delivery of the waiting parent asks for no file job again
    rec.again.clear()
    assert run_job(ctx, again) == "waiting" and len(rec.files) == 3
    rec.again.clear()
    files = list(rec.files)
    for f in files:
        assert run_file_job(ctx, f) == "evidence"
        assert run_file_job(ctx, f) == "duplicate"
    rec.files.clear()
    # the join: the large files are neither scanned nor hashed (SHA-256 or BLAKE3) again
    from mlverify._internal.distributed import keys
    from mlverify._internal.manifest import build
    from mlverify._internal.scan import workers

    scanned: list[str] = []
    hashed: list[str] = []
    read: list[str] = []
    real_scan, real_hash, real_read = workers.scan_one, build.hash_whole_files, keys.read_file

    def scan_one(location: str, name: str, limits: Limits) -> object:
        scanned.append(name)
        return real_scan(location, name, limits)

    def hash_whole(locations: list[str], sizes: list[int], hash_type: str) -> bytes:
        hashed.extend(locations)
        return real_hash(locations, sizes, hash_type)  # type: ignore[arg-type]

    def read_file(full: str, *args: object) -> None:
        read.append(full)
        real_read(full, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(workers, "scan_one", scan_one)
    monkeypatch.setattr(build, "hash_whole_files", hash_whole)
    monkeypatch.setattr(keys, "read_file", read_file)
    assert run_job(ctx, again) == "allowed"
    assert scanned and not [n for n in scanned if n.startswith("weights-")]
    assert not [h for h in hashed if "weights-" in h]  # small files: hashed by their scan
    assert read and not [r for r in read if "weights-" in r]
    v = ctx.store.get(j.key)
    assert v is not None and v.allowed and v.digest == j.digest  # composable: the same digest
    doc = json.loads(v.result)
    assert doc["evidence"]["artifact"]["file_count"] == 7  # every file is in the manifest
    assert run_job(ctx, again) == "duplicate"
    assert ctx.store.deliveries(j.key) == 1


def test_malicious_large_file_is_denied_naming_it(
    ctx: WorkerContext, rec: Recorded, tmp_path: Path
) -> None:
    model = big_model(tmp_path / "models", large=2)
    (model / "evil.pkl").write_bytes(evil_pickle(BIG))
    j = job_for(ctx, str(model))
    assert run_job(ctx, j) == "waiting" and len(rec.files) == 3
    assert run_job(ctx, drain(ctx, rec)) == "denied"
    v = ctx.store.get(j.key)
    assert v is not None and not v.allowed
    findings = json.loads(v.result)["evidence"]["findings"]
    assert any(f["file"] == "evil.pkl" and "os.system" in f["message"] for f in findings)


def test_a_file_changed_after_its_evidence_is_judged_again(
    ctx: WorkerContext, rec: Recorded, tmp_path: Path
) -> None:
    model = big_model(tmp_path / "models")
    j = job_for(ctx, str(model))
    assert run_job(ctx, j) == "waiting"
    again = drain(ctx, rec)
    # the same size, the same mtime, other bytes: a malicious pickle under a data name
    target = model / "weights-1.bin"
    st = os.stat(target)
    target.write_bytes(evil_pickle(BIG))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    # its evidence is not about these bytes: asked again (only for the changed file)
    assert run_job(ctx, again) == "waiting"
    assert [f.name for f in rec.files] == ["weights-1.bin"]
    # the job queued before the change: its content is not the job's any more
    with pytest.raises(RetryJob, match="not what was queued"):
        run_job(ctx, drain(ctx, rec))
    j2 = job_for(ctx, str(model))  # as a back-fill or a replica names it now
    assert run_job(ctx, j2) == "denied"
    assert not rec.files
    v = ctx.store.get(j2.key)
    assert v is not None and not v.allowed
    assert any(f["file"] == "weights-1.bin" for f in json.loads(v.result)["evidence"]["findings"])


def test_a_file_job_that_fails_every_delivery_denies_the_parent(
    ctx: WorkerContext, rec: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = big_model(tmp_path / "models")
    j = job_for(ctx, str(model))
    assert run_job(ctx, j) == "waiting"
    real = filejob.make_evidence

    def broken(job: FileJob, *args: object) -> FileEvidence:
        if job.name == "weights-2.bin":
            raise InputError("weights-2.bin: cannot read it (Input/output error)")
        return real(job, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(filejob, "make_evidence", broken)
    outcomes = []
    for f in rec.files:
        for _ in range(ctx.max_deliveries):
            try:
                outcomes.append(run_file_job(ctx, f))
            except RetryJob:
                outcomes.append("retry")
    assert outcomes.count("failed") == 1 and outcomes.count("retry") == 2
    rec.files.clear()
    ((again, _),) = rec.again
    assert run_job(ctx, again) == "denied"
    v = ctx.store.get(j.key)
    assert v is not None and not v.allowed and v.kind == "failed"
    assert "weights-2.bin" in v.reasons[0] and "Input/output error" in v.reasons[0]


def test_a_parent_whose_evidence_never_comes_is_a_deny(
    ctx: WorkerContext, rec: Recorded, tmp_path: Path
) -> None:
    """File jobs lost (or never taken): the parent comes back a bounded number of times,
    then is recorded as a deny naming the files; never an allow, never a hang."""
    model = big_model(tmp_path / "models")
    job = job_for(ctx, str(model))
    waited = 0
    while (outcome := run_job(ctx, job)) == "waiting":
        ((job, delay),) = rec.again
        rec.again.clear()
        waited += 1
        assert delay <= jobs.MAX_WAIT_DELAY
    assert outcome == "denied" and waited == max_waits(ctx.fanout_wait)
    assert len(rec.files) == 3  # asked once each, not on every wait
    v = ctx.store.get(job.key)
    assert v is not None and not v.allowed and v.kind == "dead-letter"
    assert "weights-0.bin" in v.reasons[0] and "no evidence" in v.reasons[0]


def test_small_artifacts_and_one_large_file_are_one_job(
    ctx: WorkerContext, rec: Recorded, tmp_path: Path
) -> None:
    model = big_model(tmp_path / "models", large=1)
    assert run_job(ctx, job_for(ctx, str(model))) == "allowed"
    assert not rec.files and not rec.again


def test_file_job_messages_and_names(ctx: WorkerContext, tmp_path: Path) -> None:
    model = big_model(tmp_path / "models")
    st = os.lstat(model / "weights-0.bin")
    fp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    limits = limits_digest(filejob.check_limits(ctx.policies))
    f = FileJob(str(model), "weights-0.bin", fp, limits)
    assert FileJob.from_message(f.to_message()) == f
    assert f.key == evidence_key(f.version, limits, "weights-0.bin", fp)
    for bad in (
        {**f.to_message(), "key": "sha256:0"},
        {**f.to_message(), "fingerprint": [1, 2]},
        {**f.to_message(), "fingerprint": ["1", 2, 3, 4, 5]},
        [1],
    ):
        with pytest.raises(UsageError):
            FileJob.from_message(bad)
    # names that leave the artifact, or a link on the way, are never read
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "weights-0.bin").write_bytes(b"x" * BIG)
    (model / "up").symlink_to(outside)
    for name in ("../secret/weights-0.bin", "/etc/passwd", "./weights-0.bin", "up/weights-0.bin"):
        with pytest.raises((UsageError, InputError)):
            filejob.make_evidence(FileJob(str(model), name, fp, limits), Limits(), ctx.roots)
    with pytest.raises(UsageError, match="not under a configured model root"):
        filejob.make_evidence(FileJob(str(outside), "weights-0.bin", fp, limits), Limits(),
                              ctx.roots)  # fmt: skip
    # another fingerprint than the file's: never evidence about other bytes
    other = (fp[0], fp[1], fp[2], fp[3], fp[4] + 1)
    with pytest.raises(InputError, match="changed since"):
        filejob.make_evidence(FileJob(str(model), "weights-0.bin", other, limits), Limits(),
                              ctx.roots)  # fmt: skip
    # a worker scanning with other limits hands the job back
    g = FileJob(str(model), "weights-0.bin", fp, "0" * 64)
    with pytest.raises(RetryJob, match="other limits"):
        run_file_job(ctx, g)


def test_known_entries_are_used_only_for_the_fingerprint_and_limits_they_are_about(
    tmp_path: Path,
) -> None:
    """The check's hook: a known file whose fingerprint or limits differ is scanned."""
    evil = tmp_path / "w.bin"
    evil.write_bytes(evil_pickle(BIG))
    st = os.lstat(evil)
    fp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    lim = Limits()
    scan = scan_with_known
    clean = KnownFile(bytes(32), 0, limits_digest(lim), fp)  # "data, no finding"
    assert not scan({"w.bin": clean})([str(evil)], ["w.bin"], [BIG], lim).findings
    stale = KnownFile(bytes(32), 0, limits_digest(lim), (*fp[:4], fp[4] - 1))
    assert scan({"w.bin": stale})([str(evil)], ["w.bin"], [BIG], lim).findings
    other = KnownFile(bytes(32), 0, "0" * 64, fp)
    assert scan({"w.bin": other})([str(evil)], ["w.bin"], [BIG], lim).findings
    with pytest.raises(InputError, match="unusable"):
        scan({"w.bin": KnownFile(bytes(32), [9, [], []], limits_digest(lim), fp)})(
            [str(evil)], ["w.bin"], [BIG], lim
        )


def test_a_forged_wait_count_only_denies_sooner(
    ctx: WorkerContext, rec: Recorded, tmp_path: Path
) -> None:
    """``waits`` and ``asked`` travel in the message, outside the key: a message planted
    in Redis with them forged can only make the parent give up (a deny), never allow."""
    import dataclasses

    model = big_model(tmp_path / "models")
    j = job_for(ctx, str(model))
    asked = dataclasses.replace(j, asked=tuple(f"sha256:{i}" for i in range(3)))
    assert Job.from_message(asked.to_message()) == asked and asked.key == j.key
    forged = dataclasses.replace(j, waits=10**9)
    assert run_job(ctx, forged) == "denied" and not rec.files and not rec.again
    v = ctx.store.get(j.key)
    assert v is not None and not v.allowed and v.kind == "dead-letter"
    assert Job.from_message({**j.to_message(), "waits": -5}).waits == 0
    with pytest.raises(UsageError):
        Job.from_message({**j.to_message(), "asked": 7})
