"""Artifact sources: the one place where what a user names becomes local files.

- a local path (file or directory): itself (:mod:`.local`);
- ``oci://HOST/REPO@sha256:...`` or ``oci://HOST/REPO:TAG``: manifest and layers pulled
  into a temporary directory, layer digests verified, attached signatures fetched
  (:mod:`.oci`);
- ``hf://ORG/NAME[@REV][/PATH]``: a snapshot of the local Hugging Face cache, every blob
  checked against its name (:mod:`.hf`);
- ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``runs:/RUN_ID/PATH``: resolved through
  an MLflow tracking server's REST API, the artifacts downloaded (:mod:`.mlflow`).

One registry (:data:`SCHEMES`) picks the module by scheme; a module's
``parse(text, settings)`` gives a :class:`~.base.Source`. Adding a kind is its module and
one line here. Settings are handed in (:class:`~.settings.SourceSettings`); nothing under
this package reads the environment except ``SourceSettings.from_environment``.

Network: only a remote reference the caller named explicitly is fetched (its registry,
the Hub when ``download`` is set, its tracking server); a local path never causes a
request.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mlverify._internal.errors import UsageError
from mlverify._internal.sources.base import Resolved, Source
from mlverify._internal.sources.settings import AdmissionRules, SourceSettings

__all__ = [
    "SCHEMES",
    "AdmissionRules",
    "Resolved",
    "Source",
    "SourceSettings",
    "is_reference",
    "resolve",
    "source_for",
]

#: reference prefix -> module of this package that parses it (local paths: ``local``)
SCHEMES: dict[str, str] = {
    "oci://": "oci",
    "hf://": "hf",
    "models:/": "mlflow",
    "runs:/": "mlflow",
}

#: "scheme:" at the start of a reference (two letters at least: "C:\\..." is a path)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def is_reference(text: str) -> bool:
    """Does ``text`` name a remote artifact (a registered scheme), not a local path?"""
    return text.startswith(tuple(SCHEMES))


def source_for(text: str | Path, settings: SourceSettings) -> Source:
    """The source for ``text``, parsed (a :class:`UsageError` naming the expected form
    when it does not parse)."""
    ref = str(text)
    for prefix, module in SCHEMES.items():
        if ref.startswith(prefix):
            found: Source = importlib.import_module(f"{__name__}.{module}").parse(ref, settings)
            return found
    if isinstance(text, str) and ("://" in ref or (_SCHEME.match(ref) and ":/" in ref)):
        raise UsageError(
            f"{ref}: unknown reference scheme; use a local path, oci://HOST/REPO@DIGEST, "
            "hf://ORG/NAME[@REV], models:/NAME/VERSION or runs:/RUN_ID/PATH"
        )
    from mlverify._internal.sources import local

    return local.parse(ref, settings)


@contextlib.contextmanager
def resolve(
    ref: str | Path, settings: SourceSettings, rules: AdmissionRules | None = None
) -> Iterator[Resolved]:
    """Make ``ref`` local for the duration of the block, after ``rules`` admitted it
    (a private copy lives in a temporary directory, removed after)."""
    source = source_for(ref, settings)
    if rules is not None:
        source.admit(rules)
    if not source.copies:
        yield source.resolve(Path())
        return
    tmp = Path(tempfile.mkdtemp(prefix="mlverify-ref-"))
    try:
        yield source.resolve(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
