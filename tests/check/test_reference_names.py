"""Policies match the path that is read (red-team r4, a5): ``mirror/../uploads/evil`` is
``uploads/evil``, judged by the uploads policy, not by one written for ``mirror/*``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.check.test_policy_allowlists import CALL
from tests.core.helpers import run


def test_dot_dot_in_a_path_never_selects_another_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = tmp_path / "srv"
    (srv / "mirror").mkdir(parents=True)
    evil = srv / "uploads" / "evil"
    evil.mkdir(parents=True)
    (evil / "model.pkl").write_bytes(CALL)
    pols = tmp_path / "pol"
    pols.mkdir()
    (pols / "mirror.yaml").write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata: {name: mirror}\nspec:\n"
        "  mode: warn\n  match: {paths: ['*/mirror/*']}\n"
    )
    (pols / "uploads.yaml").write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata: {name: uploads}\nspec:\n"
        "  match: {paths: ['*/uploads/*']}\n  scan: {max_severity: low}\n"
    )
    for ref in (evil, f"{srv}/mirror/../uploads/evil", f"{srv}/mirror/./../uploads//evil/"):
        r = run(capsys, "check", ref, "--policy", pols, "--format", "json")
        assert r.code == 1, (ref, r.out)
        result = json.loads(r.out)["results"][0]
        assert [d["policy"] for d in result["decisions"]] == ["uploads"]
        assert result["evidence"]["artifact"]["ref"] == str(evil)
