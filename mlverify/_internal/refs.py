"""Artifact references: the one place where ``check``, ``verify``, ``scan`` and
``serve`` turn what a user names into local files.

- a local path (file or directory): itself;
- ``hf://ORG/NAME[@REV][/PATH]``: a snapshot of the local Hugging Face cache, every
  blob checked against its name first (offline; see :mod:`mlverify._internal.hfcache`);
- ``oci://HOST/REPO@sha256:...`` or ``oci://HOST/REPO:TAG``: manifest and layers
  pulled into a temporary directory, layer digests verified, signatures attached to
  the manifest fetched too (see :mod:`mlverify._internal.oci`).

Git LFS pointer files are recognised here: an artifact holding any is "not fetched".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlverify._internal.errors import UsageError
from mlverify._internal.lfs import not_fetched_note, pointers_in
from mlverify._internal.subject import Subject

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.policy.model import Policy
    from mlverify._internal.scan.model import Limits, ScanReport

SCHEMES = ("oci://", "hf://")


@dataclass
class Resolved:
    """A reference made local: where its files are and what is known about it."""

    ref: str  #: as given
    path: Path  #: local file or directory holding the artifact's files
    kind: str  #: "path", "hf" or "oci"
    digest: str = ""  #: manifest digest (oci) or commit (hf); "" for a path
    signatures: list[Path] = field(default_factory=list)  #: found with the artifact
    metadata: dict[str, Any] = field(default_factory=dict)
    not_fetched: list[str] = field(default_factory=list)  #: Git LFS pointers found

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "kind": self.kind, "digest": self.digest, **self.metadata}

    @property
    def name(self) -> str:
        """The reference as reported and matched: a tag is named with what it resolved to."""
        if self.kind == "oci" and "@" not in self.ref:
            return f"{self.ref}@{self.digest}"
        return self.ref

    def subject(self) -> Subject:
        return Subject(self.name, self.path, self.digest)


def is_reference(text: str) -> bool:
    return text.startswith(SCHEMES)


@contextlib.contextmanager
def resolve(
    ref: str | Path,
    *,
    roots: Sequence[Path] | None = None,
    insecure_http: bool = False,
    authorization: str | None = None,
) -> Iterator[Resolved]:
    """Make ``ref`` local for the duration of the block (temporary files are removed after).

    ``roots``: when given (the service), local paths are accepted only inside one of
    them, after resolving symlinks; a caller never makes us read an arbitrary path.
    """
    text = str(ref)
    if text.startswith(SCHEMES):
        tmp = Path(tempfile.mkdtemp(prefix="mlverify-ref-"))
        try:
            if text.startswith("hf://"):
                from mlverify._internal.hfcache import resolve_hf

                yield resolve_hf(text, tmp)
            else:
                from mlverify._internal.oci import pull

                yield pull(text, tmp, insecure_http=insecure_http, authorization=authorization)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    if "://" in text:
        raise UsageError(
            f"{text}: unknown reference scheme; use a local path, oci://HOST/REPO@DIGEST "
            "or hf://ORG/NAME[@REV]"
        )
    path = Path(text)
    if roots is not None:
        require_under(path, roots)
    yield Resolved(text, path, "path", not_fetched=pointers_in(path) if path.exists() else [])


def require_under(path: Path, roots: Sequence[Path]) -> None:
    """Refuse ``path`` unless it lies (symlinks resolved) inside one of ``roots``."""
    real = path.resolve()
    if not any(real == r.resolve() or r.resolve() in real.parents for r in roots):
        raise UsageError(f"{path}: not under a configured model root; refusing to read it")


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
    *,
    signatures: Sequence[Path] = (),
    use_cache: bool = False,
    environment: str | None = None,
    roots: Sequence[Path] | None = None,
    insecure_http: bool = False,
    authorization: str | None = None,
) -> CheckResult | str:
    """Check one reference; a "not fetched" note (str) instead of a result for LFS pointers."""
    from mlverify._internal.check import check_artifact

    with resolve(ref, roots=roots, insecure_http=insecure_http, authorization=authorization) as r:
        if r.not_fetched:
            return not_fetched_note(r.ref, r.not_fetched)
        result = check_artifact(
            r.path,
            policies,
            signatures=list(signatures) or r.signatures,
            environment=environment,
            # a private copy has new inodes every time: no digest cache to gain
            use_cache=use_cache and r.kind == "path",
            subject=r.subject(),
        )
        return annotate(result, r)


def check_refs(
    refs: Sequence[str | Path],
    policies: Sequence[Policy],
    *,
    signatures: Sequence[Path] = (),
    use_cache: bool = False,
    skip_not_fetched: bool = False,
) -> list[CheckResult]:
    """`mlverify check`'s loop: one result for every reference, in order: decided, or
    an error (as data: one failing artifact never hides the others' results), or Git
    LFS content not fetched (its content was not checked: denied, or skipped)."""
    from mlverify._internal.check import CheckResult
    from mlverify._internal.errors import MlverifyError

    results: list[CheckResult] = []
    for ref in refs:
        try:
            out = check_ref(ref, policies, signatures=signatures, use_cache=use_cache)
        except MlverifyError as e:
            results.append(CheckResult.failed(str(ref), e))
            continue
        if isinstance(out, str):
            skipped = False
            if skip_not_fetched:  # only the pointers are skipped: the other files are scanned
                from mlverify._internal.lfs_check import check_besides_pointers

                skipped, out = check_besides_pointers(Path(str(ref)), out)
            results.append(
                CheckResult(str(ref), (), {}, "skipped" if skipped else "not-fetched", out)
            )
        else:
            results.append(out)
    return results


def scan_refs(refs: Sequence[str | Path], limits: Limits | None = None) -> list[ScanReport]:
    """`mlverify scan`'s input: every file under each reference, scanned (the scanner
    itself reports Git LFS pointers: format git-lfs-pointer, "fetch the object")."""
    from mlverify._internal.scan.engine import scan_paths

    reports: list[ScanReport] = []
    for ref in refs:
        with resolve(ref) as r:
            for rep in scan_paths([r.path], limits):
                local = Path(rep.path)
                if r.kind != "path":
                    rel = local.relative_to(r.path).as_posix() if local != r.path else ""
                    shown = f"{r.ref.rstrip('/')}/{rel}" if rel else r.ref
                    rep = dataclasses.replace(rep, path=shown)
                reports.append(rep)
    return reports


def reference_path_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command's ``PATH`` argument that also takes ``oci://`` and ``hf://``: the
    reference is made local for the duration of the command, which sees a ``Path``
    (and, when it takes ``signature_paths`` and none were given, the signatures
    found with the reference)."""
    import functools

    import click

    @functools.wraps(fn)
    def wrapper(*args: Any, path: str, **kwargs: Any) -> Any:
        if not is_reference(path):
            return fn(*args, path=Path(path), **kwargs)
        click.get_current_context().meta["mlverify.reference"] = path  # shown to the user
        with resolve(path) as r:
            if "signature_paths" in kwargs and not kwargs["signature_paths"] and r.signatures:
                kwargs["signature_paths"] = tuple(r.signatures)
            return fn(*args, path=r.path, **kwargs)

    return click.argument("path", metavar="PATH|oci://REF|hf://REF")(wrapper)
