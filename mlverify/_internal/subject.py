"""What an artifact *is*, as opposed to where its bytes were put to be read.

An ``oci://`` or ``hf://`` reference is read from a private temporary copy; the
policy must see the reference itself (``match.paths: ["oci://reg/prod/*"]``), never
the temporary path. A :class:`Subject` carries the reference through the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Subject:
    reference: str  #: what policies match and reports name: a path, oci://..., hf://...
    root: Path  #: the local file or directory holding the bytes
    digest: str = ""  #: manifest digest (oci) or commit (hf); "" for a local path

    @classmethod
    def local(cls, path: Path) -> Subject:
        return cls(str(path), path)
