"""MLflow against a real `mlflow server` (heavy tier): the registry-store gate, and the
``models:/`` / ``runs:/`` source (mlverify talks to the server's REST API; only the server
needs MLflow).

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
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.core.helpers import run
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


def _start_server(py: str, tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[Any, str]:
    port = free_port()
    log = tmp_path / "mlflow.log"
    proc = subprocess.Popen(
        [py, "-m", "mlflow", "server", *args,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), **env},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/health", timeout=120)
    except OSError:
        _stop(proc)
        pytest.fail(f"mlflow server did not start: {log.read_text()[-3000:]}")
    return proc, base


def _put(base: str, path: str, data: bytes) -> None:
    req = urllib.request.Request(base + path, data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200


def _upload(base: str, root: str, model: Path) -> None:
    """Files of ``model`` into the proxied artifact store under ``root`` (a
    ``mlflow-artifacts:/...`` URI), as ``mlflow.log_artifacts`` would."""
    prefix = urllib.parse.urlsplit(root).path.lstrip("/")
    for f in sorted(model.rglob("*")):
        if f.is_file():
            rel = f.relative_to(model).as_posix()
            _put(base, f"/api/2.0/mlflow-artifacts/artifacts/{prefix}/{rel}", f.read_bytes())


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
        # the source reads a file:// store through the same server (not proxied)
        env = {"PATH": os.environ["PATH"], "MLFLOW_TRACKING_URI": base,
               "XDG_CACHE_HOME": str(tmp_path / "cache")}  # fmt: skip
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        done = subprocess.run(
            [sys.executable, "-m", "mlverify", "check", "--no-cache", "models:/clf/1",
             f"runs:/{info['run_id']}/evil"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert "ALLOWED: models:/clf/1" in done.stdout and "os.system" in done.stdout
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


@pytest.mark.mlflow
def test_source_through_a_tracking_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check` and `scan` of models:/NAME/VERSION, models:/NAME@ALIAS, models:/m-ID and
    runs:/ID/PATH against a real server with proxied artifacts (the default store of
    `mlflow server`): each of the three ways the server serves artifacts."""
    py = _python()
    proc, base = _start_server(
        py,
        tmp_path,
        ["--backend-store-uri", f"sqlite:///{tmp_path / 'db.sqlite'}",
         "--artifacts-destination", str(tmp_path / "mlartifacts")],
        {},
    )  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_URI", base)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        models = tmp_path / "models"
        clean, evil = make_clean_model(models), make_evil_model(models)
        code, run_doc = _post(base, "/api/2.0/mlflow/runs/create", {"experiment_id": "0"})
        assert code == 200, run_doc
        info = run_doc["run"]["info"]
        run_id, root = info["run_id"], info["artifact_uri"]
        assert root.startswith("mlflow-artifacts:/"), root
        _upload(base, f"{root}/clean", clean)
        _upload(base, f"{root}/evil", evil)
        # an MLflow 3 logged model, its files uploaded where the server keeps them
        code, lm = _post(
            base, "/api/2.0/mlflow/logged-models", {"experiment_id": "0", "name": "lm"}
        )
        assert code == 200, lm
        model_id = lm["model"]["info"]["model_id"]
        _upload(base, lm["model"]["info"]["artifact_uri"], clean)
        assert _post(base, "/api/2.0/mlflow/registered-models/create", {"name": "clf"})[0] == 200
        create = "/api/2.0/mlflow/model-versions/create"
        for body in (
            {"source": f"{root}/clean", "run_id": run_id},
            {"source": f"runs:/{run_id}/evil", "run_id": run_id},
            {"source": f"models:/{model_id}", "model_id": model_id},
        ):
            code, doc = _post(base, create, {"name": "clf", **body})
            assert code == 200, doc
        alias = "/api/2.0/mlflow/registered-models/alias"
        req = urllib.request.Request(
            base + alias,
            data=json.dumps({"name": "clf", "alias": "champion", "version": "2"}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=30).close()

        out = tmp_path / "r.json"
        runs = [f"runs:/{run_id}/evil", f"runs:/{run_id}/clean"]
        refs = ["models:/clf/1", "models:/clf/3", f"models:/{model_id}", "models:/clf@champion"]
        refs += runs
        r = run(capsys, "check", "--no-cache", "--format", "json", "--output", out, *refs)
        assert r.code == 1, r.err
        results = {x["artifact"]: x for x in json.loads(out.read_text())["results"]}
        allowed = {k for k, v in results.items() if v["allowed"]}
        assert allowed == {"models:/clf/1", "models:/clf/3", f"models:/{model_id}",
                           f"runs:/{run_id}/clean"}, r.err  # fmt: skip
        champion = results["models:/clf@champion"]
        assert champion["status"] == "denied"
        reasons = [x["message"] for d in champion["decisions"] for x in d["reasons"]]
        assert any("os.system" in m for m in reasons), reasons
        ref = champion["evidence"]["reference"]
        assert ref["version"] == "2" and ref["run_id"] == run_id and ref["kind"] == "mlflow"
        assert ref["source"] == f"runs:/{run_id}/evil" and ref["files"] == 2
        v1 = results["models:/clf/1"]["evidence"]
        assert v1["reference"]["files"] == 4 and v1["artifact"]["ref"] == "models:/clf/1"
        # the same bytes whichever way they were served
        digests = {results[k]["evidence"]["artifact"]["root_digest"] for k in allowed}
        assert len(digests) == 1, digests

        # a single file, by run path; scan names files after the reference
        r = run(capsys, "scan", f"runs:/{run_id}/evil/model.pkl")
        assert r.code == 1 and f"runs:/{run_id}/evil/model.pkl: findings" in r.out, r.out
        r = run(capsys, "scan", "--format", "json", f"runs:/{run_id}/evil")
        paths = {f["path"] for f in json.loads(r.out)["files"]}
        assert paths == {f"runs:/{run_id}/evil/model.pkl", f"runs:/{run_id}/evil/config.json"}
        # what does not exist is an error (exit 2) naming MLflow's error code, not a deny
        r = run(capsys, "check", "--no-cache", "models:/clf/9")
        assert r.code == 2 and "RESOURCE_DOES_NOT_EXIST" in r.err, r.err
        r = run(capsys, "check", "--no-cache", f"runs:/{run_id}/nothing-here")
        assert r.code == 2, r.err
    finally:
        _stop(proc)
