"""`check` of many files: scanning in worker processes, and the compact evidence
(plain data counted, everything a policy acts on listed)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from mlverify._internal.errors import InputError
from mlverify._internal.evidence import evidence_from_json
from mlverify._internal.scan import workers
from mlverify._internal.scan.engine import scan_file
from mlverify._internal.scan.model import Limits
from tests.core.helpers import run, safetensors, write_key_pair

SYSTEM_PICKLE = b"cos\nsystem\n(S'true'\ntR."  # os.system('true') as opcodes: never run
BENIGN_PICKLE = b"\x80\x04K\x01."


def _mixed(root: Path) -> list[Path]:
    """Files of every kind of outcome: data, clean, findings, unsupported."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(12):
        p = root / f"d{i:02d}.txt"
        p.write_bytes(b"plain text %d\n" % i * (i + 1))
        out.append(p)
    (root / "evil.pkl").write_bytes(SYSTEM_PICKLE)
    (root / "ok.pkl").write_bytes(BENIGN_PICKLE)
    (root / "blob.bin").write_bytes(os.urandom(300))
    (root / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 8)
    out += [root / n for n in ("evil.pkl", "ok.pkl", "blob.bin", "broken.gguf")]
    out.append(safetensors(root / "w.safetensors"))
    return sorted(out)


def _scan(paths: list[Path], n_workers: int) -> workers.ScanResults:
    return workers.scan_many(
        [str(p) for p in paths],
        [p.name for p in paths],
        [p.stat().st_size for p in paths],
        Limits(),
        workers=n_workers,
    )


def test_workers_find_what_an_in_process_scan_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _mixed(tmp_path / "m")
    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 0)
    monkeypatch.setattr(workers, "BATCH", 3)  # many batches, answered out of order
    inline = _scan(paths, 1)
    forked = _scan(paths, 2)
    assert forked == inline
    for i, p in enumerate(paths):
        report = scan_file(p, Limits(), display=p.name)
        assert inline.status(i) == report.status, p.name
        assert inline.formats.get(i, ()) == report.formats
        assert inline.findings.get(i, ()) == report.findings
    by_status = {p.name: inline.status(i).value for i, p in enumerate(paths)}
    assert by_status["evil.pkl"] == "findings" and by_status["ok.pkl"] == "clean"
    assert by_status["broken.gguf"] == "unsupported" and by_status["d00.txt"] == "data"


def test_a_worker_that_dies_fails_the_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _mixed(tmp_path / "m")
    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 0)
    monkeypatch.setattr(workers, "_BOOT", "import os; os._exit(3)")
    with pytest.raises(InputError, match="scanner worker stopped"):
        _scan(paths, 2)


@pytest.mark.parametrize(
    ("entry", "count", "tail", "message"),
    [
        ("0", "n - 1", "n - 1", "scanner worker stopped"),  # answers for fewer files
        ("0", "n", "n - 1", "scanner worker stopped"),  # a tail for fewer files
        ("false", "n", "n", "malformed scan result"),  # not what scan_one writes
        ("[9,[],[]]", "n", "n", "malformed scan status"),
        ('{"error":1}', "n", "n", "malformed scan result"),
        ("0", "n", "flag", "malformed scan reply"),  # a digest flag neither 0 nor 1
    ],
)
def test_a_worker_answer_that_is_not_one_result_per_file_fails_the_scan(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    entry: str,
    count: str,
    tail: str,
    message: str,
) -> None:
    # a reply that leaves files out, or is not a result, never counts a file as scanned
    per_file = 8 * workers.KEY_FIELDS + workers.DIGEST_SIZE + 1
    tail_code = (
        f"bytes({per_file} * n - 1) + b'\\x02'"
        if tail == "flag"
        else f"bytes({per_file} * ({tail}))"
    )
    fake = (
        "import sys, struct\n"
        "rd, wr = sys.stdin.buffer, sys.stdout.buffer\n"
        "while True:\n"
        "    n, length = struct.unpack('<II', rd.read(8))\n"
        "    if n == 0: break\n"
        "    rd.read(length)\n"
        f"    reply = b'[' + b','.join([b'{entry}'] * ({count})) + b']'\n"
        f"    tail = {tail_code}\n"
        "    wr.write(struct.pack('<II', len(reply), len(tail)) + reply + tail); wr.flush()\n"
    )
    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 0)
    monkeypatch.setattr(workers, "_BOOT", fake)
    with pytest.raises(InputError, match=message):
        _scan(_mixed(tmp_path / "m"), 2)


@pytest.mark.parametrize("n_workers", [1, 2])
def test_a_fifo_swapped_in_is_refused_not_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_workers: int
) -> None:
    paths = _mixed(tmp_path / "m")
    fifo = tmp_path / "m" / "d05.txt"
    fifo.unlink()
    os.mkfifo(fifo)
    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 0)

    def unblock() -> None:  # only if a reader hangs on it (the bug): then the test fails
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(10, unblock)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(InputError, match=r"d05\.txt: not a regular file"):
            workers.scan_many(
                [str(p) for p in paths], [p.name for p in paths], [1] * len(paths), Limits(),
                workers=n_workers,
            )  # fmt: skip
    finally:
        timer.cancel()
    assert time.monotonic() - start < 8


def _policy(tmp: Path, public: Path) -> Path:
    p = tmp / "p.yaml"
    p.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: t\n"
        f"spec:\n  signatures: {{required: true, trusted: [{{key: {public}}}]}}\n"
    )
    return p


def _listing_digest(root: Path, names: list[str]) -> str:
    h = hashlib.sha256()
    for n in sorted(names):
        data = (root / n).read_bytes()
        h.update(n.encode() + b"\0" + hashlib.sha256(data).hexdigest().encode())
        h.update(b"\0%d\n" % len(data))
    return "sha256:" + h.hexdigest()


def test_evidence_counts_plain_data_and_lists_what_a_policy_acts_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 0)
    model = tmp_path / "model"
    _mixed(model / "sub")
    names = sorted(p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file())
    r = run(capsys, "check", "--no-cache", model, "--format", "json")
    assert r.code == 1, r.out + r.err
    doc = json.loads(r.out)["results"][0]
    ev = doc["evidence"]
    assert ev["scan_counts"] == {"data": 13, "clean": 2, "findings": 1, "unsupported": 1}
    assert ev["scan_status"] == {
        "sub/blob.bin": "data",  # named like a model file: a format allowlist must see it
        "sub/broken.gguf": "unsupported",
        "sub/evil.pkl": "findings",
        "sub/ok.pkl": "clean",
        "sub/w.safetensors": "clean",
    }
    assert ev["artifact"]["file_count"] == len(names) == 17
    assert ev["artifact"]["files_digest"] == _listing_digest(model, names)
    assert "files" not in ev["artifact"]
    assert {f["file"] for f in ev["findings"] if f["rule_id"] != "MLV301"} == {"sub/evil.pkl"}
    reasons = {r["code"] for d in doc["decisions"] for r in d["reasons"]}
    assert {"scan.finding", "scan.unsupported"} <= reasons


def test_unsigned_plain_data_is_listed_with_its_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    safetensors(model / "w.safetensors")
    (model / "a.txt").write_text("signed text\n")
    private, public = write_key_pair(tmp_path, "p256")
    sig = tmp_path / "model.sig"
    (model / "notes.txt").write_text("the signer's ignore paths leave this out\n")
    args = ("sign", model, "--key", private, "--signature", sig, "--ignore", "notes.txt")
    assert run(capsys, *args).code == 0
    p = _policy(tmp_path, public)
    r = run(
        capsys, "check", "--no-cache", model, "--policy", p, "--signature", sig, "--format", "json"
    )
    doc = json.loads(r.out)["results"][0]
    ev = doc["evidence"]
    assert ev["unsigned_files"] == ["notes.txt"]
    assert ev["scan_status"] == {"notes.txt": "data", "w.safetensors": "clean"}
    assert ev["scan_counts"]["data"] == 2
    codes = [x["code"] for d in doc["decisions"] for x in d["reasons"]]
    assert "signature.unsigned_data" in codes and "signature.unsigned_content" not in codes
    assert r.code == 0, r.out


def test_a_dataset_past_the_worker_threshold_is_checked_in_full(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = workers.PROCESS_MIN_FILES + 50
    data = tmp_path / "data"
    for i in range(n):
        d = data / f"part-{i // 500:02d}"
        if i % 500 == 0:
            d.mkdir(parents=True)
        (d / f"s-{i:05d}.txt").write_bytes(b"row %d\n" % i)
    private, public = write_key_pair(tmp_path, "p256")
    sig = tmp_path / "data.sig"
    assert run(capsys, "sign", data, "--key", private, "--signature", sig).code == 0
    p = _policy(tmp_path, public)
    args = ("check", "--no-cache", data, "--policy", p, "--signature", sig, "--format", "json")
    r = run(capsys, *args)
    assert r.code == 0, r.out + r.err
    ev = json.loads(r.out)["results"][0]["evidence"]
    assert ev["scan_counts"] == {"data": n, "clean": 0, "findings": 0, "unsupported": 0}
    assert ev["scan_status"] == {} and ev["artifact"]["file_count"] == n
    # one file among thousands rewritten: the signature and the scan both see it
    (data / "part-03" / "s-01717.txt").write_bytes(SYSTEM_PICKLE)
    r = run(capsys, *args)
    assert r.code == 1
    ev = json.loads(r.out)["results"][0]["evidence"]
    assert ev["scan_status"] == {"part-03/s-01717.txt": "findings"}
    assert ev["scan_counts"]["findings"] == 1 and ev["scan_counts"]["data"] == n - 1
    assert ev["signatures"][0]["status"] == "mismatch"


def test_a_listing_the_counts_do_not_cover_is_malformed() -> None:
    doc = {
        "artifact": {"ref": "m"},
        "scan_status": {"a": "unsupported", "b": "unsupported"},
        "scan_counts": {"unsupported": 1, "data": 5},
    }
    with pytest.raises(InputError, match="more 'unsupported' files than scan_counts"):
        evidence_from_json(doc)
    doc.pop("scan_counts")
    assert evidence_from_json(doc).scan_counts == {"unsupported": 2}


def test_the_compact_statement_check_agrees_with_the_plain_parse() -> None:
    from mlverify._internal.attest.intoto import parse_statement
    from mlverify._internal.attest.verify import _shape

    def statement(subject: dict[str, object]) -> bytes:
        doc = {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [subject],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"x": {"name": "n", "digest": "d", "algorithm": "a"}},
        }
        return json.dumps(doc).encode()

    # a subject that the compact form would read as a resource: the plain parse decides
    odd = statement({"name": "m", "digest": {"sha256": "ab" * 32}, "algorithm": "x"})
    assert _shape(odd, where="t") == parse_statement(odd, where="t").predicate_type
    bad = statement({"name": "m"})
    with pytest.raises(InputError) as plain:
        parse_statement(bad, where="t")
    with pytest.raises(InputError) as compact:
        _shape(bad, where="t")
    assert str(compact.value) == str(plain.value)


def test_digests_offered_to_signature_verification_are_the_files_own(tmp_path: Path) -> None:
    from mlverify._internal.artifact import walk_model
    from mlverify._internal.check import _KnownDigests
    from mlverify._internal.manifest.build import build_manifest
    from mlverify._internal.manifest.manifest import Serialization

    model = tmp_path / "m"
    _mixed(model / "a")
    _mixed(model / "a-b")  # names that sort differently from their paths' components
    tree = walk_model(model)
    known = _KnownDigests(tree, build_manifest(tree, Serialization(), None))
    locations = [f.location for f in walk_model(model).files]
    outside = tmp_path / "elsewhere.txt"
    outside.write_bytes(b"not in the walk")
    raw, missing = known.lookup_many("sha256", [*locations, str(outside)])
    assert missing == [len(locations)]
    for k, loc in enumerate(locations):
        assert bytes(raw[32 * k : 32 * k + 32]) == hashlib.sha256(Path(loc).read_bytes()).digest()
    assert known.lookup_many("blake2b", locations)[1] == list(range(len(locations)))
    single = walk_model(model / "a" / "evil.pkl")
    one = _KnownDigests(single, build_manifest(single, Serialization(), None))
    assert one.lookup_many("sha256", [single.files[0].location, locations[0]])[1] == [1]


def test_a_scanner_crash_is_an_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlverify._internal.scan import engine

    paths = _mixed(tmp_path / "m")
    real = engine.scan_context

    def crashing(path: Path, limits: Limits | None = None, display: str | None = None) -> object:
        if display == "ok.pkl":
            raise OverflowError("a scanner bug")
        return real(path, limits, display)

    monkeypatch.setattr(engine, "scan_context", crashing)
    monkeypatch.delenv("MLVERIFY_DEBUG", raising=False)
    with pytest.raises(InputError, match=r"ok\.pkl: the scanner failed on this file \(Overflow"):
        _scan(paths, 1)


def test_a_dataset_attestation_is_counted_in_the_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _mixed(data / "part")
    private, public = write_key_pair(tmp_path, "p256")
    assert run(capsys, "attest", "dataset", data, "--key", private).code == 0
    assert list(tmp_path.glob("data.*.sigstore.json"))  # beside the dataset: found by check
    p = tmp_path / "p.yaml"
    p.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: t\n"
        f"spec:\n  signatures: {{required: false, trusted: [{{key: {public}}}]}}\n"
    )
    r = run(capsys, "check", "--no-cache", data, "--policy", p, "--format", "json")
    ev = json.loads(r.out)["results"][0]["evidence"]
    assert ev["failed_attestations"] == []
    (att,) = ev["attestations"]
    assert att["predicate_type"] == "https://model_signing/signature/v1.0"
    assert att["predicate"]["resource_count"] == 17 and "resources" not in att["predicate"]
    assert att["predicate"]["serialization"]["method"] == "files"
    # verify-attestation itself still prints the whole predicate
    args = ("--type", "oms", "--key", public, "--format", "json")
    r = run(capsys, "verify-attestation", data, *args)
    assert r.code == 0, r.out + r.err
    assert len(json.loads(r.out)[0]["predicate"]["resources"]) == 17


def test_the_oms_summary_reads_everything_but_resources_as_the_plain_parse() -> None:
    from mlverify._internal.attest.verify import _oms_summary

    doc = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "d", "digest": {"sha256": "ab" * 32}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {
            "resources": [{"name": "a", "digest": "cd" * 32, "algorithm": "sha256"}] * 3,
            "serialization": {"method": "files", "hash_type": "sha256"},
            "extra": {"name": "n", "digest": "x", "algorithm": "y"},  # resource-shaped
        },
    }
    st = _oms_summary(json.dumps(doc).encode(), where="t")
    assert st.predicate == {
        "serialization": {"method": "files", "hash_type": "sha256"},
        "extra": {"name": "n", "digest": "x", "algorithm": "y"},
        "resource_count": 3,
    }


def test_a_rule_over_the_old_file_listing_denies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    safetensors(model / "w.safetensors")
    p = tmp_path / "p.yaml"
    p.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: t\nspec:\n  rules:\n"
        "    - name: no-bin\n"
        "      expr: \"evidence.artifact.files.all(f, !f.name.endsWith('.bin'))\"\n"
        "      message: no .bin files\n"
        "    - name: counted\n"
        '      expr: "evidence.artifact.file_count == 1 && evidence.scan_counts.clean == 1"\n'
        "      message: one clean file\n"
    )
    r = run(capsys, "check", "--no-cache", model, "--policy", p, "--format", "json")
    assert r.code == 1
    reasons = [x for d in json.loads(r.out)["results"][0]["decisions"] for x in d["reasons"]]
    assert [x["code"] for x in reasons if x["level"] == "deny"] == ["rule.error"]
    assert "no-bin" in next(x["message"] for x in reasons if x["code"] == "rule.error")
    lint = run(capsys, "policy", "lint", p)
    assert lint.code != 0 and "unknown evidence field 'artifact.files'" in lint.out + lint.err


def test_a_worker_reply_longer_than_the_bound_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = (
        "import sys, struct\n"
        "n, length = struct.unpack('<II', sys.stdin.buffer.read(8))\n"
        "sys.stdin.buffer.read(length)\n"
        "sys.stdout.buffer.write(struct.pack('<II', 0xFFFFFFF0, 73 * n))\n"
        "sys.stdout.buffer.flush()\n"
    )
    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 0)
    monkeypatch.setattr(workers, "_BOOT", fake)
    with pytest.raises(InputError, match="scanner worker stopped"):
        _scan(_mixed(tmp_path / "m"), 2)
