"""Real Redis and PostgreSQL on loopback, on free ports, in temporary directories.

Redis runs with an append-only file fsynced on every write (a restart loses nothing);
PostgreSQL runs as its own user (``postgres``), as its initdb requires. Without the
binaries (Debian ``redis-server``, ``postgresql``) or without root, the tests skip with
the reason.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integrations.conftest import free_port

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Redis:
    port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--protected-mode", "no", "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port, 15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.proc = None


def _wait_port(port: int, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    r = Redis(free_port(), tmp_path_factory.mktemp("redis"))
    r.start()
    yield r
    r.stop()


@dataclass
class Postgres:
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


class Unavailable(Exception):
    """A service these tests need cannot run here (the reason is the message)."""


@contextlib.contextmanager
def postgres_running() -> Iterator[Postgres]:
    """PostgreSQL on a free loopback port, as the ``postgres`` user, in a temporary
    directory (pytest's are private to root: that user could not enter them)."""
    import tempfile

    if not PG_BIN:
        raise Unavailable("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    if os.geteuid() != 0:
        raise Unavailable("PostgreSQL must run as its own user: switching to it needs root")
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("no 'postgres' user to run PostgreSQL as") from None
    bin_dir = Path(PG_BIN[-1])
    base = Path(tempfile.mkdtemp(prefix="mlverify-pg-"))
    os.chmod(base, 0o755)
    data = base / "data"
    data.mkdir()
    os.chown(data, user.pw_uid, user.pw_gid)
    port = free_port()

    def as_pg(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
             *cmd], capture_output=True, text=True, timeout=120, cwd="/",
        )  # fmt: skip

    try:
        r = as_pg(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr[-2000:]}")
        opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={data}"
        r = as_pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data / "log"),
                  "-w", "-t", "60", "start")  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {r.stderr[-2000:]}{r.stdout[-2000:]}")
        yield Postgres(port, data)
    finally:
        as_pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def new_database(server: Postgres) -> str:
    """The URL of a fresh, empty database on ``server``."""
    import psycopg

    name = f"t{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:{server.port}/{name}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    try:
        with postgres_running() as pg:
            yield pg
    except Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture
def pg_url(postgres_server: Postgres) -> str:
    """A fresh database for one test."""
    return new_database(postgres_server)


@dataclass
class Proc:
    """A `mlverify` command run as a real process, its JSON log in a file."""

    proc: subprocess.Popen[bytes]
    log: Path
    lines: list[dict[str, object]] = field(default_factory=list)

    def records(self) -> list[dict[str, object]]:
        import json

        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@pytest.fixture
def mlverify_proc(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Proc:
        log = tmp_path / f"proc-{len(procs)}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_CACHE_HOME": str(tmp_path / "c"),
                    "PYTHONPATH": str(REPO), **(env or {})}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlverify", *args],
            stdout=open(log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        p = Proc(proc, log)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop(timeout=30)


from tests.integrations.conftest import (  # noqa: E402,F401 - the fixtures, shared
    registry,
    registry_factory,
    serve_factory,
)
