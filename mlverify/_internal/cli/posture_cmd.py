"""`mlverify posture --html OUT.html INPUTS...`: the posture page over check results."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from mlverify._internal.cli.output import write_atomically
from mlverify._internal.errors import InputError

#: bounds on what the page reads: files, and bytes per file
MAX_INPUTS = 10_000
MAX_INPUT_BYTES = 64 * 1024 * 1024


def input_paths(inputs: tuple[Path, ...]) -> list[Path]:
    """The files named, and the regular ``*.json`` files under directories named (sorted
    per directory; symbolic links to directories are not followed), at most MAX_INPUTS."""
    out: list[Path] = []

    def add(p: Path) -> None:
        out.append(p)
        if len(out) > MAX_INPUTS:
            raise InputError(
                f"{p}: more than {MAX_INPUTS} check results; report on fewer at a time"
            )

    for p in inputs:
        if not p.is_dir():
            add(p)
            continue
        found = []
        for root, dirs, files in os.walk(p):  # followlinks=False: no cycles
            dirs.sort()
            for name in files:
                f = Path(root, name)
                if name.endswith(".json") and f.is_file():
                    found.append(f)
                    if len(found) > MAX_INPUTS:
                        raise InputError(
                            f"{p}: more than {MAX_INPUTS} check results; report on fewer"
                        )
        for f in sorted(found):
            add(f)
    if not out:
        raise InputError(
            ", ".join(map(str, inputs)) + ": no check results (*.json) found; write them "
            "with mlverify check --format json --output FILE"
        )
    return out


def load_docs(paths: list[Path]) -> list[Any]:
    from mlverify._internal.atlas import check_results
    from mlverify._internal.files import read_bounded

    docs = []
    for p in paths:
        raw = read_bounded(
            p,
            what="check result",
            limit=MAX_INPUT_BYTES,
            missing_text="not found; pass check --format json files or directories of them",
            too_big_text="is this a check result?",
        )
        try:
            doc = json.loads(raw)
            check_results(doc)
        except (ValueError, RecursionError) as e:
            raise InputError(
                f"{p}: expected a `mlverify check --format json` document: {e}"
            ) from None
        docs.append(doc)
    return docs


def store_docs(url: str) -> tuple[list[Any], str]:
    """The newest verdicts of the store at ``url`` as check documents, and the page's note
    about what it leaves out."""
    from mlverify._internal.report.verdicts import limit_note, store_documents
    from mlverify._internal.serve.store import open_store

    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise InputError(
            f"{url}: no such verdict store (file not found); name the store the workers write"
        )
    store = open_store(url)
    try:
        docs, more = store_documents(store)
    finally:
        store.close()
    return docs, limit_note(len(docs), more)


@click.command("posture")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--html",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the page here.",
)
@click.option(
    "--policy",
    "policy_refs",
    multiple=True,
    metavar="FILE|DIR|builtin:NAME",
    help="Policies whose ATLAS coverage the page shows [default: $MLVERIFY_POLICY, else "
    "builtin:default].",
)
@click.option(
    "--store",
    "store_url",
    metavar="sqlite:///PATH|postgresql://...",
    help="Draw the page from this verdict store (the newest 1000 verdicts) instead of files.",
)
@click.option("--title", default="mlverify posture", show_default=True)
def posture_command(
    inputs: tuple[Path, ...],
    out: Path,
    policy_refs: tuple[str, ...],
    store_url: str | None,
    title: str,
) -> None:
    """Write a self-contained HTML posture page from `mlverify check --format json`
    results (files, or directories of them) or from a verdict store (--store):
    verdicts over time, denied artifacts with their reasons, top findings by rule, an
    ATLAS heat map (attempted vs blocked) and the policies' ATLAS coverage."""
    from mlverify._internal.cli.bom_cmd import needs
    from mlverify._internal.errors import UsageError

    needs("matplotlib", "matplotlib", "mlverify posture")  # before reading any input
    if (store_url is None) == (not inputs):
        raise UsageError("name check results (files or directories) or --store, one of them")
    if store_url is not None:
        docs, note = store_docs(store_url)
        source = "the store"
    else:
        docs, note = load_docs(input_paths(inputs)), ""
        source = f"{len(docs)} file(s)"
    results = write_posture_page(out, docs, policy_refs, title, note=note)
    click.echo(f"mlverify posture: {out} ({results} result(s) from {source})", err=True)


def write_posture_page(
    out: Path,
    docs: list[Any],
    policy_refs: tuple[str, ...] | list[str],
    title: str,
    *,
    note: str = "",
) -> int:
    """Write the page for these check documents; the number of results it shows."""
    from mlverify._internal.atlas import check_results
    from mlverify._internal.atlas.coverage import coverage_json
    from mlverify._internal.cli.bom_cmd import needs
    from mlverify._internal.policy.model import load_policies
    from mlverify._internal.report.html import render_html

    needs("matplotlib", "matplotlib", "the posture page")
    refs = list(policy_refs) or [os.environ.get("MLVERIFY_POLICY") or "builtin:default"]
    page = render_html(docs, coverage=coverage_json(load_policies(refs)), title=title, note=note)
    write_atomically(out, page.encode())
    return sum(len(check_results(d)) for d in docs)
