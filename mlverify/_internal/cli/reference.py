"""A command's ``PATH`` argument that also takes remote references (``oci://``,
``hf://``, ``models:/``, ``runs:/``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def reference_path_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The reference is made local for the duration of the command, which sees a
    ``Path`` (and, when it takes ``signature_paths`` and none were given, the
    signatures found with the reference)."""
    from mlverify._internal.sources import SCHEMES

    @functools.wraps(fn)
    def wrapper(*args: Any, path: str, **kwargs: Any) -> Any:
        from mlverify._internal.sources import SourceSettings, is_reference, resolve

        if not is_reference(path):
            return fn(*args, path=Path(path), **kwargs)
        click.get_current_context().meta["mlverify.reference"] = path  # shown to the user
        with resolve(path, SourceSettings.from_environment()) as r:
            if "signature_paths" in kwargs and not kwargs["signature_paths"] and r.signatures:
                kwargs["signature_paths"] = tuple(r.signatures)
            return fn(*args, path=r.path, **kwargs)

    metavar = "|".join(["PATH", *(f"{s}REF" for s in SCHEMES if s.endswith("://"))])
    return click.argument("path", metavar=metavar)(wrapper)
