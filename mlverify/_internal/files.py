"""Bounded reads at every I/O boundary: small trust files are read whole, up to a limit."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from mlverify._internal.errors import InputError, MlverifyError


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
        # O_NONBLOCK: opening a FIFO does not wait for a writer (reads then block as usual)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise missing(f"{path}: {missing_text or what + ' not found; check the path'}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: expected a {what} file, found a directory") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} ({e.strerror})") from None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{path}: expected a {what} file, found a directory")
        if not stat.S_ISREG(st.st_mode):
            os.set_blocking(fd, True)  # a pipe (--key <(...)): read as before, bounded
        elif st.st_size > limit:
            # refused from its size, before a byte is read
            raise InputError(f"{path}: {what} is larger than {_size(limit)}; {too_big_text}")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise InputError(f"{path}: cannot read the {what} ({e.strerror})") from None
    if len(data) > limit:
        raise InputError(f"{path}: {what} is larger than {_size(limit)}; {too_big_text}")
    return data


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


#: the longest name of one file or directory (bytes), and of a path a system call takes
#: (bytes, with its terminating NUL), on Linux and most systems
NAME_MAX = 255
PATH_MAX = 4096


def too_long(path: str | os.PathLike[str]) -> InputError:
    """The one line for a path the system refuses as too long (ENAMETOOLONG): what is too
    long (the whole path, or a name in it, or what a symlink on it leads to) and what to do.
    ``path`` is shown escaped and, when huge, shortened."""
    from mlverify._internal.text import short, shown

    raw = os.fsencode(path)
    longest = max((len(part) for part in raw.split(b"/")), default=0)
    if longest > NAME_MAX:
        what = f"a name in it has {longest} bytes, a name may have at most {NAME_MAX}"
    elif len(raw) >= PATH_MAX:
        what = f"it has {len(raw)} bytes, a path may have at most {PATH_MAX - 1}"
    else:
        what = "a symlink on it leads to a path longer than the system allows"
    return InputError(
        f"{shown(short(os.fsdecode(raw)))}: path too long to open ({what}): what opens it "
        "by this path fails, and it was not read; expected a model whose paths fit: shorten "
        "or flatten its directory names, or move it closer to the file system root"
    )


def name_too_long(e: OSError) -> bool:
    """Is ``e`` the system refusing a path or name as too long?"""
    return e.errno == errno.ENAMETOOLONG
