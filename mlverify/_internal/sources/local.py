"""Local paths (a model file or directory): read in place.

Admission: with ``roots`` (the service), a path is read only when it lies inside one
of them after symlinks are resolved; a caller never makes us read an arbitrary path.
A local path is never pinned: its bytes can change (the digest in the evidence says
which bytes were judged).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlverify._internal.errors import UsageError
from mlverify._internal.sources.base import Resolved, admit_kind
from mlverify._internal.sources.settings import AdmissionRules, SourceSettings


def require_under(path: Path, roots: Sequence[Path]) -> None:
    """Refuse ``path`` unless it lies (symlinks resolved) inside one of ``roots``."""
    real = os.path.realpath(path)
    for r in roots:
        top = os.path.realpath(r)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return
    raise UsageError(f"{path}: not under a configured model root; refusing to read it")


@dataclass(frozen=True)
class LocalSource:
    reference: str
    kind: str = "path"
    copies: bool = False
    pin_hint: str = "a local path cannot be pinned; publish it to a registry and pin its digest"

    @property
    def pinned(self) -> bool:
        return False

    def admit(self, rules: AdmissionRules) -> None:
        admit_kind(self, rules)
        if rules.roots is not None:
            if not rules.roots:
                raise UsageError(f"{self.reference}: local paths are not accepted here")
            require_under(Path(self.reference), rules.roots)

    def resolve(self, dest: Path) -> Resolved:
        # Git LFS pointers are found by the check's scan, which reads every file anyway
        # (``check_artifact`` raises ``NotFetched``): no walk of the tree here
        path = Path(self.reference)
        return Resolved(self.reference, path, "path", self.reference)


def parse(text: str, settings: SourceSettings) -> LocalSource:
    """A path, lexically normalised: what is read is what policies match (``a/../b`` is
    ``b``, read and named so; never matched as a path under ``a``)."""
    if not text:
        raise UsageError("an empty path: give a model file or directory")
    return LocalSource(os.path.normpath(text))
