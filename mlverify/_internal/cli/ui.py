"""How the CLI talks to a person: reports on stdout, notes on stderr, colour and progress
only on a terminal.

- ``--quiet`` drops notes and summaries (errors and the report itself stay);
  ``--verbose`` adds details (per-file timings, which signatures were tried).
- Colour only when the stream is a terminal, ``NO_COLOR`` is unset and ``TERM`` is not
  ``dumb``; never in pipes, files or CI logs.
- A progress bar (rich, imported only when one is shown) on a terminal, for work that has
  run for more than about a second; never in pipes, CI (``CI`` set) or with ``--quiet``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import click

from mlverify._internal import progress


@dataclass
class _Settings:
    quiet: bool = False
    verbose: bool = False


SETTINGS = _Settings()

#: the first word of a report line -> its colour
_VERDICT_COLOURS = {
    "ALLOWED": "green",
    "DENIED": "red",
    "ERROR": "red",
    "SKIPPED": "yellow",
    "deny": "red",
    "warn": "yellow",
}


def configure(*, quiet: bool, verbose: bool) -> None:
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose cannot be used together")
    SETTINGS.quiet, SETTINGS.verbose = quiet, verbose


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def colour_enabled(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


def _colourise(text: str) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        word = stripped.split(" ", 1)[0].rstrip(":") if stripped else ""
        colour = _VERDICT_COLOURS.get(word)
        if colour:
            indent = line[: len(line) - len(stripped)]
            rest = stripped[len(word) :]
            line = indent + click.style(word, fg=colour, bold=word.isupper()) + rest
        out.append(line)
    return "".join(out)


def report(text: str) -> None:
    """The command's result, on stdout: verdict words coloured on a terminal."""
    _end_progress()
    stream = sys.stdout
    colour = colour_enabled(stream)
    click.echo(_colourise(text) if colour else text, nl=False, color=colour)


def note(text: str) -> None:
    """A summary or remark on stderr; dropped by ``--quiet``."""
    if not SETTINGS.quiet:
        _end_progress()
        click.echo(text, err=True, color=False)


def detail(text: str) -> None:
    """Extra detail on stderr, shown only with ``--verbose``."""
    if SETTINGS.verbose:
        click.echo(text, err=True, color=False)


#: the bar on screen, if any: output ends it first (a bar never overwrites a report line)
_ACTIVE: list[_Bar] = []


def _end_progress() -> None:
    for bar in _ACTIVE:
        bar.close()


def no_progress() -> None:
    """A long-running service: no bar, ever (its work is requests, its output logs)."""
    _end_progress()


def _progress_wanted() -> bool:
    if SETTINGS.quiet or os.environ.get("CI") or os.environ.get("MLVERIFY_NO_PROGRESS"):
        return False
    return is_terminal(sys.stderr) and os.environ.get("TERM") != "dumb"


class _Bar(progress.Reporter):
    """A rich progress bar that appears only after ``delay`` seconds of work."""

    def __init__(self, description: str, total: int | None, delay: float) -> None:
        self._description = description
        self._total = total
        self._start = time.monotonic()
        self._delay = delay
        self._done = 0
        self._lock = threading.Lock()
        self._bar: Any = None
        self._task: Any = None
        self._closed = False

    def advance(self, amount: int) -> None:
        with self._lock:
            self._done += amount
            if self._bar is None:
                if self._closed or SETTINGS.quiet:
                    return
                if time.monotonic() - self._start < self._delay:
                    return
                self._show()
            self._bar.update(self._task, completed=self._done)

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True, no_color=not colour_enabled(sys.stderr)),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(self._description, total=self._total)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.stop()
                self._bar = None


@contextmanager
def progress_bar(description: str, total: int | None, *, delay: float = 1.0) -> Iterator[None]:
    """Show progress of the work inside the block (bytes reported through
    :func:`mlverify._internal.progress.advance`) on a terminal, once it runs past ``delay``."""
    if not _progress_wanted():
        yield
        return
    delay = float(os.environ.get("MLVERIFY_PROGRESS_DELAY", delay))  # tests: 0
    bar = _Bar(description, total, delay)
    _ACTIVE.append(bar)
    with progress.reporting(bar):
        try:
            yield
        finally:
            bar.close()
            _ACTIVE.remove(bar)
