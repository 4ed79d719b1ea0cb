"""CLI conventions: --version, --help everywhere, one-line errors with exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlverify import __version__
from mlverify._internal.cli import COMMANDS, SUMMARIES
from tests.core.helpers import run


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    r = run(capsys, "--version")
    assert r.code == 0 and r.out.strip() == f"mlverify {__version__}"


def test_every_command_has_help_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(SUMMARIES) == set(COMMANDS)
    top = run(capsys, "--help")
    assert top.code == 0
    for name in COMMANDS:
        assert name in top.out
        r = run(capsys, name, "--help")
        assert r.code == 0, (name, r.err)
        assert f"Usage: mlverify {name}" in r.out


@pytest.mark.parametrize(
    "args",
    [
        ["nosuchcommand"],
        ["hash"],
        ["hash", "--mode", "bogus", "."],
        ["sign", "."],
        ["hash", "--nope"],
    ],
)
def test_usage_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    r = run(capsys, *args)
    assert r.code == 2
    assert r.err.startswith("mlverify: error: ") and r.err.count("\n") == 1, r.err
    assert "Traceback" not in r.err


def test_console_script_starts_without_heavy_imports() -> None:
    code = (
        "import sys; from mlverify._internal.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('sigstore', 'model_signing', 'fickling', 'numpy', 'torch', 'blake3') "
        "if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY=", out.stdout
