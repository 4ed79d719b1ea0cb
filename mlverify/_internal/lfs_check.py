"""Where unfetched Git LFS content may be skipped: skip the pointers, scan the rest.

Apart from :mod:`mlverify._internal.lfs` (which the scanner's pointer format uses) so that
the scanner never imports what imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlverify._internal.lfs import pointers_in, read_pointer

if TYPE_CHECKING:
    from mlverify._internal.scan.model import Finding, Status


def check_besides_pointers(path: Path, note: str) -> tuple[bool, str]:
    """Scan every file at ``path`` but its Git LFS pointers (where unfetched content may
    be skipped): (True, note on what was skipped and scanned) if no file has a finding of
    medium or higher (or content the scanner cannot read), else (False, what was found).

    Only the pointers are unchecked content: the rest is what the developer commits and
    a loader uses, judged as any scan judges it (the policy cannot decide an artifact
    whose content is partly missing; signatures and provenance are checked once fetched).
    """
    from mlverify._internal.artifact import walk_model
    from mlverify._internal.errors import MlverifyError
    from mlverify._internal.scan.engine import scan_file

    pointers = set(pointers_in(path))
    try:  # the files as check walks them: symlinks, FIFOs and devices refused alike
        tree = walk_model(path, require_files=False)
    except MlverifyError as e:
        return False, f"{note}; the other files cannot be checked: {e}"

    def reports() -> Iterator[tuple[str, Sequence[Finding], Status]]:
        for f in sorted([*tree.files, *tree.left_out], key=lambda f: f.name):
            file = Path(f.path)
            if f.name in pointers and read_pointer(file) is not None:
                continue
            rep = scan_file(file, display=str(file))
            yield str(file), rep.findings, rep.status

    return besides_note(note, *judge_besides(reports()))


def judge_besides(
    files: Iterable[tuple[str, Sequence[Finding], Status]],
) -> tuple[int, list[str], int]:
    """Of the files besides the pointers (shown name, findings, status), in name order:
    how many, the first three problems (a finding of medium or higher, or content the
    scanner cannot read), and how many files have one."""
    from mlverify._internal.scan.model import Severity, Status

    scanned = count = 0
    problems: list[str] = []
    for shown, findings, status in files:
        scanned += 1
        bad = [f for f in findings if f.severity >= Severity.MEDIUM]
        if bad or status is Status.UNSUPPORTED:
            count += 1
            if len(problems) < 3:
                worst = bad[0] if bad else findings[0]
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                problems.append(
                    f"{shown}: {worst.severity.name.lower()} {worst.rule_id} {worst.message}{more}"
                )
    return scanned, problems, count


def besides_note(note: str, scanned: int, problems: list[str], count: int) -> tuple[bool, str]:
    """(skipped, the note) from :func:`judge_besides`'s answer."""
    if count:
        shown_problems = "; ".join(problems)
        if count > 3:
            shown_problems += f"; and {count - 3} more file(s)"
        return False, (
            f"{note}; the {scanned} other file(s) were scanned and {count} have "
            f"findings: {shown_problems}"
        )
    if not scanned:
        return True, note
    return True, f"{note}; the {scanned} other file(s) were scanned: no findings"
