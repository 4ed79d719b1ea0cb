"""Moved to :mod:`mlverify._internal.sources` (issue 13). This module keeps the old
names, with the old signatures, for importers outside the sources' owners (the service,
``verify``) until they import the new places; it adds nothing. Settings come from the
environment here, as they did before the move."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlverify._internal.cli.reference import reference_path_argument
from mlverify._internal.sources import is_reference
from mlverify._internal.sources.local import require_under
from mlverify._internal.sources.run import annotate
from mlverify._internal.sources.settings import AdmissionRules, SourceSettings

if TYPE_CHECKING:
    from mlverify._internal.check import CheckResult
    from mlverify._internal.policy.model import Policy

__all__ = [
    "annotate",
    "check_ref",
    "check_refs",
    "is_reference",
    "reference_path_argument",
    "require_under",
]


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
    """:func:`mlverify._internal.sources.run.check_ref` with the old keyword arguments (the
    service's: MLflow references are refused, as before the move)."""
    from mlverify._internal.sources.run import check_ref as run

    settings = SourceSettings.from_environment()
    oci = dataclasses.replace(
        settings.oci,
        plain_http=settings.oci.plain_http or insecure_http,
        authorization=authorization,
    )
    return run(
        ref,
        policies,
        dataclasses.replace(settings, oci=oci),
        # the service's callers admit oci://, hf:// and paths themselves; MLflow references
        # are not served (yet): never fetched through here
        rules=AdmissionRules(
            roots=tuple(roots) if roots is not None else None,
            refused_kinds=frozenset({"mlflow"}),
        ),
        signatures=signatures,
        use_cache=use_cache,
        environment=environment,
    )


def check_refs(
    refs: Sequence[str | Path],
    policies: Sequence[Policy],
    *,
    signatures: Sequence[Path] = (),
    use_cache: bool = False,
    skip_not_fetched: bool = False,
) -> list[CheckResult]:
    """:func:`mlverify._internal.sources.run.check_refs` with the old keyword arguments."""
    from mlverify._internal.sources.run import check_refs as run

    return run(
        refs,
        policies,
        SourceSettings.from_environment(),
        signatures=signatures,
        use_cache=use_cache,
        skip_not_fetched=skip_not_fetched,
    )
