"""Where unfetched Git LFS content may be skipped: skip the pointers, scan the rest.

Apart from :mod:`mlverify._internal.lfs` (which the scanner's pointer format uses) so that
the scanner never imports what imports it.
"""

from __future__ import annotations

from pathlib import Path

from mlverify._internal.lfs import pointers_in, read_pointer


def check_besides_pointers(path: Path, note: str) -> tuple[bool, str]:
    """Scan every file at ``path`` but its Git LFS pointers (where unfetched content may
    be skipped): (True, note on what was skipped and scanned) if no file has a finding of
    medium or higher (or content the scanner cannot read), else (False, what was found).

    Only the pointers are unchecked content: the rest is what the developer commits and
    a loader uses, judged as any scan judges it (the policy cannot decide an artifact
    whose content is partly missing; signatures and provenance are checked once fetched).
    """
    from mlverify._internal.scan.engine import iter_files, scan_file
    from mlverify._internal.scan.model import Severity, Status

    pointers = set(pointers_in(path))
    scanned = 0
    problems: list[str] = []
    for file, shown in iter_files([path]):
        rel = file.name if path.is_file() else file.relative_to(path).as_posix()
        if rel in pointers and read_pointer(file) is not None:
            continue
        rep = scan_file(file, display=shown)
        scanned += 1
        bad = [f for f in rep.findings if f.severity >= Severity.MEDIUM]
        if bad or rep.status is Status.UNSUPPORTED:
            worst = bad[0] if bad else rep.findings[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            problems.append(
                f"{shown}: {worst.severity.name.lower()} {worst.rule_id} {worst.message}{more}"
            )
    if problems:
        shown_problems = "; ".join(problems[:3])
        if len(problems) > 3:
            shown_problems += f"; and {len(problems) - 3} more file(s)"
        return False, (
            f"{note}; the {scanned} other file(s) were scanned and {len(problems)} have "
            f"findings: {shown_problems}"
        )
    if not scanned:
        return True, note
    return True, f"{note}; the {scanned} other file(s) were scanned: no findings"
