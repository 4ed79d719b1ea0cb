"""`mlverify policy lint|test`: check policy files before they guard anything."""

from __future__ import annotations

from pathlib import Path

import click

from mlverify._internal.cli import ui
from mlverify._internal.errors import VerificationError
from mlverify._internal.text import shown


@click.group("policy")
def policy_group() -> None:
    """Lint policy files and run their test cases."""


@policy_group.command("lint")
@click.argument("files", nargs=-1, required=True, metavar="FILE|DIR|builtin:NAME...")
def lint_command(files: tuple[str, ...]) -> None:
    """Check policies: schema, unknown keys, CEL compilation against the evidence
    fields, vacuous all() over lists that can be empty, trust files, expired
    exemptions. Exit 1 when any error is found."""
    from mlverify._internal.errors import InputError
    from mlverify._internal.policy.lint import lint_policy
    from mlverify._internal.policy.model import builtin_policy_path, policy_paths

    paths: list[Path] = []
    for ref in files:
        if ref.startswith("builtin:"):
            paths.append(builtin_policy_path(ref))
        elif not Path(ref).exists():
            raise InputError(f"{ref}: no such policy file or directory")
        else:
            paths.extend(policy_paths([Path(ref)]))
    errors = 0
    for path in paths:
        _, problems = lint_policy(path)
        for p in problems:
            click.echo(f"{p.level}: {shown(p.message)}")
        errors += sum(p.level == "error" for p in problems)
        if not problems:
            click.echo(f"ok: {shown(path)}")
    if errors:
        raise VerificationError(f"{errors} policy error(s); fix them before using the policy")


@policy_group.command("test")
@click.argument("directory", type=click.Path(path_type=Path, exists=True, file_okay=False))
def test_command(directory: Path) -> None:
    """Run policy test cases (case files with expected verdicts) under DIRECTORY."""
    from mlverify._internal.policy.lint import run_policy_tests

    results = run_policy_tests(directory)
    for r in results:
        click.echo(
            shown(
                f"{'PASS' if r.passed else 'FAIL'} {r.name}" + ("" if r.passed else f": {r.detail}")
            )
        )
    failed = sum(not r.passed for r in results)
    ui.note(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise VerificationError(f"{failed} policy test case(s) failed")
