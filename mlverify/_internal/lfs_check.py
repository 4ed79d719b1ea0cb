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
    from mlverify._internal.artifact import walk_model
    from mlverify._internal.errors import MlverifyError
    from mlverify._internal.scan.engine import scan_file
    from mlverify._internal.scan.model import Severity, Status

    pointers = set(pointers_in(path))
    scanned = 0
    problems: list[str] = []
    try:  # the files as check walks them: symlinks, FIFOs and devices refused alike
        tree = walk_model(path, require_files=False)
    except MlverifyError as e:
        return False, f"{note}; the other files cannot be checked: {e}"
    for f in sorted([*tree.files, *tree.left_out], key=lambda f: f.name):
        file = Path(f.path)
        if f.name in pointers and read_pointer(file) is not None:
            continue
        shown = str(file)
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
