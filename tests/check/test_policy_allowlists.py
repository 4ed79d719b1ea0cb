"""Each policy's allowlist judges only the artifacts that policy governs (red-team r4, a3).

One scan used the union of every loaded policy's ``allow_globals``: with team-a's policy
(``mycorp.*`` allowed) loaded beside team-b's, a pickle calling ``mycorp.tools.run`` in
team-b's model had no findings and team-b's policy allowed it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.helpers import run

# protocol 2: mycorp.tools.run() (a name nobody's built-in list allows), written as bytes
CALL = b"\x80\x02cmycorp.tools\nrun\n)R."


def _policy(path: Path, name: str, match: str, allow: list[str]) -> Path:
    path.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\n"
        f"metadata: {{name: {name}}}\nspec:\n  match: {{paths: [{json.dumps(match)}]}}\n"
        f"  scan: {{max_severity: low, allow_globals: {json.dumps(allow)}}}\n"
    )
    return path


def _model(root: Path, team: str) -> Path:
    model = root / team / "m"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"layers": 2}\n')
    (model / "model.pkl").write_bytes(CALL)
    for i in range(40):  # enough files for worker processes, one with findings
        (model / f"notes-{i}.txt").write_text(f"note {i}\n")
    return model


def _decisions(out: str) -> dict[str, tuple[bool, int]]:
    r = json.loads(out)["results"][0]
    return {d["policy"]: (d["allowed"], len(r["evidence"]["findings"])) for d in r["decisions"]}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    pols = tmp_path / "pol"
    pols.mkdir()
    _policy(pols / "a.yaml", "team-a", "*team-a/*", ["mycorp.*"])
    _policy(pols / "b.yaml", "team-b", "*team-b/*", [])
    return pols, _model(tmp_path, "team-a"), _model(tmp_path, "team-b")


def test_another_policys_allowlist_never_clears_a_finding(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pols, team_a, team_b = setup
    alone = run(capsys, "check", team_b, "--policy", pols / "b.yaml", "--format", "json")
    assert alone.code == 1
    both = run(capsys, "check", team_b, "--policy", pols, "--format", "json")
    assert both.code == 1, both.out
    assert _decisions(both.out) == {"team-b": (False, 1)}
    # the allowlist still serves the policy that declares it, with the other one loaded
    mine = run(capsys, "check", team_a, "--policy", pols, "--format", "json")
    assert mine.code == 0, mine.out
    assert _decisions(mine.out) == {"team-a": (True, 0)}


def test_two_governing_policies_each_judge_with_their_own_allowlist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pols = tmp_path / "pol"
    pols.mkdir()
    _policy(pols / "a.yaml", "lenient", "*", ["mycorp.tools.run"])
    _policy(pols / "b.yaml", "strict", "*", ["other.*"])
    model = _model(tmp_path, "shared")
    r = run(capsys, "check", model, "--policy", pols, "--format", "json")
    assert r.code == 1
    doc = json.loads(r.out)["results"][0]
    by = {d["policy"]: d for d in doc["decisions"]}
    assert by["lenient"]["allowed"] is True and by["strict"]["allowed"] is False
    denies = [x["message"] for x in by["strict"]["reasons"] if x["level"] == "deny"]
    assert any("mycorp.tools" in m for m in denies)
