"""The artifact-source protocol and what resolving a reference gives.

A source is one kind of reference (a local path, ``oci://``, ``hf://``, MLflow's
``models:/`` and ``runs:/``). Its module's ``parse(text, settings)`` validates the text
and returns a :class:`Source` bound to that reference and to the settings handed in;
the registry (:func:`mlverify._internal.sources.source_for`) picks the module by scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlverify._internal.errors import UsageError
from mlverify._internal.sources.settings import AdmissionRules
from mlverify._internal.subject import Subject


@dataclass(frozen=True)
class Resolved:
    """A reference made local: where its files are and what is known about it."""

    ref: str  #: as given
    path: Path  #: local file or directory holding the artifact's files
    kind: str  #: "path", "hf", "oci" or "mlflow"
    #: what policies match and reports name: the reference, with what a moving name
    #: (an OCI tag) resolved to
    name: str
    digest: str = ""  #: manifest digest (oci) or commit (hf); "" when there is none
    signatures: tuple[Path, ...] = ()  #: found with the artifact (OCI referrers)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "kind": self.kind, "digest": self.digest, **self.metadata}

    def subject(self) -> Subject:
        return Subject(self.name, self.path, self.digest)


class Source(Protocol):
    """One parsed reference of one kind, with the settings it was given."""

    @property
    def kind(self) -> str:
        """ "path", "oci", "hf" or "mlflow"."""
        ...

    @property
    def reference(self) -> str:
        """The reference as given."""
        ...

    @property
    def copies(self) -> bool:
        """Does it resolve to a private copy (in a temporary directory), not in place?"""
        ...

    @property
    def pin_hint(self) -> str:
        """How to pin this kind of reference, for a refusal's remedy."""
        ...

    @property
    def pinned(self) -> bool:
        """Does the reference name its content by a digest or commit (so that it cannot
        name other bytes tomorrow)?"""
        ...

    def admit(self, rules: AdmissionRules) -> None:
        """Raise :class:`~mlverify._internal.errors.UsageError` unless ``rules`` allow
        reading it (each source calls :func:`admit_kind` first)."""
        ...

    def resolve(self, dest: Path) -> Resolved:
        """Make the artifact local: into ``dest`` (an empty private directory) when
        :attr:`copies`, else in place (``dest`` unused). Every byte fetched is bounded and
        checked against whatever names it (a digest, a blob name, a listed size)."""
        ...


def admit_kind(source: Source, rules: AdmissionRules) -> None:
    """The rules every kind shares: kinds refused outright, kinds admitted pinned only."""
    if source.kind in rules.refused_kinds:
        raise UsageError(f"{source.reference}: {source.kind} references are not accepted here")
    if source.kind in rules.pinned_only and not source.pinned:
        raise UsageError(
            f"{source.reference}: only references pinned to their content are accepted here; "
            f"pin it ({source.pin_hint})"
        )
