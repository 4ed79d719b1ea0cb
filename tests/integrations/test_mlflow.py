"""The MLflow registry-store gate against a real `mlflow server` (heavy tier).

MLflow is about 850 MB, so it lives in its own virtual environment and this test runs
only when ``MLVERIFY_MLFLOW_PYTHON`` names that environment's python (mlflow and
mlverify installed), e.g.::

    python3 -m venv /tmp/mlflow-venv
    /tmp/mlflow-venv/bin/pip install mlflow -e .
    MLVERIFY_MLFLOW_PYTHON=/tmp/mlflow-venv/bin/python pytest -m mlflow tests/integrations
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integrations.conftest import (
    _stop,
    free_port,
    make_clean_model,
    make_evil_model,
    wait_http,
)


def _python() -> str:
    py = os.environ.get("MLVERIFY_MLFLOW_PYTHON", "")
    if not py or not Path(py).is_file():
        pytest.skip("MLflow tier: set MLVERIFY_MLFLOW_PYTHON to a python with mlflow + mlverify")
    r = subprocess.run(
        [py, "-c", "import mlflow, mlverify._internal.mlflow_store"], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"{py} cannot import mlflow and mlverify: {r.stderr.decode()[-300:]}")
    return py


def _post(base: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.mlflow
def test_registry_store_refuses_denied_model_versions(tmp_path: Path) -> None:
    py = _python()
    port = free_port()
    db = tmp_path / "mlflow.sqlite"
    artifacts = tmp_path / "artifacts"
    env = {
        **os.environ,
        "MLVERIFY_POLICY": "builtin:default",
        "MLVERIFY_MLFLOW_ROOTS": str(artifacts),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    log = tmp_path / "mlflow.log"
    proc = subprocess.Popen(
        [
            py, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{db}",
            "--registry-store-uri", f"mlverify:///{db}",
            "--default-artifact-root", artifacts.as_uri(),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(base + "/health", timeout=90)
        except OSError:
            pytest.fail(f"mlflow server did not start: {log.read_text()[-3000:]}")
        code, _ = _post(base, "/api/2.0/mlflow/registered-models/create", {"name": "clf"})
        assert code == 200
        code, run = _post(base, "/api/2.0/mlflow/runs/create", {"experiment_id": "0"})
        assert code == 200
        info = run["run"]["info"]
        run_dir = Path(info["artifact_uri"].removeprefix("file://"))
        run_dir.mkdir(parents=True)
        make_clean_model(run_dir, "clean")  # as log_artifacts would store them
        make_evil_model(run_dir, "evil")
        create = "/api/2.0/mlflow/model-versions/create"
        code, doc = _post(
            base,
            create,
            {"name": "clf", "source": f"{info['artifact_uri']}/clean", "run_id": info["run_id"]},
        )
        assert code == 200 and doc["model_version"]["version"] == "1", doc
        code, doc = _post(
            base,
            create,
            {"name": "clf", "source": f"{info['artifact_uri']}/evil", "run_id": info["run_id"]},
        )
        assert code == 400 and doc["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "mlverify: model version of 'clf' refused" in doc["message"]
        assert "os.system" in doc["message"]
    finally:
        _stop(proc)


def test_gate_decisions_without_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's decision for local sources needs no MLflow: roots, allow, deny."""
    from mlverify._internal.mlflow_store import db_uri, decide

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "artifacts"
    clean, evil = make_clean_model(root), make_evil_model(root)
    monkeypatch.setenv("MLVERIFY_MLFLOW_ROOTS", str(root))
    assert decide(clean.as_uri()) == (True, "")
    allowed, why = decide(str(evil))
    assert not allowed and "os.system" in why
    outside = make_clean_model(tmp_path / "elsewhere")
    allowed, why = decide(outside.as_uri())
    assert not allowed and "not under a configured model root" in why
    assert db_uri("mlverify:////srv/db.sqlite") == "sqlite:////srv/db.sqlite"
    assert db_uri("mlverify:///rel.db") == "sqlite:///rel.db"
