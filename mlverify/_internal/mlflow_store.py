"""An MLflow model-registry store that refuses model versions failing the policy.

MLflow webhooks only notify; a blocking gate is a registry-store plugin (entry
point group ``mlflow.model_registry_store``, scheme ``mlverify``): the SQLAlchemy
store, whose ``create_model_version`` first checks the artifacts at ``source`` and
raises ``MlflowException(INVALID_PARAMETER_VALUE)`` when the policy denies them.

    pip install 'mlverify[mlflow]'
    MLVERIFY_POLICY=policies/ mlflow server \\
        --backend-store-uri sqlite:////srv/mlflow/db.sqlite \\
        --registry-store-uri mlverify:////srv/mlflow/db.sqlite

``mlverify://<db path>`` is a SQLite database (``mlverify:///rel.db``,
``mlverify:////abs.db``); ``MLVERIFY_MLFLOW_DB_URI`` gives any SQLAlchemy URI
instead. Local sources (paths, ``file://``) must lie under one of
``MLVERIFY_MLFLOW_ROOTS`` (``os.pathsep``-separated) when it is set; other sources
are downloaded with ``mlflow.artifacts.download_artifacts`` into a private
directory first. MLflow is imported only here, never by the rest of mlverify.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from mlverify._internal.errors import MlverifyError

SCHEME = "mlverify"


def db_uri(store_uri: str) -> str:
    """The SQLAlchemy URI behind ``mlverify://...`` (or MLVERIFY_MLFLOW_DB_URI)."""
    if os.environ.get("MLVERIFY_MLFLOW_DB_URI"):
        return os.environ["MLVERIFY_MLFLOW_DB_URI"]
    parsed = urllib.parse.urlsplit(store_uri)
    if parsed.scheme != SCHEME or not parsed.path:
        raise ValueError(f"{store_uri}: expected mlverify:///PATH/TO/DB.sqlite")
    return f"sqlite://{parsed.netloc}{parsed.path}"


def local_source(source: str) -> Path | None:
    """The local path a ``source`` names, or None when it must be downloaded."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" and source:
        return Path(source)
    return None


def decide(source: str, tracking_uri: str | None = None) -> tuple[bool, str]:
    """(allowed, one-line reasons) for the model version artifacts at ``source``."""
    from mlverify._internal.api import check
    from mlverify._internal.policy.model import load_policies
    from mlverify._internal.sources.local import require_under

    policies = load_policies([os.environ.get("MLVERIFY_POLICY") or "builtin:default"])
    tmp: str | None = None
    try:
        path = local_source(source)
        if path is not None:
            roots = [Path(r) for r in os.environ.get("MLVERIFY_MLFLOW_ROOTS", "").split(os.pathsep)]
            roots = [r for r in roots if str(r) not in ("", ".")]
            if roots:
                require_under(path, roots)
        else:
            artifacts = importlib.import_module("mlflow.artifacts")
            tmp = tempfile.mkdtemp(prefix="mlverify-mlflow-")
            path = Path(
                artifacts.download_artifacts(
                    artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri
                )
            )
        # policies match the artifact URI, not the temporary download
        result = check(
            path,
            policy=policies,
            environment="mlflow-registry",
            name=None if tmp is None else source,
        )
    except MlverifyError as e:
        return False, str(e)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if result.outcome:  # could not be checked, or not fetched: never allowed
        return False, result.message
    reasons = [
        r.message + (f" ({r.remedy})" if r.remedy else "")
        for d in result.decisions
        for r in d.reasons
        if r.level == "deny" and not d.allowed
    ]
    return result.allowed, "; ".join(reasons)


def registry_store(store_uri: str, tracking_uri: str | None = None) -> Any:
    """Entry point ``mlflow.model_registry_store: mlverify``: the gated store."""
    sql_store: Any = importlib.import_module(
        "mlflow.store.model_registry.sqlalchemy_store"
    ).SqlAlchemyStore
    errors = importlib.import_module("mlflow.exceptions")
    codes = importlib.import_module("mlflow.protos.databricks_pb2")

    class GatedSqlAlchemyStore(sql_store):  # type: ignore[misc]
        def create_model_version(self, name: str, source: str, *args: Any, **kwargs: Any) -> Any:
            allowed, why = decide(source, tracking_uri)
            if not allowed:
                raise errors.MlflowException(
                    f"mlverify: model version of {name!r} refused: {source}: {why}",
                    error_code=codes.INVALID_PARAMETER_VALUE,
                )
            return super().create_model_version(name, source, *args, **kwargs)

    return GatedSqlAlchemyStore(db_uri(store_uri))
