"""Issue 12: the ways a review, working as an attacker, got `check` to say yes.

Each test reproduces one attack and asserts it is refused now.
"""

from __future__ import annotations

import mmap
import os
import textwrap
from pathlib import Path

import pytest

from tests.core.helpers import Result, evil_pickle, run, write_key_pair

SYSTEM_PICKLE = b"cos\nsystem\n(S'true'\ntR."


def policy(tmp: Path, body: str, name: str = "p.yaml") -> Path:
    p = tmp / name
    p.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: test\n"
        + textwrap.dedent(body)
    )
    return p


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


# ------------------------------------------------------------------ 1: no decision cache


def test_exemption_for_one_path_does_not_admit_the_same_bytes_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = tmp_path / "a"
    (a / "tests" / "fixtures").mkdir(parents=True)
    (a / "tests" / "fixtures" / "s.pkl").write_bytes(SYSTEM_PICKLE)
    b = tmp_path / "b"
    b.mkdir()
    (b / "pytorch_model.bin").write_bytes(SYSTEM_PICKLE)
    p = policy(
        tmp_path,
        """
        spec:
          scan: {max_severity: low}
          exemptions:
            - {rule: MLV101, file: "tests/fixtures/*", owner: qa, reason: fixture,
               expires: 2099-01-01}
        """,
    )
    first = run(capsys, "check", "--cache", "--policy", p, a)
    assert first.code == 0, first.out + first.err
    second = run(capsys, "check", "--cache", "--policy", p, b)
    assert second.code == 1, second.out
    assert "DENIED" in second.out and "cached" not in second.out


def test_a_dev_verdict_does_not_admit_the_prod_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for env in ("dev", "prod"):
        (tmp_path / env).mkdir()
        evil_pickle(tmp_path / env / "model.bin")
    pols = tmp_path / "pols"
    pols.mkdir()
    policy(pols, 'spec:\n  mode: warn\n  match: {paths: ["*/dev/*", "*/dev"]}\n', "dev.yaml")
    policy(pols, 'spec:\n  match: {paths: ["*/prod/*", "*/prod"]}\n', "prod.yaml")
    assert run(capsys, "check", "--cache", "--policy", pols, tmp_path / "dev").code == 0
    prod = run(capsys, "check", "--cache", "--policy", pols, tmp_path / "prod")
    assert prod.code == 1 and "DENIED" in prod.out


# ------------------------------------------------------------------ 2: hash every byte


def _rewrite_through_mapping(path: Path, check_between: object, new: bytes) -> None:
    """Change bytes through a shared mapping whose page is already dirty: the kernel
    updates neither mtime nor ctime, and the size stays the same."""
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 0)
        m[0:1] = m[0:1]  # dirty the page once (this write may touch the timestamps)
        assert callable(check_between)
        check_between()
        before = os.stat(path)
        m[:] = new  # now the same page changes without a fault
        m.flush()
        m.close()
    finally:
        os.close(fd)
    after = os.stat(path)
    if (before.st_mtime_ns, before.st_ctime_ns) != (after.st_mtime_ns, after.st_ctime_ns):
        pytest.skip("this kernel updated the timestamps of a dirty shared mapping")


def test_bytes_changed_with_timestamps_kept_are_seen_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    target = model / "weights.bin"
    target.write_bytes(b"\x00" * 4096)
    private, public = write_key_pair(tmp_path, "p256")
    assert run(capsys, "sign", model, "--key", private).code == 0
    p = policy(
        tmp_path,
        f"spec:\n  signatures:\n    required: true\n    trusted: [{{key: {public}}}]\n",
    )
    results: list[Result] = []

    def tamper() -> None:
        results.append(run(capsys, "check", "--policy", p, model))

    _rewrite_through_mapping(target, tamper, b"\x01" * 4096)
    assert results[0].code == 0, results[0].out + results[0].err
    again = run(capsys, "check", "--policy", p, model)
    assert again.code == 1 and "differ" in again.out, again.out
    assert run(capsys, "verify", model, "--key", public).code == 1
