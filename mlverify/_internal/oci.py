"""Moved to :mod:`mlverify._internal.sources.oci` (issue 13). This module keeps the old
names, with the old signatures, for importers outside the sources' owners (the service
and its tests) until they import the new place; it adds nothing. Settings come from the
environment here, as they did before the move."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from mlverify._internal.sources import oci as _oci
from mlverify._internal.sources.base import Resolved
from mlverify._internal.sources.oci import _Redirects, attach, is_internal, parse_ref
from mlverify._internal.sources.settings import OciSettings, SourceSettings

__all__ = [
    "Registry",
    "_Redirects",
    "attach",
    "current_referrers",
    "is_internal",
    "parse_ref",
    "pull",
    "push",
]


def _settings(insecure_http: bool = False, authorization: str | None = None) -> OciSettings:
    oci = SourceSettings.from_environment().oci
    return dataclasses.replace(
        oci, plain_http=oci.plain_http or insecure_http, authorization=authorization
    )


def Registry(
    host: str,
    *,
    insecure_http: bool = False,
    timeout: float = 30,
    authorization: str | None = None,
) -> _oci.Registry:
    return _oci.Registry(host, _settings(insecure_http, authorization), timeout=timeout)


def pull(
    text: str, dest: Path, *, insecure_http: bool = False, authorization: str | None = None
) -> Resolved:
    return _oci.pull(text, dest, _settings(insecure_http, authorization))


def push(
    model: Path,
    text: str,
    *,
    signature: Path | None = None,
    attestations: Sequence[Path] = (),
    insecure_http: bool = False,
) -> tuple[str, str]:
    return _oci.push(
        model, text, _settings(insecure_http), signature=signature, attestations=attestations
    )


def current_referrers(
    host: str, repo: str, digest: str, *, insecure_http: bool = False
) -> list[str]:
    return _oci.current_referrers(host, repo, digest, _settings(insecure_http))
