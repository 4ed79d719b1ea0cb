"""Extra allowlist entries read the same from the command line and from a policy file."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from mlverify._internal.cli import main
from mlverify._internal.policy.model import PolicyError, parse_policy
from mlverify._internal.scan.policy import allow_entry_problem

GOOD = ["pkg.*", "pkg.mod.Name", "pkg.Class.method", "_p.x"]
BAD = ["pkg", "pkg.", ".x", "a..b", "a.b c", "*", "a.*.b", "a-b.c", ""]


@pytest.mark.parametrize("entry", GOOD)
def test_accepted(entry: str) -> None:
    assert allow_entry_problem(entry) is None


@pytest.mark.parametrize("entry", BAD)
def test_rejected(entry: str) -> None:
    assert allow_entry_problem(entry)


def _policy(entry: str) -> bytes:
    return (
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata: {name: p}\n"
        f"spec:\n  scan:\n    allow_globals: [{entry!r}]\n"
    ).encode()


@pytest.mark.parametrize("entry", GOOD + BAD)
def test_cli_and_policy_agree(
    entry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "x.pkl"
    f.write_bytes(pickle.dumps([1, 2]))
    try:
        main(["scan", "--allow", entry, str(f)])
        cli_ok = True
    except SystemExit as e:
        cli_ok = e.code != 2
    try:
        parse_policy(_policy(entry), source="p.yaml", base=tmp_path)
        policy_ok = True
    except PolicyError:
        policy_ok = False
    assert cli_ok == policy_ok == (entry in GOOD), capsys.readouterr().err


def test_a_module_wildcard_allows_its_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "x.pkl"
    f.write_bytes(b"\x80\x02cmylib.models\nNet\n)\x81.")  # mylib.models.Net.__new__(Net)
    with pytest.raises(SystemExit) as e:
        main(["scan", str(f)])
    assert e.value.code == 1
    main(["scan", "--allow", "mylib.*", str(f)])  # exit 0: allowed by project policy
    capsys.readouterr()


def test_a_wildcard_never_reaches_through_an_attribute_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """red-team r3: ("mylib.models", "np.load") resolves to numpy.load through the
    module's own `import numpy as np`: a project wildcard covers names, not paths."""
    f = tmp_path / "x.pkl"
    name = b"np.testing._private.utils.runstring"
    f.write_bytes(
        b"\x80\x04\x8c\x0cmylib.models\x8c" + bytes([len(name)]) + name + b"\x93\x8c\x04true}\x86R."
    )
    with pytest.raises(SystemExit) as e:
        main(["scan", "--allow", "mylib.*", str(f)])
    assert e.value.code == 1
    capsys.readouterr()
