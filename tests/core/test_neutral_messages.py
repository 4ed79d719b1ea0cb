"""Library messages name settings neutrally: no command-line flag outside the CLI package
(each front end renders an error's ``setting`` and ``remedy`` its own way)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "mlverify" / "_internal"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
#: flags of other programs a message tells the user to run
OTHERS = {"--list-slots", "--list-objects"}


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def test_no_cli_flag_in_library_messages() -> None:
    found = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("cli/") or rel == "report/text.py":  # the terminal's own renderer
            continue
        for line, text in _strings(ast.parse(path.read_text())):
            flags = set(FLAG.findall(text)) - OTHERS
            if flags:
                found.append(f"{rel}:{line}: {sorted(flags)}")
    assert not found, "\n".join(found)
