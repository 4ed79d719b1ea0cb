"""Issue 12 item 5: policies see the real reference of ``hf://`` and ``oci://``, never the
temporary copy the bytes were read from."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.core.helpers import run
from tests.integrations.conftest import EVIL_PICKLE, Registry
from tests.integrations.test_hf import COMMIT2, add_snapshot


def _policies(tmp: Path, prod_glob: str) -> Path:
    d = tmp / "policies"
    d.mkdir()
    head = "apiVersion: mlverify.dev/v1\nkind: Policy\n"
    (d / "catch-all.yaml").write_text(
        head + "metadata: {name: catch-all}\nspec:\n  mode: warn\n  match: {paths: ['*']}\n"
    )
    (d / "prod.yaml").write_text(
        head
        + textwrap.dedent(f"""\
            metadata: {{name: prod}}
            spec:
              match: {{paths: ['{prod_glob}']}}
              scan: {{max_severity: low}}
            """)
    )
    return d


def test_hf_reference_is_what_policies_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    add_snapshot(cache, "prod/evil", COMMIT2, {"config.json": b"{}", "model.pkl": EVIL_PICKLE})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    pols = _policies(tmp_path, "hf://prod/*")
    r = run(capsys, "check", "--policy", pols, "--format", "json", f"hf://prod/evil@{COMMIT2}")
    assert r.code == 1, r.out
    doc = json.loads(r.out)["results"][0]
    assert {d["policy"] for d in doc["decisions"]} == {"catch-all", "prod"}
    assert doc["evidence"]["artifact"]["ref"] == f"hf://prod/evil@{COMMIT2}"
    assert "mlverify-ref-" not in r.out


def test_oci_reference_is_what_policies_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], registry: Registry
) -> None:
    model = tmp_path / "evil"
    model.mkdir()
    (model / "model.pkl").write_bytes(EVIL_PICKLE)
    ref = f"oci://{registry.host}/prod/evil:v1"
    assert run(capsys, "oci", "push", model, ref).code == 0
    pols = _policies(tmp_path, f"oci://{registry.host}/prod/*")
    r = run(capsys, "check", "--policy", pols, "--format", "json", ref)
    assert r.code == 1, r.out
    doc = json.loads(r.out)["results"][0]
    assert {d["policy"] for d in doc["decisions"]} == {"catch-all", "prod"}
    assert doc["evidence"]["artifact"]["ref"].startswith(ref + "@sha256:")
