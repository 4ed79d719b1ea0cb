"""Signature size bounds come from the model being verified, not from one constant.

A signature larger than the old fixed 16 MiB cap verifies (with ``verify``,
``check`` and model_signing), while an oversized hostile file is refused from
its size, before it is read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlverify._internal.manifest import limits
from tests.check.test_check import _signed_policy
from tests.core.helpers import run, write_key_pair

OLD_CAP = 16 * 1024 * 1024
MS_CLI = Path(sys.executable).parent / "model_signing"


def _long_named_model(root: Path, files: int) -> Path:
    """A model whose signature exceeds the old cap with few files: ~3.7 KB names.

    (A million files of ordinary names give the same size; this keeps the test fast.)
    """
    model = root / "m"
    deep = model
    for i in range(14):
        deep = deep / (f"{i:02d}" + "d" * 248)
    deep.mkdir(parents=True)
    for i in range(files):
        (deep / (f"{i:05d}" + "f" * 195)).write_bytes(b"%d" % i)
    return model


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("big-signature")
    model = _long_named_model(root, 3400)
    private, public = write_key_pair(root, "p256")
    sig = root / "model.sig"
    from mlverify._internal.cli import main

    try:
        main(["sign", str(model), "--key", str(private), "--signature", str(sig)])
    except SystemExit as e:
        assert not e.code
    return {"root": root, "model": model, "sig": sig, "private": private, "public": public}


def test_signature_larger_than_the_old_cap_verifies(
    big: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert big["sig"].stat().st_size > OLD_CAP
    r = run(capsys, "verify", big["model"], "--signature", big["sig"], "--key", big["public"])
    assert r.code == 0, r.err
    assert "verified:" in r.out and "3400 files" in r.out


def test_check_verifies_a_signature_larger_than_the_old_cap(
    big: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pol = _signed_policy(tmp_path, big["public"])
    r = run(capsys, "check", "--no-cache", big["model"], "--policy", pol, "--signature", big["sig"])
    assert r.code == 0, r.out + r.err
    assert "ALLOWED" in r.out


@pytest.mark.skipif(not MS_CLI.exists(), reason="model_signing CLI not installed in this venv")
def test_model_signing_verifies_the_large_signature(big: dict[str, Path]) -> None:
    done = subprocess.run(
        [str(MS_CLI), "verify", "key", str(big["model"]), "--signature", str(big["sig"]),
         "--public_key", str(big["public"])],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_hostile_oversized_signature_refused_before_it_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 100)
    _, public = write_key_pair(tmp_path, "p256")
    sig = tmp_path / "model.sig"
    with open(sig, "wb") as f:
        f.truncate(64 << 30)  # 64 GiB, sparse: reading it would take minutes and all memory
    start = time.monotonic()
    r = run(capsys, "verify", model, "--signature", sig, "--key", public)
    assert time.monotonic() - start < 10
    assert r.code == 2
    assert "signature file is larger than 16 MiB" in r.err
    assert "this is not its signature" in r.err and "Traceback" not in r.err
    # check names it as an invalid signature, and denies when signatures are required
    pol = _signed_policy(tmp_path, public)
    r = run(capsys, "check", "--no-cache", model, "--policy", pol, "--signature", sig)
    assert r.code == 1 and "larger than 16 MiB" in r.out


def test_bound_just_above_a_real_signature_is_enforced(
    big: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The bound is the model's: the same big signature against a small model is refused."""
    small = tmp_path / "small"
    small.mkdir()
    (small / "a.bin").write_bytes(b"a")
    r = run(capsys, "verify", small, "--signature", big["sig"], "--key", big["public"])
    assert r.code == 2 and "larger than 16 MiB" in r.err


def test_limit_counts_every_entry_and_sizes_only_when_needed(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"x" * 10)
    big_file = tmp_path / "big.bin"
    with open(big_file, "wb") as f:
        f.truncate(10 << 20)  # 10 shards at the budget's shard size
    os.symlink("sub/a.bin", tmp_path / "link")
    one = limits.entry_bytes
    cheap = limits.FLOOR + one(len("sub/a.bin"), 0) + one(len("big.bin"), 0) + one(4, 0)
    assert limits.signature_limit_for(tmp_path) == cheap
    full = limits.FLOOR + one(len("sub/a.bin"), 10) + one(len("big.bin"), 10 << 20) + one(4, 0)
    assert full > cheap
    assert limits.signature_limit_for(tmp_path, needed=cheap + 1) == full
    assert one(7, 10 << 20) == (limits.ENTRY_OVERHEAD + 6 * 7 + limits.SHARD_SUFFIX) * 10 * 4 // 3
    # a single file: the floor and its one entry
    assert limits.signature_limit_for(big_file) == limits.FLOOR + one(7, 10 << 20)


def test_deeply_nested_signature_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nesting within the size bound must not reach Python's recursion limit as a traceback."""
    import base64
    import json

    model = tmp_path / "m"
    model.mkdir()
    (model / "a.bin").write_bytes(b"a")
    _, public = write_key_pair(tmp_path, "p256")
    sig = tmp_path / "deep.sig"
    sig.write_text("[" * 200_000 + "]" * 200_000)
    r = run(capsys, "verify", model, "--signature", sig, "--key", public)
    assert r.code == 2 and "nested too deeply" in r.err and "Traceback" not in r.err
    payload = base64.b64encode(b"[" * 200_000 + b"]" * 200_000).decode()
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "x"}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": payload,
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": base64.b64encode(b"x").decode(), "keyid": ""}],
        },
    }
    sig.write_text(json.dumps(bundle))
    r = run(capsys, "verify", model, "--signature", sig, "--key", public)
    assert r.code == 2 and "nested too deeply" in r.err and "Traceback" not in r.err


def test_the_tree_bound_counts_each_entry_by_its_name(tmp_path: Path) -> None:
    """The bound without sizes (a directory's files counted at once) equals the sum of
    entry_bytes over every file and symlink, names as bytes on disk (non-ASCII and
    undecodable names too), directories not counted."""
    import os
    import random

    from mlverify._internal.manifest.limits import FLOOR, _tree_limit, entry_bytes

    rnd = random.Random(3)
    root = tmp_path / "m"
    root.mkdir()
    want = FLOOR
    for i in range(200):
        parts = [rnd.choice(["a", "bé", "c\udcff"]) for _ in range(rnd.randrange(0, 3))]
        d = root.joinpath(*parts)
        d.mkdir(parents=True, exist_ok=True)
        name = rnd.choice(["x", "é" * 5, "\udcfe\udcff", "y" * 50]) + str(i)
        (d / name).write_bytes(b"z" * rnd.randrange(0, 100))
        rel = "/".join([*parts, name])
        want += entry_bytes(len(os.fsencode(rel)), 0)
        if i % 40 == 0:
            os.symlink("x", d / f"l{i}")
            want += entry_bytes(len(os.fsencode("/".join([*parts, f"l{i}"]))), 0)
    assert _tree_limit(root, with_sizes=False) == want
