"""MLflow model URIs, resolved through a tracking server's REST API (standard library only):

- ``models:/NAME/VERSION``: a registered model version;
- ``models:/NAME@ALIAS``: the version an alias points at now;
- ``models:/MODEL_ID``: an MLflow 3 logged model (``m-...``);
- ``runs:/RUN_ID[/PATH]``: artifacts of a run (all of them, or one file or directory).

A model version is resolved to where its artifacts are served: its ``source`` under its
run's artifact root (``runs:/``, or a URI below the run's ``artifact_uri``) is read through
the run's artifact endpoints; a logged model (``models:/m-...``) through the logged
model's (MLflow itself accepts no other sources). A source the server does not serve is
refused, naming it. The server reads its own artifact store for us (proxied
``mlflow-artifacts:``, ``file:``, ``s3:``, ...), so every store MLflow supports works.

Trust, with a tracking server that may be hostile: the tracking URI and credentials are
settings (a bearer token or basic auth) sent to that host only; redirects are refused; a
listing entry must be a plain name inside the directory listed (no ``/``, ``..`` or
control characters), so nothing is written outside the private copy; at most
``max_files`` files, ``max_bytes`` bytes and 64 directory levels; every file must be the
size the listing said; errors repeat only MLflow's structured error code. MLflow keeps no
digest of artifacts: nothing here is pinned (a version's or run's files can be rewritten),
so what is checked is what was downloaded, and signatures and the policy decide.
"""

from __future__ import annotations

import base64
import http.client
import json
import posixpath
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlverify._internal.errors import InputError, UsageError, VerificationError
from mlverify._internal.sources.base import Resolved, admit_kind
from mlverify._internal.sources.settings import AdmissionRules, MlflowSettings, SourceSettings

MAX_DEPTH = 64
MAX_PAGES = 1000  #: listing pages per directory
MAX_JSON = 16 << 20  #: bytes of one API answer
_CHUNK = 1 << 20
_LOGGED = "/api/2.0/mlflow/logged-models"

_NAME = r"[^/@\x00-\x1f\x7f]+"
_MODEL_VERSION = re.compile(rf"^models:/(?P<name>{_NAME})/(?P<version>[^/@]+)$")
_MODEL_ALIAS = re.compile(rf"^models:/(?P<name>{_NAME})@(?P<alias>[\w.-]+)$")
_LOGGED_MODEL = re.compile(r"^models:/(?P<id>m-[0-9A-Za-z]{1,64})$")
_RUN = re.compile(r"^runs:/(?P<run>[0-9A-Za-z_-]{1,64})(?:/(?P<path>.*))?$")
_ENTRY = re.compile(r"[^/\\\x00-\x1f\x7f]+")
EXPECTED = (
    "models:/NAME/VERSION, models:/NAME@ALIAS, models:/m-<logged model id> or runs:/RUN_ID[/PATH]"
)


def _relpath(text: str, ref: str) -> str:
    """A path inside the artifacts: relative, no '.', '..' or empty parts ("" the root)."""
    parts = [p for p in text.split("/") if p != ""] if text else []
    if any(p in (".", "..") or not _ENTRY.fullmatch(p) for p in parts) or text.startswith("/"):
        raise UsageError(f"{ref}: the artifact path may not be absolute or contain '.' or '..'")
    return "/".join(parts)


@dataclass(frozen=True)
class MlflowRef:
    text: str
    model: str = ""  #: registered model name
    version: str = ""
    alias: str = ""
    model_id: str = ""  #: logged model
    run_id: str = ""
    path: str = ""  #: inside the run's artifacts


def parse_ref(text: str) -> MlflowRef:
    if m := _RUN.match(text):
        return MlflowRef(text, run_id=m["run"], path=_relpath(m["path"] or "", text))
    if m := _LOGGED_MODEL.match(text):
        return MlflowRef(text, model_id=m["id"])
    if m := _MODEL_ALIAS.match(text):
        return MlflowRef(text, model=m["name"], alias=m["alias"])
    if m := _MODEL_VERSION.match(text):
        if not m["version"].isdigit():
            raise UsageError(
                f"{text}: {m['version']!r} is not a version number (stages such as "
                "'Production' and 'latest' are deprecated and move); name a version "
                "(models:/NAME/3) or an alias (models:/NAME@champion)"
            )
        return MlflowRef(text, model=m["name"], version=str(int(m["version"])))
    raise UsageError(f"{text}: expected {EXPECTED}")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        host = urllib.parse.urlsplit(req.full_url).netloc
        raise InputError(f"{host}: the MLflow tracking server redirected (HTTP {code}); refused")


@dataclass
class _Tree:
    """Where a set of artifacts is served: list and download endpoints."""

    kind: str  #: "run" or "logged-model"
    key: str  #: run id or logged model id
    root: str  #: path below the key's root that is the artifact ("" all)


@dataclass
class TrackingServer:
    """The REST API of one MLflow tracking server."""

    settings: MlflowSettings
    base: str = ""
    host: str = ""
    _opener: Any = None
    deadline: float = 0.0
    fetched: int = field(default=0)

    def __post_init__(self) -> None:
        uri = self.settings.tracking_uri
        parsed = urllib.parse.urlsplit(uri)
        if not uri:
            raise UsageError(
                "no MLflow tracking server is configured; set MLFLOW_TRACKING_URI to "
                "http(s)://HOST:PORT to check models:/ and runs:/ references"
            )
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UsageError(
                f"MLflow tracking URI {uri!r}: expected http(s)://HOST[:PORT][/PREFIX] (a "
                "tracking server; local stores such as ./mlruns or sqlite: are not read)"
            )
        if parsed.username or parsed.password:
            raise UsageError(
                f"MLflow tracking URI for {parsed.hostname}: credentials in the URI are not "
                "used; set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or "
                "MLFLOW_TRACKING_TOKEN"
            )
        self.base = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
        self.host = parsed.netloc
        self._opener = urllib.request.build_opener(_NoRedirects())
        self.deadline = time.monotonic() + self.settings.deadline

    # -- transport ---------------------------------------------------------------------
    def _open(self, path: str, query: dict[str, str]) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(query)}" if query else self.base + path
        req = urllib.request.Request(url, method="GET")
        s = self.settings
        if s.token:
            req.add_unredirected_header("Authorization", f"Bearer {s.token}")
        elif s.username:
            basic = base64.b64encode(f"{s.username}:{s.password}".encode()).decode()
            req.add_unredirected_header("Authorization", f"Basic {basic}")
        try:
            return self._opener.open(req, timeout=s.timeout)
        except InputError:
            raise
        except urllib.error.HTTPError as e:
            detail = _error_code(e.read(4000).decode("utf-8", "replace"))
            raise InputError(
                f"{self.host}: GET {path} gave HTTP {e.code}" + (f" ({detail})" if detail else "")
            ) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise InputError(
                f"{self.host}: MLflow tracking server unreachable ({reason})"
            ) from None

    def get_json(self, path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        if time.monotonic() > self.deadline:
            raise InputError(
                f"{self.host}: resolving the artifacts took longer than "
                f"{self.settings.deadline:.0f} s; refused"
            )
        try:
            with self._open(path, query or {}) as resp:
                data = resp.read(MAX_JSON + 1)
        except (OSError, http.client.HTTPException) as e:
            raise self._cut(path, e) from None
        if len(data) > MAX_JSON:
            raise InputError(f"{self.host}: GET {path}: answer larger than {MAX_JSON} bytes")
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            raise InputError(
                f"{self.host}: GET {path}: not JSON; is this an MLflow server?"
            ) from None
        if not isinstance(doc, dict):
            raise InputError(f"{self.host}: GET {path}: unexpected answer (not an object)")
        return doc

    # -- resolving references ----------------------------------------------------------
    def model_version(self, ref: MlflowRef) -> dict[str, Any]:
        if ref.alias:
            doc = self.get_json(
                "/api/2.0/mlflow/registered-models/alias", {"name": ref.model, "alias": ref.alias}
            )
        else:
            doc = self.get_json(
                "/api/2.0/mlflow/model-versions/get", {"name": ref.model, "version": ref.version}
            )
        mv = doc.get("model_version")
        if not isinstance(mv, dict) or not isinstance(mv.get("source", ""), str):
            raise InputError(f"{ref.text}: the tracking server's answer has no model version")
        return mv

    def run_artifact_uri(self, run_id: str) -> str:
        doc = self.get_json("/api/2.0/mlflow/runs/get", {"run_id": run_id})
        uri = ((doc.get("run") or {}).get("info") or {}).get("artifact_uri")
        if not isinstance(uri, str) or not uri:
            raise InputError(f"runs:/{run_id}: the tracking server's answer has no artifact URI")
        return uri

    def logged_model_uri(self, model_id: str) -> str:
        doc = self.get_json(f"{_LOGGED}/{urllib.parse.quote(model_id)}")
        info = (doc.get("model") or {}).get("info") or {}
        uri = info.get("artifact_uri") or info.get("artifact_location")
        if not isinstance(uri, str) or not uri:
            raise InputError(f"models:/{model_id}: the tracking server's answer has no artifacts")
        return uri

    def tree_for_source(self, ref: str, source: str, run_id: str) -> _Tree:
        """Where the artifacts at a model version's ``source`` are served."""
        if source.startswith("runs:/"):
            r = parse_ref(source)
            return _Tree("run", r.run_id, r.path)
        if m := _LOGGED_MODEL.match(source):
            return _Tree("logged-model", m["id"], "")
        if run_id:
            root = self.run_artifact_uri(run_id).rstrip("/")
            if source == root or source.startswith(root + "/"):
                return _Tree("run", run_id, _relpath(source[len(root) :].strip("/"), ref))
        raise InputError(
            f"{ref}: its artifacts ({_shown(source)}) are not served by the tracking server "
            "(neither under its run's artifacts nor a logged model); download them and check "
            "the directory"
        )

    # -- listing and downloading ---------------------------------------------------------
    def _list_page(self, tree: _Tree, directory: str, token: str) -> tuple[list[Any], str]:
        q: dict[str, str] = {}
        if tree.kind == "run":
            q = {"run_id": tree.key, **({"path": directory} if directory else {})}
            path = "/api/2.0/mlflow/artifacts/list"
        else:
            q = {"artifact_directory_path": directory} if directory else {}
            path = f"{_LOGGED}/{urllib.parse.quote(tree.key)}/artifacts/directories"
        if token:
            q["page_token"] = token
        doc = self.get_json(path, q)
        files = doc.get("files", [])
        nxt = doc.get("next_page_token", "")
        if not isinstance(files, list) or not isinstance(nxt, str):
            raise InputError(f"{self.host}: GET {path}: not an artifact listing")
        return files, nxt

    def listing(self, tree: _Tree, directory: str) -> Iterator[tuple[str, bool, int | None]]:
        """(path, is_dir, size) of each entry of ``directory``, every page, checked."""
        token = ""
        for _ in range(MAX_PAGES):
            files, token = self._list_page(tree, directory, token)
            for entry in files:
                if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                    raise InputError(f"{self.host}: a malformed artifact listing entry")
                name = posixpath.basename(entry["path"])
                given = entry["path"]
                if (
                    not _ENTRY.fullmatch(name)
                    or name in (".", "..")
                    or given
                    not in (
                        name,
                        f"{directory}/{name}" if directory else name,
                    )
                ):
                    raise VerificationError(
                        f"{self.host}: the artifact listing of {directory or '/'!r} names "
                        f"{_shown(given)!r}, not an entry of that directory; refused"
                    )
                size = entry.get("file_size")
                if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
                    size = _int(size)
                yield (
                    (f"{directory}/{name}" if directory else name),
                    bool(entry.get("is_dir")),
                    size,
                )
            if not token:
                return
        raise InputError(f"{self.host}: more than {MAX_PAGES} listing pages for {directory!r}")

    def download(self, tree: _Tree, path: str, size: int | None, dest: Path) -> int:
        if tree.kind == "run":
            resp = self._open("/get-artifact", {"run_id": tree.key, "path": path})
        else:
            resp = self._open(
                f"/ajax-api/2.0/mlflow/logged-models/{urllib.parse.quote(tree.key)}/artifacts/files",
                {"artifact_file_path": path},
            )

        budget = self.settings.max_bytes - self.fetched
        if size is not None and size > budget:
            resp.close()
            raise self._too_large()
        limit = budget if size is None else size
        got = 0
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            out = open(dest, "xb")  # noqa: SIM115 (closed below)
        except OSError:
            resp.close()
            raise VerificationError(
                f"{self.host}: the artifact listing names {_shown(path)!r} twice (or as a "
                "file and a directory); refused"
            ) from None
        try:
            with resp, out:
                while chunk := resp.read(min(_CHUNK, limit - got + 1)):
                    got += len(chunk)
                    if got > limit:
                        break
                    out.write(chunk)
                    if time.monotonic() > self.deadline:
                        raise InputError(
                            f"{self.host}: downloading the artifacts took longer than "
                            f"{self.settings.deadline:.0f} s; refused"
                        )
                else:  # the end of the body: all of it, as declared?
                    if isinstance(resp.length, int) and resp.length > 0:
                        raise http.client.IncompleteRead(b"", resp.length)
        except (OSError, http.client.HTTPException) as e:
            raise self._cut(_shown(path), e) from None
        if got > limit and size is None:
            raise self._too_large()
        if size is not None and got != size:
            raise VerificationError(
                f"{self.host}: {_shown(path)} is {'larger' if got > size else 'smaller'} than "
                f"the {size} bytes its listing said; the artifacts changed or the server is "
                "not consistent; check again"
            )
        self.fetched += got
        return got

    def _cut(self, what: str, e: BaseException) -> InputError:
        """A transfer that broke off (timeout, reset, short body): not judged."""
        return InputError(
            f"{self.host}: reading {what} broke off ({type(e).__name__}); nothing was judged, "
            "check again"
        )

    def _too_large(self) -> VerificationError:
        return VerificationError(
            f"{self.host}: the artifacts add up to more than {self.settings.max_bytes} bytes "
            "(MLVERIFY_MLFLOW_MAX_BYTES); refused"
        )

    def fetch(self, ref: str, tree: _Tree, dest: Path) -> tuple[Path, int]:
        """Every file of ``tree`` under ``dest``; (local root, number of files)."""
        name = posixpath.basename(tree.root) or "artifacts"
        out = dest / name
        count = entries_seen = 0
        pending: list[tuple[str, int]] = [(tree.root, 0)]
        seen_root = False
        while pending:
            directory, depth = pending.pop()
            if depth > MAX_DEPTH:
                raise VerificationError(f"{ref}: artifacts nested deeper than {MAX_DEPTH} levels")
            entries = []
            for entry in self.listing(tree, directory):  # bounded while it is read
                entries_seen += 1
                if entries_seen > 2 * self.settings.max_files:
                    raise VerificationError(
                        f"{ref}: more than {2 * self.settings.max_files} artifact entries; refused"
                    )
                entries.append(entry)
            if directory == tree.root:
                seen_root = bool(entries)
            for path, is_dir, size in sorted(entries, reverse=True):
                if is_dir:
                    pending.append((path, depth + 1))
                    continue
                count += 1
                if count > self.settings.max_files:
                    raise VerificationError(
                        f"{ref}: more than {self.settings.max_files} artifact files; refused"
                    )
                rel = path[len(tree.root) :].lstrip("/") if tree.root else path
                self.download(tree, path, size, out / rel)
        if not seen_root:
            if not tree.root:
                raise InputError(f"{ref}: no artifacts")
            # an empty listing: the path is a file (or nothing; the download says which)
            out = dest / name
            self.download(tree, tree.root, None, out)
            count = 1
        return out, count


def _error_code(body: str) -> str:
    """MLflow's structured error code (``RESOURCE_DOES_NOT_EXIST``), nothing else of a body."""
    try:
        code = json.loads(body).get("error_code", "")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return code if isinstance(code, str) and re.fullmatch(r"[A-Z_]{1,64}", code) else ""


def _int(value: object) -> int:
    """MLflow's JSON gives int64 sizes as strings ("123")."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise InputError(f"an artifact listing gives a size that is not a number ({_shown(value)})")


def _shown(value: object) -> str:
    from mlverify._internal.text import shown

    return shown(str(value)[:300])


@dataclass(frozen=True)
class MlflowSource:
    reference: str
    parsed: MlflowRef
    settings: MlflowSettings
    kind: str = "mlflow"
    copies: bool = True
    pin_hint: str = (
        "MLflow keeps no digest of artifacts: publish the model to an OCI registry and pin "
        "its digest"
    )

    @property
    def pinned(self) -> bool:
        return False  # versions, aliases and runs name files that can be rewritten

    def admit(self, rules: AdmissionRules) -> None:
        admit_kind(self, rules)

    def resolve(self, dest: Path) -> Resolved:
        server = TrackingServer(self.settings)
        ref = self.parsed
        meta: dict[str, Any] = {"tracking_server": server.base}
        if ref.run_id:
            tree = _Tree("run", ref.run_id, ref.path)
            meta.update(run_id=ref.run_id, path=ref.path)
        elif ref.model_id:
            server.logged_model_uri(ref.model_id)  # it exists
            tree = _Tree("logged-model", ref.model_id, "")
            meta.update(model_id=ref.model_id)
        else:
            mv = server.model_version(ref)
            source, run_id = str(mv.get("source", "")), str(mv.get("run_id", "") or "")
            if not source:
                raise InputError(f"{self.reference}: the model version has no source")
            tree = server.tree_for_source(self.reference, source, run_id)
            meta.update(
                model=ref.model,
                version=str(mv.get("version", "")),
                alias=ref.alias,
                source=source,
                run_id=run_id,
                status=str(mv.get("status", "")),
            )
            if ref.alias and not meta["version"].isdigit():
                raise InputError(f"{self.reference}: the alias points at no version number")
        root, count = server.fetch(self.reference, tree, dest)
        meta.update(files=count, bytes=server.fetched)
        return Resolved(self.reference, root, "mlflow", self.reference, metadata=meta)


def parse(text: str, settings: SourceSettings) -> MlflowSource:
    return MlflowSource(text, parse_ref(text), settings.mlflow)
