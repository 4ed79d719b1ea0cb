"""``oci://HOST/REPO@sha256:...`` (or ``:TAG``): models in OCI registries.

A small client of the distribution API (plain HTTP(S), standard library only):
pull a manifest and its layers into a directory with every digest verified,
find signatures attached to the manifest (referrers API, else the tag fallback
``sha256-<hex>``), push a model directory (one layer per file, CNCF ModelPack
media types) with its signature attached, delete a manifest (quarantine).

Plain HTTP is used for loopback registries, or when the settings say ``plain_http``
(the command line: ``MLVERIFY_OCI_PLAIN_HTTP=1``); HTTPS otherwise. Every setting is
handed in (:class:`~mlverify._internal.sources.settings.OciSettings`); the environment
variables named here are read by ``SourceSettings.from_environment`` only.

Trust, as a client of hosts that may be hostile (docs/integrations.md):

- credentials are bound to their registry host, docker ``config.json`` style
  (``MLVERIFY_OCI_AUTH_FILE``, else ``~/.docker/config.json``; or
  ``MLVERIFY_OCI_USERNAME`` / ``MLVERIFY_OCI_PASSWORD`` for the one host named by
  ``MLVERIFY_OCI_REGISTRY``) and go to no other host;
- a token ``realm`` gets them only over https on the registry's own host or a host
  listed in ``MLVERIFY_OCI_TOKEN_HOSTS``; realms on other hosts are not contacted;
- redirects are followed only for blob GETs, without credentials, at most 5 hops,
  never to link-local, private or loopback addresses unless the registry is one;
- error messages never echo what an unexpected host answered;
- pulls are bounded: every layer needs a size, the layers' sum is at most
  ``MLVERIFY_OCI_MAX_BYTES`` (100 GiB), and unpacking a tar layer stops beyond
  100,000 members or 200 times the layer's (compressed) size.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import re
import socket
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mlverify._internal.errors import InputError, MlverifyError, UsageError, VerificationError
from mlverify._internal.sources.base import Resolved, admit_kind
from mlverify._internal.sources.settings import (
    AdmissionRules,
    OciSettings,
    SourceSettings,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MODEL_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODEL_WEIGHT_RAW = "application/vnd.cncf.model.weight.v1.raw"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
FILEPATH_ANNOTATIONS = ("org.cncf.model.filepath", "org.opencontainers.image.title")
ACCEPT = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX])
MAX_MANIFEST = 4 << 20
MAX_REDIRECTS = 5
MAX_LAYERS = 10_000
MAX_REFERRERS = 64
MAX_TAR_MEMBERS = 100_000
MAX_EXPANSION = 200  #: unpacked bytes per byte of a (compressed) tar layer, at most
_CHUNK = 1 << 20

_REF = re.compile(
    r"^oci://(?P<host>[A-Za-z0-9.\-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/"
    r"(?P<repo>[a-z0-9]+(?:[._\-/][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._\-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class OciRef:
    host: str
    repository: str
    tag: str
    digest: str

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"oci://{self.host}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_ref(text: str) -> OciRef:
    """The reference, its host in canonical form (:func:`canonical_host`): the name
    policies match is the same for every spelling of one registry."""
    m = _REF.match(text)
    if m is None:
        raise UsageError(f"{text}: expected oci://HOST[:PORT]/REPOSITORY(@sha256:HEX|:TAG)")
    return OciRef(canonical_host(m["host"]), m["repo"], m["tag"] or "", m["digest"] or "")


def canonical_host(host: str) -> str:
    """``host[:port]`` as one spelling: a name in lower case (DNS names are
    case-insensitive), an IP address in its compressed form, a port without leading zeros.
    A policy matching ``oci://registry.example.com/*`` cannot be escaped by writing
    ``REGISTRY.example.com`` or ``registry.example.com:05000``. A name ending in a dot
    (the same host to a resolver) is refused."""
    name, port = host, ""
    if host.startswith("["):
        end = host.index("]")
        name, port = host[1:end], host[end + 2 :]
    elif ":" in host:
        name, port = host.rsplit(":", 1)
    if port:
        number = int(port) if len(port) <= 8 else 0
        if not 0 < number < 65536:
            raise UsageError(f"oci://{host}: port {port} is out of range")
        port = str(number)
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
                            r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*", name):  # fmt: skip
            raise UsageError(
                f"oci://{host}: not a host name (labels of letters, digits and '-', "
                "separated by single dots, no trailing dot)"
            ) from None
        name = name.lower()
        if re.fullmatch(r"[0-9]+|0x[0-9a-f]*", name.rsplit(".", 1)[-1]):
            # 127.000.000.001, 2130706433, 0x7f.1: an address to a resolver, spelt so
            # that no policy naming the address matches
            raise UsageError(f"oci://{host}: write an IP address in its usual form") from None
    else:
        name = f"[{address.compressed}]" if address.version == 6 else address.compressed
    return f"{name}:{port}" if port else name


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hostname(host: str) -> str:
    """The name or address of ``host[:port]`` (brackets of an IPv6 literal removed)."""
    if host.startswith("["):
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_loopback(host: str) -> bool:
    h = _hostname(host)
    return h == "localhost" or h == "::1" or h.startswith("127.")


def _addresses(name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(name)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]


def is_internal(host: str, *, unresolved: bool = True) -> bool:
    """Does ``host`` resolve to a loopback, link-local, private or otherwise non-public
    address? A name that does not resolve counts as ``unresolved``."""
    addrs = _addresses(_hostname(host))
    return unresolved if not addrs else any(not a.is_global for a in addrs)


def credentials_for(host: str, settings: OciSettings) -> str | None:
    """The ``Authorization`` value for ``host`` only: the settings' username / password
    when their ``registry`` names this host, else the docker-style auth file's entry for
    it (``auths.HOST.auth`` or username/password)."""
    user, password = settings.username, settings.password
    if user and password:
        bound = settings.registry
        if not bound:
            raise UsageError(
                "MLVERIFY_OCI_USERNAME/PASSWORD are set but MLVERIFY_OCI_REGISTRY is not: "
                "name the registry host they belong to (they are sent to no other host)"
            )
        if bound == host:
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    path = settings.auth_file
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"{host}/v2/"):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            return "Basic " + auth
        u, pw = entry.get("username"), entry.get("password")
        if isinstance(u, str) and isinstance(pw, str) and u:
            return "Basic " + base64.b64encode(f"{u}:{pw}".encode()).decode()
    return None


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only for a blob GET, without credentials, to a public address
    (or anywhere when the registry itself is internal), at most ``MAX_REDIRECTS`` hops."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        where = (
            f"{self.registry.host}: {req.get_method()} {urllib.parse.urlsplit(req.full_url).path}"
        )
        if not getattr(req, "mlverify_blob", False) or req.get_method() != "GET":
            raise InputError(f"{where}: the registry redirected (HTTP {code}); refused (only "
                             "blob downloads may be redirected)")  # fmt: skip
        target = urllib.parse.urlsplit(newurl)
        if target.scheme not in ("https", "http") or not target.hostname:
            raise InputError(f"{where}: redirect to an unsupported URL; refused")
        internal_ok = is_internal(self.registry.host, unresolved=False)
        if target.scheme == "http" and not self.registry.base.startswith("http://"):
            raise InputError(f"{where}: redirect from https to plain http; refused")
        if not internal_ok and is_internal(target.netloc):
            raise InputError(
                f"{where}: redirect to a loopback, link-local or private address; refused"
            )
        new = urllib.request.Request(newurl, method="GET")  # no credentials, no headers
        new.mlverify_blob = True  # type: ignore[attr-defined]
        new.mlverify_redirected = True  # type: ignore[attr-defined]
        return new


class Registry:
    """The distribution API of one registry host."""

    def __init__(self, host: str, settings: OciSettings, *, timeout: float | None = None) -> None:
        plain = settings.plain_http
        self.base = f"{'http' if plain or _is_loopback(host) else 'https'}://{host}"
        self.host = host
        self.settings = settings
        self.timeout = settings.timeout if timeout is None else timeout
        # given by the caller for this host (e.g. Harbor's scan request), else bound to it
        self._basic = settings.authorization or credentials_for(host, settings)
        self._auth: str | None = self._basic
        self._opener = urllib.request.build_opener(_Redirects(self))

    # -- transport ---------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        retry_auth: bool = True,
        blob: bool = False,
    ) -> Any:
        url = self.base + path
        if path.startswith(("http://", "https://")):  # an upload Location: same host only
            if urllib.parse.urlsplit(path).netloc != self.host:
                raise InputError(f"{self.host}: the registry named another host; refused")
            url = path
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        req.mlverify_blob = blob  # type: ignore[attr-defined]
        if self._auth:  # never forwarded on a redirect (unredirected header)
            req.add_unredirected_header("Authorization", self._auth)
        shown = urllib.parse.urlsplit(url).path
        try:
            resp = self._opener.open(req, timeout=self.timeout)
        except InputError:
            raise
        except urllib.error.HTTPError as e:
            redirected = e.url != url if isinstance(e.url, str) else True
            if (
                e.code == 401
                and retry_auth
                and not redirected
                and self._token(e.headers.get("WWW-Authenticate", ""))
            ):
                return self.request(
                    method, path, data=data, headers=headers, ok=ok, retry_auth=False, blob=blob
                )
            if e.code in ok and not redirected:
                return e
            # only the registry's own structured error codes are repeated, never a body
            # from elsewhere (a redirect target must not become an oracle)
            detail = "" if redirected else _registry_error(e.read(2000).decode("utf-8", "replace"))
            raise InputError(
                f"{self.host}: {method} {shown} gave HTTP {e.code}"
                + (f" ({detail})" if detail else "")
                + (" after a redirect" if redirected else "")
            ) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise InputError(f"{self.host}: registry unreachable ({reason})") from None
        if resp.status not in ok:
            raise InputError(f"{self.host}: {method} {shown} gave HTTP {resp.status}")
        return resp

    def _token(self, challenge: str) -> bool:
        """Exchange for a bearer token at the challenge's realm, if it may be contacted:
        https (or this plain-http loopback registry itself), on the registry's own host
        or one listed in the settings' ``token_hosts``. Credentials go nowhere else."""
        if not challenge.lower().startswith("bearer "):
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = urllib.parse.urlsplit(params.get("realm", ""))
        allowed_hosts = {self.host} | set(self.settings.token_hosts)
        same_plain = realm.scheme == "http" and self.base.startswith("http://")
        if realm.netloc not in allowed_hosts or not (realm.scheme == "https" or same_plain):
            return False
        if (
            realm.netloc != self.host
            and is_internal(realm.netloc)
            and not is_internal(self.host, unresolved=False)
        ):
            return False
        query = urllib.parse.urlencode({k: v for k, v in params.items() if k != "realm"})
        req = urllib.request.Request(f"{params['realm']}?{query}")
        req.mlverify_blob = False  # type: ignore[attr-defined]
        if self._basic:
            req.add_unredirected_header("Authorization", self._basic)
        try:
            with self._opener.open(req, timeout=self.timeout) as r:
                doc = json.loads(r.read(1 << 20))
        except (OSError, ValueError, InputError):
            return False
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            return False
        self._auth = f"Bearer {token}"
        return True

    # -- manifests and blobs -----------------------------------------------------
    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest); a digest reference is verified against the bytes."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT})
        try:
            with resp:
                data = resp.read(MAX_MANIFEST + 1)
                media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        except (OSError, http.client.HTTPException) as e:
            raise InputError(
                f"{self.host}/{repo}@{reference}: reading the manifest broke off "
                f"({type(e).__name__}); check again"
            ) from None
        if len(data) > MAX_MANIFEST:
            raise InputError(f"{self.host}/{repo}@{reference}: manifest larger than 4 MiB")
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise VerificationError(
                f"{self.host}/{repo}: the registry served a manifest whose digest is {digest}, "
                f"not the {reference} asked for; do not trust this registry's answer"
            )
        return data, media, digest

    def manifest_exists(self, repo: str, reference: str) -> bool:
        resp = self.request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT}, ok=(200, 404)
        )
        return int(resp.status if hasattr(resp, "status") else resp.code) == 200

    def fetch_blob(self, repo: str, digest: str, size: object, dest: Path) -> None:
        """Stream a blob to ``dest``, verifying its digest and its (required) size."""
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise InputError(f"{self.host}/{repo}: unsupported blob digest {digest[:80]!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise VerificationError(
                f"{self.host}/{repo}: blob {digest} has no valid size in its descriptor; "
                "refusing an unbounded download"
            )
        h = hashlib.sha256()
        n = 0
        try:
            with (
                self.request("GET", f"/v2/{repo}/blobs/{digest}", blob=True) as resp,
                open(dest, "xb") as out,
            ):
                while chunk := resp.read(min(_CHUNK, size - n + 1)):
                    n += len(chunk)
                    if n > size:
                        break
                    h.update(chunk)
                    out.write(chunk)
        except (OSError, http.client.HTTPException) as e:  # timeout, reset, short body
            raise InputError(
                f"{self.host}/{repo}: reading blob {digest} broke off ({type(e).__name__}); "
                "nothing was judged, check again"
            ) from None
        if n != size or "sha256:" + h.hexdigest() != digest:
            # what came back is not described (its digest or size would make a redirect
            # to an internal address an oracle)
            raise VerificationError(
                f"{self.host}/{repo}: blob {digest} does not match its digest or size; the "
                "registry content is corrupt or tampered with"
            )

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        exists = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", ok=(200, 404))
        if int(getattr(exists, "status", 0) or exists.code) == 200:
            return digest
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", data=b"", ok=(202,))
        location = resp.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        sep = "&" if "?" in location else "?"
        self.request(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(digest)}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            ok=(201,),
        )
        return digest

    def push_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            data=data,
            headers={"Content-Type": media_type},
            ok=(201,),
        )
        return sha256_digest(data)

    def delete_manifest(self, repo: str, digest: str) -> None:
        self.request("DELETE", f"/v2/{repo}/manifests/{digest}", ok=(202, 200))

    def referrers(self, repo: str, digest: str) -> list[dict[str, Any]]:
        """Manifests attached to ``digest``: referrers API, else the ``sha256-<hex>`` tag."""
        resp = self.request(
            "GET",
            f"/v2/{repo}/referrers/{digest}",
            headers={"Accept": OCI_INDEX},
            ok=(200, 404, 400),
        )
        code = int(getattr(resp, "status", 0) or resp.code)
        if code == 200:
            with resp:
                doc = json.loads(resp.read(MAX_MANIFEST))
            return list(doc.get("manifests", []))
        fallback = digest.replace(":", "-")
        if not self.manifest_exists(repo, fallback):
            return []
        data, media, d = self.get_manifest(repo, fallback)
        doc = json.loads(data)
        if media == OCI_INDEX or doc.get("mediaType") == OCI_INDEX:
            return list(doc.get("manifests", []))
        return [{"digest": d, "mediaType": media, "artifactType": doc.get("artifactType", "")}]


def _registry_error(body: str) -> str:
    """The registry's structured error codes (distribution spec), nothing else of a body."""
    try:
        errors = json.loads(body).get("errors", [])
        codes = [str(e.get("code"))[:40] for e in errors[:5] if isinstance(e, dict)]
    except (ValueError, AttributeError, TypeError, RecursionError):
        return ""
    return ", ".join(c for c in codes if re.fullmatch(r"[A-Z_]+", c))


def _safe_relpath(name: str, where: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if not name or p.is_absolute() or any(part in ("..", "") for part in p.parts) or "\\" in name:
        raise VerificationError(f"{where}: unsafe file path {name!r} in a layer annotation")
    return p


def _layer_path(layer: dict[str, Any], index: int, where: str) -> PurePosixPath:
    notes = layer.get("annotations") or {}
    for key in FILEPATH_ANNOTATIONS:
        if notes.get(key):
            return _safe_relpath(str(notes[key]), where)
    return PurePosixPath(f"layer-{index}")


def _is_archive(layer: dict[str, Any]) -> bool:
    """Is this layer a tar to unpack (not a file to keep as is)? ModelPack says so by
    media type; ORAS marks raw files ``...layer.v1.tar`` with a title and real archives
    (pushed directories) with ``io.deis.oras.content.unpack``."""
    media = str(layer.get("mediaType", ""))
    notes = layer.get("annotations") or {}
    if re.search(r"vnd\.(cncf|cnai)\.model\.", media):
        return bool(re.search(r"\.tar(\+gzip|\+zstd)?$", media))
    if notes.get("io.deis.oras.content.unpack") == "true":
        return True
    if any(notes.get(k) for k in FILEPATH_ANNOTATIONS):
        return False
    # OCI image layers (...tar+gzip) and docker's (...rootfs.diff.tar.gzip)
    return bool(re.search(r"\.tar([+.]gzip|\+zstd)?$", media))


def _unpack(blob: Path, media: str, dest: Path, where: str, budget: int) -> int:
    """Unpack a tar layer (plain or gzip) with the 'data' filter (no links out, no
    devices), at most ``MAX_TAR_MEMBERS`` members and ``budget`` bytes, and at most
    ``MAX_EXPANSION`` times the layer's size; returns the bytes unpacked."""
    if media.endswith(("+zstd", ".zstd")):
        raise InputError(f"{where}: zstd layers are not supported yet ({media})")
    dest.mkdir(parents=True, exist_ok=True)
    limit = min(budget, MAX_EXPANSION * blob.stat().st_size + (1 << 20))
    total = 0
    try:
        with tarfile.open(blob, "r:*") as tf:
            for count, member in enumerate(tf, start=1):
                total += max(member.size, 0)
                if count > MAX_TAR_MEMBERS:
                    raise VerificationError(
                        f"{where}: the layer has more than {MAX_TAR_MEMBERS} members; refused"
                    )
                if total > limit:
                    raise VerificationError(
                        f"{where}: the layer unpacks to more than {limit} bytes (a "
                        "decompression bomb, or over the pull limit MLVERIFY_OCI_MAX_BYTES); "
                        "refused"
                    )
                tf.extract(member, dest, filter="data")
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise VerificationError(f"{where}: layer cannot be unpacked safely ({e})") from None
    return total


def pull(text: str, dest: Path, settings: OciSettings) -> Resolved:
    """Pull ``text`` into ``dest``: the model's files under ``dest/<name>``, signatures
    attached to the manifest under ``dest/signatures``."""
    ref = parse_ref(text)
    reg = Registry(ref.host, settings)
    check_tag(reg, ref)
    data, media, digest = reg.get_manifest(ref.repository, ref.reference)
    try:
        manifest = json.loads(data)
    except ValueError:
        raise InputError(f"{ref}: the manifest is not JSON") from None
    kind = manifest.get("mediaType") or media
    if kind in (OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"):
        raise InputError(f"{ref}: an index (multi-platform image), not a model artifact")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise InputError(f"{ref}: the manifest has no layers; not a model artifact")
    if len(layers) > MAX_LAYERS or not all(isinstance(x, dict) for x in layers):
        raise VerificationError(f"{ref}: more than {MAX_LAYERS} layers, or malformed ones")
    budget = settings.max_bytes
    sizes = [x.get("size") for x in layers]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes):
        raise VerificationError(f"{ref}: a layer has no valid size; refusing an unbounded pull")
    if sum(sizes) > budget:
        raise VerificationError(
            f"{ref}: the layers add up to more than {budget} bytes (MLVERIFY_OCI_MAX_BYTES)"
        )
    name = PurePosixPath(ref.repository).name
    root = dest / name
    root.mkdir(parents=True)
    blobs = dest / ".blobs"
    blobs.mkdir()
    files: list[dict[str, Any]] = []
    for i, layer in enumerate(layers):
        where = f"{ref} layer {i}"
        ldigest = str(layer.get("digest", ""))
        lmedia = str(layer.get("mediaType", ""))
        rel = _layer_path(layer, i, where)
        blob = blobs / ldigest.replace(":", "-")
        reg.fetch_blob(ref.repository, ldigest, layer.get("size"), blob)
        if _is_archive(layer):
            budget -= _unpack(blob, lmedia, root, where, budget)  # a tar names its own paths
            blob.unlink()
        else:
            target = root / rel
            if target.exists():
                raise VerificationError(f"{where}: two layers write {rel}")
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.rename(target)
        files.append({"path": rel.as_posix(), "digest": ldigest, "mediaType": lmedia})
    sigs = dest / "signatures"
    sigs.mkdir()
    signatures: list[Path] = []
    attestations: list[Path] = []
    attached: list[dict[str, str]] = []
    referrers = reg.referrers(ref.repository, digest)[:MAX_REFERRERS]
    for n, desc in enumerate(referrers):
        if not isinstance(desc, dict):
            continue
        try:
            sdata, _, sdigest = reg.get_manifest(ref.repository, str(desc["digest"]))
            sman = json.loads(sdata)
        except (MlverifyError, KeyError, ValueError):
            continue
        subject = (sman.get("subject") or {}).get("digest")
        if subject != digest:  # a fallback tag pointing elsewhere is not evidence
            continue
        atype = sman.get("artifactType") or (sman.get("config") or {}).get("mediaType", "")
        for m, layer in enumerate(sman.get("layers") or []):
            if layer.get("mediaType") != SIGSTORE_BUNDLE:
                continue
            target = sigs / f"bundle-{n}-{m}.json"
            reg.fetch_blob(ref.repository, str(layer["digest"]), layer.get("size"), target)
            if _is_model_signature(target):
                signatures.append(target.rename(sigs / f"signature-{n}-{m}.sig"))
            else:  # beside the model, where check discovers attestations
                attestations.append(target.rename(dest / f"{name}.att-{n}-{m}.sigstore.json"))
        attached.append({"digest": sdigest, "artifactType": str(atype)})
    if not signatures and not attestations:
        sigs.rmdir()
    return Resolved(
        str(ref),
        root,
        "oci",
        str(ref) if ref.digest else f"{ref}@{digest}",  # a tag is named with its digest
        digest=digest,
        signatures=tuple(signatures),
        metadata={
            "registry": ref.host,
            "repository": ref.repository,
            "tag": ref.tag,
            "manifest_digest": digest,
            "pinned": bool(ref.digest),
            "artifact_type": str(manifest.get("artifactType", "")),
            "layers": files,
            "attached": attached,
            "referrers": referrer_set(referrers),
        },
    )


def check_tag(reg: Registry, ref: OciRef) -> None:
    """``oci://HOST/REPO:TAG@DIGEST`` names its artifact by the digest, but policies match
    the whole name, tag included: the tag must name that digest at the registry now (one
    manifest GET), else anyone could pick the policy that judges a digest by writing a
    lenient tag before it. A reference with a tag only, or a digest only, passes."""
    if not (ref.tag and ref.digest):
        return
    resp = reg.request(
        "GET",
        f"/v2/{ref.repository}/manifests/{ref.tag}",
        headers={"Accept": ACCEPT},
        ok=(200, 404),
    )
    with resp:
        if int(getattr(resp, "status", 0) or resp.code) == 404:
            current = "no manifest (the tag does not exist)"
        else:
            try:
                data = resp.read(MAX_MANIFEST + 1)
            except (OSError, http.client.HTTPException) as e:
                raise InputError(
                    f"{ref}: reading the manifest of tag {ref.tag} broke off "
                    f"({type(e).__name__}); check again"
                ) from None
            current = sha256_digest(data) if len(data) <= MAX_MANIFEST else "an oversized manifest"
            if current != ref.digest and ref.digest in _index_members(data):
                return  # the tag names an index (multi-platform image) listing the digest
    if current != ref.digest:
        raise VerificationError(
            f"{ref}: the tag {ref.tag} names {current} at the registry, not {ref.digest}; "
            "policies match the tag, so it must name the digest: use the tag's current "
            f"digest, or the digest alone (oci://{ref.host}/{ref.repository}@{ref.digest})"
        )


def _index_members(data: bytes) -> set[str]:
    """The manifest digests an image index lists (none if ``data`` is not an index)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return set()
    if not isinstance(doc, dict) or doc.get("mediaType") not in (
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ):
        return set()
    listed = doc.get("manifests")
    return (
        {str(m.get("digest")) for m in listed if isinstance(m, dict)}
        if isinstance(listed, list)
        else set()
    )


def referrer_set(descriptors: list[Any]) -> list[str]:
    """The digests of the manifests attached to a subject, sorted: what a verdict saw."""
    return sorted({str(d.get("digest", "")) for d in descriptors if isinstance(d, dict)})


def current_referrers(host: str, repo: str, digest: str, settings: OciSettings) -> list[str]:
    """The referrer set of ``digest`` now (one request, or two on the tag fallback)."""
    reg = Registry(host, settings, timeout=10)
    return referrer_set(reg.referrers(repo, digest)[:MAX_REFERRERS])


def _is_model_signature(bundle: Path) -> bool:
    """An OMS model signature (not an attestation), judged by the DSSE statement's
    predicateType; what cannot be read is left to check as an attestation."""
    from mlverify._internal.signing.statement import LEGACY_PREDICATE_TYPE, OMS_PREDICATE_TYPE

    try:
        doc = json.loads(bundle.read_bytes())
        payload = base64.b64decode(doc["dsseEnvelope"]["payload"])
        kind = json.loads(payload).get("predicateType")
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return kind in (OMS_PREDICATE_TYPE, LEGACY_PREDICATE_TYPE)


def _descriptor(media: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media, "digest": sha256_digest(data), "size": len(data), **extra}


def push(
    model: Path,
    text: str,
    settings: OciSettings,
    *,
    signature: Path | None = None,
    attestations: Sequence[Path] = (),
) -> tuple[str, str]:
    """Push a model directory (or file) as a ModelPack artifact, one raw layer per file,
    and attach ``signature`` (an OMS Sigstore bundle) and ``attestations`` (signed
    DSSE bundles, e.g. SLSA provenance) to it. (manifest digest, signature digest)."""
    from mlverify._internal.artifact import walk_model

    ref = parse_ref(text)
    if ref.digest:
        raise UsageError(f"{text}: push to a tag (oci://HOST/REPO:TAG), not a digest")
    reg = Registry(ref.host, settings)
    excluded = [*([signature] if signature else []), *attestations]
    tree = walk_model(model, extra_excluded=excluded)
    layers = []
    for f in tree.files:
        data = f.path.read_bytes()
        reg.push_blob(ref.repository, data)
        layers.append(
            _descriptor(
                MODEL_WEIGHT_RAW,
                data,
                annotations={
                    "org.cncf.model.filepath": f.name,
                    "org.opencontainers.image.title": f.name,
                },
            )
        )
    config = json.dumps(
        {"descriptor": {"name": tree.name}, "modelfs": {"type": "layers", "diffIds": []}},
        sort_keys=True,
    ).encode()
    reg.push_blob(ref.repository, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": MODEL_ARTIFACT,
        "config": _descriptor(MODEL_CONFIG, config),
        "layers": layers,
    }
    mdata = json.dumps(manifest, sort_keys=True).encode()
    digest = reg.push_manifest(ref.repository, ref.tag or "latest", mdata, OCI_MANIFEST)
    sig_digest = ""
    if signature is not None:
        sig_digest = attach(reg, ref.repository, digest, len(mdata), signature.read_bytes())
    for att in attestations:
        attach(reg, ref.repository, digest, len(mdata), att.read_bytes())
    return digest, sig_digest


def attach(reg: Registry, repo: str, subject: str, subject_size: int, bundle: bytes) -> str:
    """Attach a Sigstore bundle to ``subject``: a referrer manifest with ``subject``,
    tagged for registries without the referrers API: ``sha256-<hex>`` holds an index of
    every referrer pushed here (the signature and any attestations)."""
    empty = b"{}"
    reg.push_blob(repo, empty)
    reg.push_blob(repo, bundle)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGSTORE_BUNDLE,
        "config": _descriptor(EMPTY_CONFIG, empty),
        "layers": [_descriptor(SIGSTORE_BUNDLE, bundle)],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
    }
    data = json.dumps(manifest, sort_keys=True).encode()
    digest = reg.push_manifest(repo, sha256_digest(data), data, OCI_MANIFEST)  # untagged
    _add_to_fallback_index(
        reg, repo, subject, _descriptor(OCI_MANIFEST, data, artifactType=SIGSTORE_BUNDLE)
    )
    return digest


def _add_to_fallback_index(
    reg: Registry, repo: str, subject: str, descriptor: dict[str, Any]
) -> None:
    """The referrers tag schema (OCI distribution spec 1.1): tag ``sha256-<hex>`` is an
    image index listing the referrers of ``sha256:<hex>``."""
    tag = subject.replace(":", "-")
    manifests: list[dict[str, Any]] = []
    if reg.manifest_exists(repo, tag):
        data, _, _ = reg.get_manifest(repo, tag)
        doc = json.loads(data)
        if doc.get("mediaType") == OCI_INDEX:
            manifests = [m for m in doc.get("manifests", []) if m["digest"] != descriptor["digest"]]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*manifests, descriptor]}
    reg.push_manifest(repo, tag, json.dumps(index, sort_keys=True).encode(), OCI_INDEX)


@dataclass(frozen=True)
class OciSource:
    reference: str
    parsed: OciRef
    settings: OciSettings
    kind: str = "oci"
    copies: bool = True
    pin_hint: str = "oci://HOST/REPO@sha256:<digest>"

    @property
    def pinned(self) -> bool:
        return bool(self.parsed.digest)

    def admit(self, rules: AdmissionRules) -> None:
        admit_kind(self, rules)
        allowed = rules.registries
        if (
            allowed is not None
            and "*" not in allowed
            and self.parsed.host not in {canonical_host(h) for h in allowed}
        ):
            raise UsageError(
                f"{self.reference}: registry {self.parsed.host} is not configured; refusing it"
            )

    def resolve(self, dest: Path) -> Resolved:
        return pull(self.reference, dest, self.settings)


def parse(text: str, settings: SourceSettings) -> OciSource:
    return OciSource(text, parse_ref(text), settings.oci)
