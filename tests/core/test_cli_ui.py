"""The CLI's manners: colour and progress only on a terminal, --quiet and --verbose."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from mlverify._internal import progress
from mlverify._internal.cli import ui


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert ui.colour_enabled(_Tty()) and not ui.colour_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not ui.colour_enabled(_Tty())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not ui.colour_enabled(_Tty())


def test_verdict_words_are_coloured() -> None:
    text = ui._colourise("DENIED  models/x\n  deny signature.bad: no\nplain line\n")
    lines = text.splitlines()
    assert "\x1b[" in lines[0] and "\x1b[" in lines[1] and lines[2] == "plain line"
    assert "models/x" in lines[0]


def _run(*args: str, tty: bool = False, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the CLI; with ``tty``, its stdout and stderr are a pseudo-terminal."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CI", None)
    cmd = [sys.executable, "-m", "mlverify", *args]
    if not tty:
        p = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=120)
        return p.returncode, p.stdout + p.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=slave, stderr=slave, env=full_env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


ROOT = Path(__file__).resolve().parents[2]
TAMPERED = str(ROOT / "fixtures" / "models" / "tampered-classifier")


def test_no_escape_codes_in_pipes() -> None:
    code, out = _run("check", "--no-cache", TAMPERED)
    assert code == 1 and "DENIED" in out and "\x1b[" not in out


def test_colour_on_a_terminal_and_not_with_no_color() -> None:
    code, out = _run("check", "--no-cache", TAMPERED, tty=True, env={"TERM": "xterm"})
    assert code == 1 and "\x1b[" in out
    code, out = _run("check", "--no-cache", TAMPERED, tty=True, env={"NO_COLOR": "1"})
    assert code == 1 and "\x1b[" not in out


def test_quiet_and_verbose() -> None:
    code, out = _run("-q", "policy", "lint", "builtin:default")
    assert code == 0 and "ok:" in out
    code, out = _run("-q", "-v", "policy", "lint", "builtin:default")
    assert code == 2 and "cannot be used together" in out


def test_notes_respect_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    ui.configure(quiet=True, verbose=False)
    try:
        ui.note("summary")
        ui.detail("detail")
        assert capsys.readouterr().err == ""
        ui.configure(quiet=False, verbose=True)
        ui.note("summary")
        ui.detail("detail")
        assert capsys.readouterr().err == "summary\ndetail\n"
    finally:
        ui.configure(quiet=False, verbose=False)


def test_progress_reaches_the_installed_reporter_only() -> None:
    seen: list[int] = []

    class R(progress.Reporter):
        def advance(self, amount: int) -> None:
            seen.append(amount)

    progress.advance(5)  # nobody listening: nothing happens
    with progress.reporting(R()):
        progress.advance(3)
        progress.advance(4)
    progress.advance(9)
    assert seen == [3, 4]


def test_no_bar_in_pipes_or_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ui, "is_terminal", lambda stream: True)
    monkeypatch.setenv("CI", "true")
    assert not ui._progress_wanted()
    monkeypatch.delenv("CI")
    monkeypatch.setenv("TERM", "xterm")
    assert ui._progress_wanted()
    ui.configure(quiet=True, verbose=False)
    try:
        assert not ui._progress_wanted()
    finally:
        ui.configure(quiet=False, verbose=False)


def test_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    big = tmp_path / "weights.bin"
    with open(big, "wb") as f:
        f.truncate(64 << 20)
    env = {"MLVERIFY_PROGRESS_DELAY": "0", "TERM": "xterm"}
    code, out = _run("hash", str(big), tty=True, env=env)
    assert code == 0 and "hashing" in out  # the bar was drawn (transient: then erased)
    code, out = _run("hash", str(big), env=env)
    assert code == 0 and "hashing" not in out and "\x1b[" not in out
    code, out = _run("-q", "hash", str(big), tty=True, env=env)
    assert code == 0 and "hashing" not in out
