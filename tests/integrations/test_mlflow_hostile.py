"""The MLflow source against a hostile tracking server (a loopback HTTP server speaking
MLflow's REST API, made here): every way its answers could write outside the private
copy, bring unbounded data, swap bytes or smuggle credentials is refused, and a refusal
is never an allow. The real server is tested in test_mlflow.py."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlverify._internal.errors import InputError, MlverifyError, UsageError, VerificationError
from mlverify._internal.sources import SourceSettings, resolve, source_for
from mlverify._internal.sources.settings import AdmissionRules, MlflowSettings
from tests.core.helpers import run
from tests.integrations.conftest import EVIL_PICKLE

RUN = "0123456789abcdef0123456789abcdef"


@dataclass
class FakeMlflow:
    """Files per run path; hooks change what a listing or a download answers."""

    files: dict[str, bytes] = field(default_factory=dict)
    listing_hook: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]] | None = None
    download_hook: Callable[[str, bytes], bytes] | None = None
    redirect_downloads: bool = False
    short_body: bool = False  #: declare more bytes than are sent, then close
    seen_auth: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    base: str = ""

    def listing(self, directory: str) -> list[dict[str, Any]]:
        prefix = f"{directory}/" if directory else ""
        names: dict[str, dict[str, Any]] = {}
        for path, data in self.files.items():
            if not path.startswith(prefix):
                continue
            head, _, rest = path[len(prefix) :].partition("/")
            full = prefix + head
            names[head] = (
                {"path": full, "is_dir": True}
                if rest
                else {"path": full, "is_dir": False, "file_size": str(len(data))}
            )
        out = [names[k] for k in sorted(names)]
        return self.listing_hook(directory, out) if self.listing_hook else out


def _handler(fake: FakeMlflow) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, code: int, doc: object) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            fake.requests.append(self.path)
            fake.seen_auth.append(self.headers.get("Authorization", ""))
            if url.path == "/api/2.0/mlflow/model-versions/get":
                if q.get("version") != "1":
                    self._json(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "x"})
                    return
                mv = {"name": q["name"], "version": "1", "source": f"runs:/{RUN}/model"}
                self._json(200, {"model_version": {**mv, "run_id": RUN}})
            elif url.path == "/api/2.0/mlflow/artifacts/list":
                self._json(200, {"files": fake.listing(q.get("path", ""))})
            elif url.path == "/get-artifact":
                path = q["path"]
                if fake.redirect_downloads:
                    self.send_response(302)
                    self.send_header("Location", f"{fake.base}/stolen?{path}")
                    self.end_headers()
                    return
                if path not in fake.files:
                    self._json(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
                    return
                data = fake.files[path]
                if fake.download_hook:
                    data = fake.download_hook(path, data)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data) + 10 * fake.short_body))
                self.end_headers()
                self.wfile.write(data)
                if fake.short_body:
                    self.close_connection = True
            else:
                self._json(404, {"error_code": "ENDPOINT_NOT_FOUND"})

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeMlflow]:
    f = FakeMlflow(
        files={
            "model/config.json": b'{"arch": "linear"}\n',
            "model/weights/model.pkl": EVIL_PICKLE,
            "clean/config.json": b'{"arch": "linear"}\n',
        }
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(f))
    f.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f
    server.shutdown()
    server.server_close()


def _settings(fake: FakeMlflow, **kw: Any) -> SourceSettings:
    return SourceSettings(mlflow=MlflowSettings(tracking_uri=fake.base, **kw))


def _fetch(ref: str, settings: SourceSettings) -> list[str]:
    with resolve(ref, settings) as r:
        return sorted(p.relative_to(r.path).as_posix() for p in r.path.rglob("*") if p.is_file())


def test_a_model_version_is_fetched_whole(fake: FakeMlflow, tmp_path: Path) -> None:
    settings = _settings(fake, token="s3cret-token")
    assert _fetch("models:/clf/1", settings) == ["config.json", "weights/model.pkl"]
    assert set(fake.seen_auth) == {"Bearer s3cret-token"}  # to the tracking host only
    with resolve(f"runs:/{RUN}/model/weights/model.pkl", settings) as r:
        assert r.path.is_file() and r.path.read_bytes() == EVIL_PICKLE
        assert r.kind == "mlflow" and r.name == f"runs:/{RUN}/model/weights/model.pkl"


def test_check_denies_what_it_fetched(
    fake: FakeMlflow, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fake.base)
    r = run(capsys, "check", "--no-cache", "models:/clf/1", f"runs:/{RUN}/clean")
    assert r.code == 1 and "DENIED: models:/clf/1" in r.out and "os.system" in r.out
    assert f"ALLOWED: runs:/{RUN}/clean" in r.out
    r = run(capsys, "check", "--no-cache", "models:/clf/2")
    assert r.code == 2 and "HTTP 404 (RESOURCE_DOES_NOT_EXIST)" in r.err


@pytest.mark.parametrize(
    "entry",
    [
        {"path": "model/../../escape", "is_dir": False, "file_size": "1"},
        {"path": "/etc/passwd", "is_dir": False, "file_size": "1"},
        {"path": "other/config.json", "is_dir": False, "file_size": "1"},
        {"path": "model/a\\b", "is_dir": False, "file_size": "1"},
        {"path": "model/..", "is_dir": True},
        {"path": "model/x\x1b[2K", "is_dir": False, "file_size": "1"},
    ],
)
def test_listing_entries_outside_the_directory_are_refused(
    fake: FakeMlflow, tmp_path: Path, entry: dict[str, Any]
) -> None:
    fake.listing_hook = lambda d, out: [*out, entry] if d == "model" else out
    with pytest.raises(VerificationError, match="not an entry of that directory"):
        _fetch("models:/clf/1", _settings(fake))
    assert not (tmp_path.parent / "escape").exists()


def test_duplicate_and_conflicting_entries_are_refused(fake: FakeMlflow) -> None:
    fake.listing_hook = lambda d, out: out + out if d == "model" else out
    with pytest.raises(VerificationError, match="twice"):
        _fetch("models:/clf/1", _settings(fake))


@pytest.mark.parametrize("change", [b"x", b""])
def test_a_file_not_the_size_listed_is_refused(fake: FakeMlflow, change: bytes) -> None:
    """Bytes appended (or cut) between listing and download: never judged."""
    fake.download_hook = lambda path, data: data + change if change else data[:-1]
    with pytest.raises(VerificationError, match=r"than the \d+ bytes its listing said"):
        _fetch("models:/clf/1", _settings(fake))


def test_a_transfer_that_breaks_off_is_an_error(
    fake: FakeMlflow, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.short_body = True
    fake.listing_hook = lambda d, out: [
        {k: v for k, v in e.items() if k != "file_size"} for e in out
    ]
    with pytest.raises(InputError, match="broke off"):
        _fetch("models:/clf/1", _settings(fake))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fake.base)
    r = run(capsys, "check", "--no-cache", "models:/clf/1")
    assert r.code == 2 and "broke off" in r.err and "internal error" not in r.err


def test_bounds(fake: FakeMlflow) -> None:
    with pytest.raises(VerificationError, match=r"more than (1 artifact files|2 artifact entries)"):
        _fetch("models:/clf/1", _settings(fake, max_files=1))
    with pytest.raises(VerificationError, match="more than 20 bytes"):
        _fetch("models:/clf/1", _settings(fake, max_bytes=20))
    # a size the listing does not give is bounded by the budget too
    fake.listing_hook = lambda d, out: [
        {k: v for k, v in e.items() if k != "file_size"} for e in out
    ]
    with pytest.raises(VerificationError, match="more than 25 bytes"):
        _fetch("models:/clf/1", _settings(fake, max_bytes=25))


def test_endless_listings_are_bounded(fake: FakeMlflow) -> None:
    """Entries are counted while a listing is read, not after it is held in memory."""
    fake.listing_hook = lambda d, out: [
        {"path": f"{d}/f{i}", "is_dir": False, "file_size": "1"} for i in range(5000)
    ]
    with pytest.raises(VerificationError, match="more than 200 artifact entries"):
        _fetch(f"runs:/{RUN}/model", _settings(fake, max_files=100))
    with pytest.raises(InputError, match="took longer than 0 s"):
        _fetch(f"runs:/{RUN}/model", _settings(fake, deadline=0))


def test_endless_nesting_is_bounded(fake: FakeMlflow) -> None:
    fake.listing_hook = lambda d, out: [{"path": f"{d}/d", "is_dir": True}]
    with pytest.raises(VerificationError, match="deeper than 64"):
        _fetch(f"runs:/{RUN}/model", _settings(fake))


def test_redirects_are_refused(fake: FakeMlflow) -> None:
    fake.redirect_downloads = True
    with pytest.raises(InputError, match="redirected"):
        _fetch("models:/clf/1", _settings(fake, token="t0ken"))
    assert not any(p.startswith("/stolen") for p in fake.requests)


def test_settings_and_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bare = SourceSettings()
    with pytest.raises(UsageError, match="set MLFLOW_TRACKING_URI"):
        _fetch("models:/clf/1", bare)
    for uri in ("./mlruns", "sqlite:///x.db", "databricks", "ftp://h/x"):
        s = SourceSettings(mlflow=MlflowSettings(tracking_uri=uri))
        with pytest.raises(UsageError, match="expected http"):
            _fetch("models:/clf/1", s)
    s = SourceSettings(mlflow=MlflowSettings(tracking_uri="http://u:p@127.0.0.1:1"))
    with pytest.raises(UsageError, match="credentials in the URI"):
        _fetch("models:/clf/1", s)
    for bad, why in [
        ("models:/clf/Production", "stages"),
        ("models:/clf/latest", "stages"),
        ("models:/clf", "expected models:/NAME/VERSION"),
        (f"runs:/{RUN}/../other", "'.' or '..'"),
        ("runs:/", "expected"),
    ]:
        with pytest.raises(UsageError, match=why):
            source_for(bad, bare)
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "MLFLOW_TRACKING_TOKEN": "t"}
    settings = SourceSettings.from_environment(env)
    assert settings.mlflow == replace(MlflowSettings(), tracking_uri=env["MLFLOW_TRACKING_URI"],
                                      token="t")  # fmt: skip
    # nothing MLflow names is pinned: the service's pinned-only rule refuses it
    source = source_for("models:/clf/1", settings)
    assert not source.pinned
    with pytest.raises(UsageError, match="pinned"):
        source.admit(AdmissionRules(pinned_only=frozenset({"mlflow"})))
    with pytest.raises(MlverifyError, match="not accepted here"):
        source.admit(AdmissionRules(refused_kinds=frozenset({"mlflow"})))
