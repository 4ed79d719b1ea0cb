"""`builtin:strict` from an installed package: its trust is the user's, from the config dir."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import mlverify
from mlverify._internal.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_strict_reads_its_key_from_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "cfg"
    monkeypatch.setenv("MLVERIFY_CONFIG_DIR", str(cfg))
    model = tmp_path / "model"
    shutil.copytree(ROOT / "fixtures" / "models" / "tiny-classifier", model)

    # no key yet: an error result that names where the key belongs, never an allow
    missing = mlverify.check(model, policy="builtin:strict")
    assert missing.status == "error" and str(cfg / "keys" / "release.pub") in missing.message
    assert str(ROOT) not in missing.message  # never a path inside the installed package

    (cfg / "keys").mkdir(parents=True)
    assert _cli("keygen", "--out", str(tmp_path / "release")) == 0
    shutil.copy(tmp_path / "release.pub", cfg / "keys" / "release.pub")
    assert _cli("sign", str(model), "--key", str(tmp_path / "release.key")) == 0
    capsys.readouterr()

    result = mlverify.check(model, policy="builtin:strict")
    codes = {r.code for d in result.decisions for r in d.reasons if r.level == "deny"}
    # signed by the trusted key, so only provenance is missing
    assert result.status == "denied" and codes and not any(c.startswith("signature") for c in codes)
    assert _cli("policy", "lint", "builtin:strict") == 0


def test_lint_takes_builtin_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLVERIFY_CONFIG_DIR", str(tmp_path))
    assert _cli("policy", "lint", "builtin:default") == 0
    assert "ok:" in capsys.readouterr().out
    assert _cli("policy", "lint", "builtin:strict") == 1
    assert "keys/release.pub: public key not found" in capsys.readouterr().out
    assert _cli("policy", "lint", "builtin:../strict") == 2
