"""Git LFS pointer files: recognised, never scanned or checked as models.

A repository whose model files live in Git LFS holds, until ``git lfs pull``, small
text files (spec v1) in their place. Such a file is not a model and not an error:
``scan`` and ``check`` report it as "not fetched".
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

#: git-lfs never writes pointers larger than this (the spec allows up to 1024 bytes).
MAX_POINTER_SIZE = 1024
_PREFIX = b"version https://git-lfs.github.com/spec/v1\n"
_OID = re.compile(rb"^oid sha256:([0-9a-f]{64})$", re.MULTILINE)
_SIZE = re.compile(rb"^size ([0-9]+)$", re.MULTILINE)


@dataclass(frozen=True)
class LfsPointer:
    """A parsed pointer: the content's sha256 and size as recorded by git-lfs."""

    oid: str
    size: int


def parse_pointer(data: bytes) -> LfsPointer | None:
    """The pointer in ``data``, or None if these bytes are not a Git LFS pointer."""
    if len(data) > MAX_POINTER_SIZE or not data.startswith(_PREFIX):
        return None
    oid = _OID.search(data)
    size = _SIZE.search(data)
    if oid is None or size is None:
        return None
    return LfsPointer(oid.group(1).decode(), int(size.group(1)))


def read_pointer(path: Path) -> LfsPointer | None:
    """The pointer stored at ``path`` (a regular file), else None; never raises on I/O."""
    try:
        st = os.stat(path)
        if not os.path.isfile(path) or st.st_size > MAX_POINTER_SIZE:
            return None
        with open(path, "rb") as f:
            return parse_pointer(f.read(MAX_POINTER_SIZE + 1))
    except OSError:
        return None


def pointers_in(path: Path) -> list[str]:
    """Names (relative, POSIX; the file name for a single file) of LFS pointers at ``path``.

    One listing per directory, one ``lstat`` per file, and a read only of regular
    files small enough to be pointers (a million-file dataset is walked once more,
    not opened); symlinks and ``.git`` are skipped; os.walk's order (a directory's
    files, sorted, then its subdirectories, sorted).
    """
    if path.is_file():
        return [path.name] if read_pointer(path) else []
    found: list[str] = []
    stack: list[tuple[str, str]] = [(os.fspath(path), "")]
    while stack:
        directory, rel = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for e in entries:
            try:
                if e.is_dir():  # as os.walk: links to directories are listed, not entered
                    if e.name != ".git" and not e.is_symlink():
                        subdirs.append(e)
                    continue
                if e.is_symlink():
                    continue
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            small = stat.S_ISREG(st.st_mode) and st.st_size <= MAX_POINTER_SIZE
            if small and read_pointer(Path(e.path)) is not None:
                found.append(f"{rel}{e.name}")
        stack.extend((e.path, f"{rel}{e.name}/") for e in reversed(subdirs))
    return found


def not_fetched_note(path: str, names: list[str]) -> str:
    """The one-line note shown for an artifact (or file) whose content is not fetched."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    what = (
        "is a Git LFS pointer" if names == [Path(path).name] else f"has Git LFS pointers ({shown})"
    )
    return f"{path}: not fetched: {what}; run 'git lfs pull' to check the content"
