"""``check`` and ``scan`` over references: resolve each one, run the pipeline on the
local copy, and name everything after the reference, never after a temporary path.

Git LFS pointer files are recognised here: an artifact holding any is "not fetched".
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlverify._internal.sources import resolve
from mlverify._internal.sources.base import Resolved
from mlverify._internal.sources.settings import AdmissionRules, SourceSettings
from mlverify._internal.subject import Subject

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.distributed.known import KnownFile
    from mlverify._internal.policy.model import Policy
    from mlverify._internal.scan.model import Limits, ScanReport


def annotate(result: CheckResult, resolved: Resolved) -> CheckResult:
    """The result named after the reference, with the reference's metadata in the evidence."""
    if resolved.kind == "path":
        return result
    evidence = dict(result.evidence)
    evidence["reference"] = resolved.to_json()
    name = resolved.name
    # files of the private copy are named after the reference ("REF#/signatures/...")
    tmp = str(resolved.path.parent)

    def named(text: str) -> str:
        return text.replace(str(resolved.path), name).replace(tmp, f"{name}#")

    evidence = json.loads(named(json.dumps(evidence)))
    decisions = tuple(
        dataclasses.replace(
            d,
            artifact=name,
            reasons=tuple(
                dataclasses.replace(r, message=named(r.message), remedy=named(r.remedy))
                for r in d.reasons
            ),
        )
        for d in result.decisions
    )
    return dataclasses.replace(result, artifact=name, evidence=evidence, decisions=decisions)


def check_ref(
    ref: str | Path,
    policies: Sequence[Policy],
    settings: SourceSettings,
    *,
    rules: AdmissionRules | None = None,
    signatures: Sequence[Path] = (),
    use_cache: bool = False,
    environment: str | None = None,
    list_files: bool = False,
    name: str | None = None,
    known: Mapping[str, KnownFile] | None = None,
    skip_not_fetched: bool = False,
) -> CheckResult | str:
    """Check one reference; a "not fetched" note (str) instead of a result for LFS pointers,
    or, with ``skip_not_fetched``, the result of scanning the files besides the pointers
    (skipped, or not fetched with what was found), made from the very files resolved.
    ``known``: see :func:`~mlverify._internal.check.check_artifact` (a worker's fan-out)."""
    from mlverify._internal.check import CheckResult, check_artifact
    from mlverify._internal.lfs import NotFetched, not_fetched_note

    def not_fetched(
        r: Resolved, names: Sequence[str], besides: tuple[int, list[str], int] | None = None
    ) -> CheckResult | str:
        note = not_fetched_note(r.ref, list(names))
        if not skip_not_fetched:
            return note
        # only the pointers are skipped: the other files are scanned, those resolved (a
        # remote reference's copy, a path as read: never the reference taken as a path),
        # judged from the check's own scan when it has judged them
        from mlverify._internal.lfs_check import besides_note, check_besides_pointers

        if besides is not None:
            skipped, note = besides_note(note, *besides)
        else:
            skipped, note = check_besides_pointers(r.path, note)
        return CheckResult(str(ref), (), {}, "skipped" if skipped else "not-fetched", note)

    with resolve(ref, settings, rules) as r:
        try:
            result = check_artifact(
                r.path,
                policies,
                signatures=list(signatures) or list(r.signatures),
                environment=environment,
                # a private copy has new inodes every time: no digest cache to gain
                use_cache=use_cache and r.kind == "path",
                subject=r.subject() if name is None else Subject(name, r.path, r.digest),
                list_files=list_files,
                known_files=known,
            )
        except NotFetched as e:  # pointers found by the check's own scan
            return not_fetched(r, e.names, e.besides)
        return annotate(result, r)


def check_refs(
    refs: Sequence[str | Path],
    policies: Sequence[Policy],
    settings: SourceSettings,
    *,
    signatures: Sequence[Path] = (),
    use_cache: bool = False,
    skip_not_fetched: bool = False,
    list_files: bool = False,
    rules: AdmissionRules | None = None,
    environment: str | None = None,
    name: str | None = None,
) -> list[CheckResult]:
    """`mlverify check`'s loop: one result for every reference, in order: decided, or
    an error (as data: one failing artifact never hides the others' results), or Git
    LFS content not fetched (its content was not checked: denied, or skipped)."""
    from mlverify._internal.check import CheckResult
    from mlverify._internal.errors import MlverifyError

    results: list[CheckResult] = []
    for ref in refs:
        try:
            out = check_ref(
                ref,
                policies,
                settings,
                rules=rules,
                signatures=signatures,
                use_cache=use_cache,
                environment=environment,
                list_files=list_files,
                name=name,
                skip_not_fetched=skip_not_fetched,
            )
        except MlverifyError as e:
            results.append(CheckResult.failed(str(ref), e))
            continue
        if isinstance(out, str):
            out = CheckResult(str(ref), (), {}, "not-fetched", out)
        results.append(out)
    return results


def scan_refs(
    refs: Sequence[str | Path], settings: SourceSettings, limits: Limits | None = None
) -> list[ScanReport]:
    """`mlverify scan`'s input: every file under each reference, scanned (the scanner
    itself reports Git LFS pointers: format git-lfs-pointer, "fetch the object")."""
    from mlverify._internal.scan.engine import scan_paths

    reports: list[ScanReport] = []
    for ref in refs:
        with resolve(ref, settings) as r:
            for rep in scan_paths([r.path], limits):
                local = Path(rep.path)
                if r.kind != "path":
                    rel = local.relative_to(r.path).as_posix() if local != r.path else ""
                    shown = f"{r.ref.rstrip('/')}/{rel}" if rel else r.ref
                    rep = dataclasses.replace(rep, path=shown)
                reports.append(rep)
    return reports
