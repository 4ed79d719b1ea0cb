"""Settings of the artifact sources: handed in, frozen, never read inside a source.

Front ends build them once: the command line with :meth:`SourceSettings.from_environment`
(the documented ``MLVERIFY_*`` variables), the service from its configuration, a
library caller by hand. A source reads only what it is given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlverify._internal.errors import UsageError

DEFAULT_MAX_PULL = 100 << 30  #: bytes one remote artifact may bring, at most


def _bytes(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit():
        raise UsageError(f"{name}={raw!r}: expected a number of bytes")
    return int(raw)


@dataclass(frozen=True)
class OciSettings:
    plain_http: bool = False  #: HTTP, not HTTPS, for every registry (loopback always is)
    #: Authorization header value for the registry named in the reference (a caller's own,
    #: e.g. Harbor's scan request); else credentials bound to that host below
    authorization: str | None = None
    auth_file: Path | None = None  #: docker-style config.json
    username: str = ""
    password: str = ""
    registry: str = ""  #: the one host ``username``/``password`` belong to
    token_hosts: frozenset[str] = frozenset()  #: token realms on other hosts allowed
    max_bytes: int = DEFAULT_MAX_PULL
    timeout: float = 30


@dataclass(frozen=True)
class HfSettings:
    cache: Path = field(default_factory=lambda: Path.home() / ".cache" / "huggingface" / "hub")
    download: bool = False  #: fill the cache from the Hub first (network)


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str = ""  #: http(s)://HOST[:PORT][/PREFIX] of the tracking server
    token: str = ""  #: bearer token (MLFLOW_TRACKING_TOKEN)
    username: str = ""  #: basic auth (MLFLOW_TRACKING_USERNAME / _PASSWORD)
    password: str = ""
    max_bytes: int = DEFAULT_MAX_PULL
    max_files: int = 100_000
    timeout: float = 30  #: seconds per request (connect, each read)
    deadline: float = 3600  #: seconds for one artifact's whole download


@dataclass(frozen=True)
class SourceSettings:
    oci: OciSettings = field(default_factory=OciSettings)
    hf: HfSettings = field(default_factory=HfSettings)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SourceSettings:
        """The settings the documented environment variables give (``os.environ`` by
        default): the only place sources' settings are read from the environment."""
        env = os.environ if environ is None else environ
        home = Path(env.get("HOME") or Path.home())
        if env.get("HF_HUB_CACHE"):
            cache = Path(env["HF_HUB_CACHE"])
        elif env.get("HF_HOME"):
            cache = Path(env["HF_HOME"]) / "hub"
        else:
            cache = home / ".cache" / "huggingface" / "hub"
        auth_file = env.get("MLVERIFY_OCI_AUTH_FILE")
        return cls(
            oci=OciSettings(
                plain_http=env.get("MLVERIFY_OCI_PLAIN_HTTP") == "1",
                auth_file=Path(auth_file) if auth_file else home / ".docker" / "config.json",
                username=env.get("MLVERIFY_OCI_USERNAME", ""),
                password=env.get("MLVERIFY_OCI_PASSWORD", ""),
                registry=env.get("MLVERIFY_OCI_REGISTRY", ""),
                token_hosts=frozenset(
                    h.strip()
                    for h in env.get("MLVERIFY_OCI_TOKEN_HOSTS", "").split(",")
                    if h.strip()
                ),
                max_bytes=_bytes(env, "MLVERIFY_OCI_MAX_BYTES", DEFAULT_MAX_PULL),
            ),
            hf=HfSettings(cache=cache, download=env.get("MLVERIFY_HF_DOWNLOAD") == "1"),
            mlflow=MlflowSettings(
                tracking_uri=env.get("MLVERIFY_MLFLOW_TRACKING_URI")
                or env.get("MLFLOW_TRACKING_URI", ""),
                token=env.get("MLFLOW_TRACKING_TOKEN", ""),
                username=env.get("MLFLOW_TRACKING_USERNAME", ""),
                password=env.get("MLFLOW_TRACKING_PASSWORD", ""),
                max_bytes=_bytes(env, "MLVERIFY_MLFLOW_MAX_BYTES", DEFAULT_MAX_PULL),
            ),
        )


def oci_from_environment(plain_http: bool = False) -> OciSettings:
    """The environment's OCI settings, plain HTTP also when a front end's own option
    says so (the service's and the worker's ``plain_http``)."""
    import dataclasses

    oci = SourceSettings.from_environment().oci
    return dataclasses.replace(oci, plain_http=oci.plain_http or plain_http)


@dataclass(frozen=True)
class AdmissionRules:
    """Which references a caller may make us read (the service's configuration; the
    command line admits everything the user names)."""

    #: local paths only inside one of these (symlinks resolved); None: any path
    roots: tuple[Path, ...] | None = None
    #: ``oci://`` only on these hosts ("*" any); None: any
    registries: frozenset[str] | None = None
    #: kinds of reference ("oci", "hf", "mlflow", "path") admitted only when pinned to
    #: their content by a digest or commit (the service: {"hf"}; with --require-digest all)
    pinned_only: frozenset[str] = frozenset()
    #: schemes refused outright (e.g. the service refuses MLflow until configured)
    refused_kinds: frozenset[str] = frozenset()
