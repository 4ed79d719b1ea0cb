"""Real check results for the report tests: made by mlverify itself, once per module."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlverify._internal.cli import main
from tests.core.helpers import evil_pickle, safetensors, write_key_pair

REPO = Path(__file__).resolve().parents[2]


def mlverify(*args: object) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def check_json(*args: object, out: Path) -> dict[str, Any]:
    code = mlverify("check", "--format", "json", "--list-files", "--output", out, *args)
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["exit_code"] == code
    return doc


@pytest.fixture(scope="module")
def checks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``signed``: signed, with SLSA provenance naming a dataset and a base model, allowed
    by a policy that requires both; ``evil``: a pickle calling os.system (denied);
    ``fixtures``: the repository's fixtures (one allowed with a warning, one tampered)."""
    tmp = tmp_path_factory.mktemp("checks")
    model = tmp / "model"
    model.mkdir()
    (model / "config.json").write_text('{"labels": 2}\n')
    safetensors(model / "weights.safetensors")
    data = tmp / "corpus"
    data.mkdir()
    (data / "train.txt").write_text("one\ntwo\n")
    keys = tmp / "keys"
    keys.mkdir()
    private, public = write_key_pair(keys, "p256")
    assert mlverify("sign", model, "--key", private) == 0
    assert (
        mlverify(
            "attest",
            "provenance",
            model,
            "--key",
            private,
            "--builder-id",
            "https://ci.example/train",
            "--source-repo",
            "https://git.example/acme/m",
            "--source-ref",
            "refs/heads/main",
            "--source-commit",
            "a" * 40,
            "--dataset",
            data,
            "--base-model",
            f"https://hub.example/base@sha256:{'b' * 64}",
        )
        == 0
    )
    from mlverify._internal.attest.provenance import artifact_digest

    policy = tmp / "signed.yaml"
    policy.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: signed\nspec:\n"
        f"  signatures:\n    required: true\n    trusted:\n      - key: {public}\n"
        "  attestations:\n    provenance:\n      required: true\n"
        "      builder_ids: ['https://ci.example/train']\n"
        f"      datasets:\n        - name: corpus\n          sha256: '{artifact_digest(data)}'\n"
    )
    evil_dir = tmp / "evil"
    evil_dir.mkdir()
    evil = evil_pickle(evil_dir / "model.pkl")
    warn = tmp / "warn.yaml"
    warn.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: audit\nspec:\n  mode: warn\n"
    )
    fixtures = tmp / "fixtures"
    shutil.copytree(REPO / "fixtures" / "models", fixtures)
    results = tmp / "results"
    results.mkdir()
    return {
        "tmp": tmp,
        "results": results,
        "policy": policy,
        "signed": check_json(model, "--policy", policy, out=results / "signed.json"),
        "evil": check_json(evil, out=results / "evil.json"),
        "warned": check_json(evil, "--policy", warn, out=results / "warned.json"),
        "fixtures": check_json(
            fixtures / "tiny-classifier", fixtures / "tampered-classifier", out=results / "fix.json"
        ),
    }
