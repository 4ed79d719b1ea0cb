"""Writing reports and signature files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mlverify._internal.errors import InputError


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename, never half a file."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        if not directory.is_dir():
            raise InputError(
                f"{path}: directory {directory} does not exist; create it or write elsewhere"
            ) from None
        why = "permission denied" if isinstance(e, PermissionError) else e.strerror or str(e)
        raise InputError(
            f"{path}: cannot write in {directory} ({why}); choose a writable directory"
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise InputError(f"{path}: cannot write ({e.strerror})") from None
