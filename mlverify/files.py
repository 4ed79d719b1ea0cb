"""Bounded reads at every I/O boundary: small trust files are read whole, up to a limit."""

from __future__ import annotations

from pathlib import Path

from mlverify.errors import InputError, MlverifyError


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 else f"{n} bytes"


def read_bounded(
    path: Path,
    *,
    what: str,
    limit: int,
    missing: type[MlverifyError] = InputError,
    missing_text: str | None = None,
    too_big_text: str = "is this the right file?",
) -> bytes:
    """The bytes of ``path`` (at most ``limit``), or a one-line error naming the file.

    ``missing`` is the error class for a file that does not exist (e.g. "no
    signature found" is a verification outcome, not an input error).
    """
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise missing(f"{path}: {missing_text or what + ' not found; check the path'}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: expected a {what} file, found a directory") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} ({e.strerror})") from None
    if len(data) > limit:
        raise InputError(f"{path}: {what} is larger than {_size(limit)}; {too_big_text}")
    return data
