"""`mlverify report`: render saved `check --format json` results in any report format.

CI runs the check once and renders it several ways: SARIF for code scanning, a
Markdown summary for ``$GITHUB_STEP_SUMMARY`` and a verdict for the exit code.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlverify._internal.errors import InputError, UsageError
from mlverify._internal.report import ReportFormat

_FAIL = ("deny", "never")


@click.command("report")
@click.argument(
    "results_file", metavar="RESULTS.json", required=False, type=click.Path(path_type=Path)
)
@click.option(
    "--sarif", type=click.Path(dir_okay=False, path_type=Path), help="Write SARIF 2.1.0 here."
)
@click.option(
    "--markdown",
    type=click.Path(dir_okay=False, path_type=Path),
    help='Append a Markdown summary here (e.g. "$GITHUB_STEP_SUMMARY").',
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the posture page here (self-contained HTML: verdicts, reasons, findings, "
    "the ATLAS heat map and the default policy's coverage; `mlverify posture` takes many "
    "results and --policy).",
)
@click.option(
    "--store",
    "store_url",
    metavar="sqlite:///PATH|postgresql://...",
    help="With --html: the page from this verdict store (the newest 1000 verdicts) instead "
    "of RESULTS.json.",
)
@click.option("--title", default="mlverify check", show_default=True, help="Summary heading.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(ReportFormat.names()),
    default="text",
    show_default=True,
    help="What to print on stdout (the verdicts as text, or the same document in any format).",
)
@click.option(
    "--fail-on",
    type=click.Choice(_FAIL),
    default="deny",
    show_default=True,
    help="deny: exit 1 when any artifact is denied; never: always exit 0 (report only).",
)
def report_command(
    results_file: Path,
    sarif: Path | None,
    markdown: Path | None,
    html: Path | None,
    store_url: str | None,
    title: str,
    output_format: str,
    fail_on: str,
) -> None:
    """Render RESULTS.json (written by `mlverify check --format json`) and print the
    text verdicts. Exit 1 if any artifact was denied (unless --fail-on never).

    With --store URL --html PAGE: the posture page of a verdict store instead (exit 0)."""
    from mlverify._internal.check import CheckResult
    from mlverify._internal.cli.output import write_atomically
    from mlverify._internal.files import read_bounded
    from mlverify._internal.report import RenderOptions, reporter

    if store_url is not None:
        _store_page(results_file, html, sarif, markdown, store_url, title)
        return
    if results_file is None:
        raise UsageError("name RESULTS.json (written by check --format json), or --store")
    data = read_bounded(results_file, what="results file", limit=256 << 20)
    try:
        doc = json.loads(data)
        results = [CheckResult.from_json(r) for r in doc["results"]]
    except UnicodeDecodeError:
        raise InputError(
            f"{results_file}: not text (not UTF-8); expected the JSON written by "
            "`mlverify check --format json`"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        what = "not JSON" if isinstance(e, ValueError) else f"missing or wrong {type(e).__name__}"
        raise InputError(
            f"{results_file}: not the output of `mlverify check --format json` ({what}: "
            f"{str(e)[:80]}); run check with --format json --output FILE"
        ) from None
    options = RenderOptions(title=title)
    if html is not None:
        from mlverify._internal.cli.posture_cmd import write_posture_page

        write_posture_page(html, [doc], (), title)
    if sarif is not None:
        write_atomically(sarif, reporter(ReportFormat.SARIF).check(results, options).encode())
    if markdown is not None:
        summary = reporter(ReportFormat.MARKDOWN).check(results, options)
        try:
            with open(markdown, "a", encoding="utf-8") as f:
                f.write(summary)
        except OSError as e:
            raise InputError(f"{markdown}: cannot write the summary ({e.strerror})") from None
    click.echo(reporter(output_format).check(results, options), nl=False)
    code = max((r.exit_code for r in results), default=0)
    denied = sum(1 for r in results if r.exit_code)
    click.echo(f"mlverify report: {len(results) - denied} allowed, {denied} denied", err=True)
    if code and fail_on == "deny":
        raise SystemExit(code)


def _store_page(
    results_file: Path | None,
    html: Path | None,
    sarif: Path | None,
    markdown: Path | None,
    store_url: str,
    title: str,
) -> None:
    """``report --store URL --html PAGE``: the posture page of a verdict store (a report
    over what was decided, not a gate: exit 0)."""
    from mlverify._internal.cli.posture_cmd import store_docs, write_posture_page

    if html is None or results_file is not None or sarif is not None or markdown is not None:
        raise UsageError(
            "--store renders the posture page only: give --html PAGE, and no RESULTS.json, "
            "--sarif or --markdown"
        )
    docs, note = store_docs(store_url)
    shown = write_posture_page(html, docs, (), title, note=note)
    click.echo(f"mlverify report: {html} ({shown} verdict(s) from the store)", err=True)
