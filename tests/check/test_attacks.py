"""Issue 12: the ways a review, working as an attacker, got `check` to say yes.

Each test reproduces one attack and asserts it is refused now.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.core.helpers import evil_pickle, run

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
