"""Git LFS pointer files: recognised exactly, reported as "not fetched".

A repository whose model files live in Git LFS holds, until ``git lfs pull``, small
text files (spec v1) in their place. Only a file that is exactly such a pointer (the
grammar git-lfs writes: ``version``, ``oid sha256:<64 hex>``, ``size <digits>``, one key
per line in this order, LF line ends, nothing else, at most 1024 bytes) counts as one;
any other bytes are content and are scanned. ``check`` denies an artifact holding
pointers, except where unfetched content may be skipped (a commit hook,
``--allow-not-fetched``): there only the pointer files are skipped, every other file of
the artifact is still scanned, and findings in them deny it
(``mlverify._internal.lfs_check``).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlverify._internal.errors import InputError

#: git-lfs never writes pointers larger than this (the spec allows up to 1024 bytes).
MAX_POINTER_SIZE = 1024
#: the whole pointer, as git-lfs writes it (no extensions, no other keys, no CR)
_POINTER = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\n"
    rb"oid sha256:([0-9a-f]{64})\n"
    rb"size (0|[1-9][0-9]{0,18})\n"
)


@dataclass(frozen=True)
class LfsPointer:
    """A parsed pointer: the content's sha256 and size as recorded by git-lfs."""

    oid: str
    size: int


def parse_pointer(data: bytes) -> LfsPointer | None:
    """The pointer in ``data``, or None if these bytes are not a Git LFS pointer."""
    if len(data) > MAX_POINTER_SIZE:
        return None
    m = _POINTER.fullmatch(data)
    if m is None or int(m.group(2)) >= 1 << 63:  # git-lfs reads the size as an int64
        return None
    return LfsPointer(m.group(1).decode(), int(m.group(2)))


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


class NotFetched(InputError):
    """The artifact holds Git LFS pointers (``names``): its content is not here to check."""

    code = "not-fetched"

    def __init__(
        self, path: str, names: Sequence[str], besides: tuple[int, list[str], int] | None = None
    ) -> None:
        self.names = tuple(names)
        #: the judgment of the other files from the check's own scan
        #: (``lfs_check.judge_besides``), when it judged as the scan besides pointers does
        self.besides = besides
        super().__init__(not_fetched_note(path, list(self.names)))


def pointers_scanned(
    formats: Mapping[int, Sequence[str]], names: Sequence[str], locations: Sequence[str]
) -> list[str]:
    """The names of the scanned files that are Git LFS pointers, from their scan's formats
    (``formats[i]`` of file ``i``): the scanner reports a pointer wherever one is, inside
    an archive too, so each file it reports one in is confirmed to be exactly a pointer
    itself (a few small files read again); files under a ``.git`` directory are Git's
    own, as in :func:`pointers_in`."""
    found = []
    for i in sorted(formats):
        if "git-lfs-pointer" not in formats[i] or ".git" in names[i].split("/")[:-1]:
            continue
        if read_pointer(Path(locations[i])) is not None:
            found.append(names[i])
    return found


def not_fetched_note(path: str, names: list[str]) -> str:
    """The one-line note shown for an artifact (or file) whose content is not fetched."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    what = (
        "is a Git LFS pointer" if names == [Path(path).name] else f"has Git LFS pointers ({shown})"
    )
    return f"{path}: not fetched: {what}; run 'git lfs pull' to check the content"
