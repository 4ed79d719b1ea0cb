"""Stage 1 of the pipeline: turn a path into the list of files that make a model.

A model is a single regular file or a directory tree. The walk decides which
files belong to the model (every regular file, dotfiles included), which are
left out of hashing (ignore patterns, git metadata, and files that *parse* as
signatures or attestations: a name alone never leaves a file out, and a
directory is never left out for its name) and refuses what cannot be hashed
safely: symlinks (unless allowed and staying inside the root), special files
(a FIFO would hang a reader) and empty models. Every regular file left out is
listed too (``left_out``), so that ``check`` scans every byte of the artifact.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from mlverify._internal.errors import InputError, MlverifyError, Remedy, UsageError
from mlverify._internal.files import name_too_long, too_long
from mlverify._internal.text import short, shown

#: Paths that git tooling adds to a model repository; never part of a model.
GIT_PATHS: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")

#: Default name of the signature file inside a model directory.
DEFAULT_SIGNATURE_NAME = "model.sig"

#: A folder at the model root that holds attestations, by convention.
ATTESTATIONS_DIR = "attestations"

#: File name suffixes of signatures and attestations: never hashed as model content.
SIGNATURE_SUFFIXES: tuple[str, ...] = (".sigstore.json", ".sigstore", ".intoto.jsonl")

_GLOB_CHARS = frozenset("*?[")


class _ModelFileFields(NamedTuple):
    name: str  #: POSIX path relative to the model root ("." never appears here)
    location: str  #: where to read it (a path string)
    size: int


class ModelFile(_ModelFileFields):
    """One regular file of a model: an immutable value (a million-file dataset makes a
    million, so it holds a path string and makes a ``Path`` only when asked)."""

    __slots__ = ()

    def __new__(cls, name: str, path: str | os.PathLike[str], size: int) -> ModelFile:
        return super().__new__(cls, name, os.fspath(path), size)

    @property
    def path(self) -> Path:
        return Path(self.location)


@dataclass(frozen=True)
class ModelTree:
    """The files of a model, in code-point order of their names."""

    root: Path
    is_single_file: bool
    files: tuple[ModelFile, ...]
    #: ignore entries to record in the signature: patterns as given plus the
    #: concrete paths they matched (so a verifier that only knows literal
    #: paths, such as model_signing, skips the same files), sorted.
    ignore_paths: tuple[str, ...]
    allow_symlinks: bool
    #: regular files not hashed (git metadata, ignore patterns, signature and
    #: attestation documents, ``extra_excluded``): scanned by ``check`` all the same
    left_out: tuple[ModelFile, ...] = ()

    @property
    def name(self) -> str:
        """The subject name of the model: directory or file name."""
        return self.root.resolve().name or str(self.root)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


_ATTESTATIONS_PREFIX = ATTESTATIONS_DIR + "/"
_new_file = tuple.__new__


def has_signature_name(name: str) -> bool:
    """Named where signatures and attestations live by convention (a name is not proof)."""
    base = name.rsplit("/", 1)[-1]
    return (
        name == DEFAULT_SIGNATURE_NAME
        or name.startswith(_ATTESTATIONS_PREFIX)
        or base.endswith(SIGNATURE_SUFFIXES)
    )


def parses_as_signature(path: Path, model: Path | None = None) -> bool:
    """Is the file a Sigstore bundle, a DSSE envelope or JSON lines of them? ``model`` (the
    model it sits in) sets the size bound, as for the signature itself: a signature of a
    large dataset is large."""
    from mlverify._internal.attest.intoto import read_attestations

    try:
        return bool(read_attestations(path, artifact=model))
    except MlverifyError:
        return False


def normalize_ignore(pattern: str) -> str:
    """Validate one ignore pattern (relative to the model root) and normalise it."""
    raw = pattern.strip()
    if not raw:
        raise UsageError("empty pattern; give a path relative to the model root", setting="ignore")
    if raw.startswith("/") or raw.startswith("\\"):
        raise UsageError(
            f"{pattern!r} is absolute; ignore patterns are relative to the model root "
            "(e.g. logs/ or '*.tmp')",
            setting="ignore",
        )
    parts = [p for p in PurePosixPath(raw.replace("\\", "/")).parts if p != "."]
    if ".." in parts:
        raise UsageError(
            f"{pattern!r} contains '..'; it must stay inside the model root", setting="ignore"
        )
    if not parts:
        raise UsageError(f"{pattern!r} would ignore the whole model", setting="ignore")
    return "/".join(parts)


class IgnoreRules:
    """Decides whether a relative path is left out of the model."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.literal: set[str] = set()
        self.globs: list[str] = []
        for p in patterns:
            if _GLOB_CHARS & set(p):
                self.globs.append(p)
            else:
                self.literal.add(p)

    def matches(self, name: str) -> bool:
        """A path is ignored if it or one of its parent directories matches."""
        parts = name.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if prefix in self.literal:
                return True
            for g in self.globs:
                if fnmatch.fnmatchcase(prefix, g) or (
                    "/" not in g and fnmatch.fnmatchcase(parts[i - 1], g)
                ):
                    return True
        return False

    def matches_entry(self, name: str, base: str) -> bool:
        """:meth:`matches` for an entry whose parent directories are known not to match."""
        if name in self.literal:
            return True
        for g in self.globs:
            if fnmatch.fnmatchcase(name, g) or ("/" not in g and fnmatch.fnmatchcase(base, g)):
                return True
        return False


def _lstat(path: Path) -> os.stat_result:
    try:
        return path.lstat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or directory; check the model path") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied; make it readable by this user") from None
    except OSError as e:
        if name_too_long(e):
            raise too_long(path) from None
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


def _hf_snapshot_reference(link: Path) -> str:
    """``hf://ORG/NAME@COMMIT`` when ``link`` is a file of a Hugging Face cache snapshot
    (``models--ORG--NAME/snapshots/COMMIT/...`` linking into ``../blobs``), else ""."""
    parts = link.absolute().parts
    for i in range(len(parts) - 3, -1, -1):
        if parts[i + 1 : i + 2] == ("snapshots",) and parts[i].startswith("models--"):
            target = link.resolve()
            if target.parent.name == "blobs" and target.parent.parent.name == parts[i]:
                org_name = parts[i].removeprefix("models--").split("--", 1)
                if len(org_name) == 2 and i + 2 < len(parts):
                    return f"hf://{org_name[0]}/{org_name[1]}@{parts[i + 2]}"
    return ""


def _within(target: Path, root: Path) -> bool:
    try:
        target.relative_to(root)
    except ValueError:
        return False
    return True


def walk_model(
    path: Path,
    *,
    ignore: Iterable[str] = (),
    allow_symlinks: bool = False,
    extra_excluded: Iterable[Path] = (),
    require_files: bool = True,
) -> ModelTree:
    """Enumerate the files of the model at ``path``.

    ``extra_excluded`` names files (e.g. the signature being written) that are
    left out wherever they are. Raises :class:`InputError` for anything that
    cannot be hashed safely.
    """
    patterns = sorted({normalize_ignore(p) for p in ignore})
    rules = IgnoreRules([*GIT_PATHS, *patterns])
    st = _lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise InputError(
            f"{path}: the model path is a symlink; pass the real path ({path.resolve()})"
        )
    excluded_paths = [p for p in extra_excluded if p.exists()]
    excluded = {p.resolve() for p in excluded_paths}
    # compared by file identity: no resolve() per file (a hard link is the same file)
    excluded_ids = {(s.st_dev, s.st_ino) for s in (p.stat() for p in excluded_paths)}

    if stat.S_ISREG(st.st_mode):
        if patterns:
            raise UsageError(
                "ignore patterns apply to model directories, not to a single file", setting="ignore"
            )
        return ModelTree(
            root=path,
            is_single_file=True,
            files=(ModelFile(name=path.name, path=path, size=st.st_size),),
            ignore_paths=GIT_PATHS,
            allow_symlinks=allow_symlinks,
        )
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: not a regular file or directory; give a model file or folder")

    root = path
    real_root = root.resolve()
    files: list[ModelFile] = []
    left_out: list[ModelFile] = []
    ignored_found: set[str] = set()

    def collect_left_out(directory: Path, rel: str) -> None:
        """Regular files under an ignored directory (never following links)."""
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            est = entry.stat(follow_symlinks=False)
            name = f"{rel}/{entry.name}"
            if stat.S_ISDIR(est.st_mode):
                collect_left_out(Path(entry.path), name)
            elif stat.S_ISREG(est.st_mode):
                left_out.append(ModelFile(name=name, path=Path(entry.path), size=est.st_size))

    def visit(directory: Path, rel: str, ancestors: frozenset[tuple[int, int]]) -> None:
        dst = os.stat(directory)
        key = (dst.st_dev, dst.st_ino)
        if key in ancestors:
            raise InputError(
                f"{root / rel}: symlink loop in the model (links back to a parent directory); "
                "remove the link"
            )
        ancestors = ancestors | {key}
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except PermissionError:
            raise InputError(f"{directory}: permission denied listing the directory") from None
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            # the parent directories did not match (or this would not be visited)
            if rules.matches_entry(name, entry.name):
                if not any(name.startswith(g + "/") or name == g for g in GIT_PATHS):
                    ignored_found.add(name)
                est = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(est.st_mode):
                    collect_left_out(Path(entry.path), name)
                elif stat.S_ISREG(est.st_mode):
                    left_out.append(ModelFile(name=name, path=entry.path, size=est.st_size))
                continue
            est = entry.stat(follow_symlinks=False)
            # left out of hashing (still scanned): the files given to leave out, and files
            # named like a signature that parse as one (never a directory, never by name
            # alone; has_signature_name, its last part being the entry's name)
            if stat.S_ISREG(est.st_mode) and (
                (excluded and (est.st_dev, est.st_ino) in excluded_ids)
                or (
                    (
                        entry.name.endswith(SIGNATURE_SUFFIXES)
                        or name == DEFAULT_SIGNATURE_NAME
                        or name.startswith(_ATTESTATIONS_PREFIX)
                    )
                    and parses_as_signature(Path(entry.path), root)
                )
            ):
                ignored_found.add(name)
                left_out.append(ModelFile(name=name, path=entry.path, size=est.st_size))
                continue
            if excluded and stat.S_ISLNK(est.st_mode) and Path(entry.path).resolve() in excluded:
                ignored_found.add(name)
                continue
            if stat.S_ISLNK(est.st_mode):
                entry_path = Path(entry.path)
                hf = _hf_snapshot_reference(entry_path)
                if hf:
                    raise InputError(
                        f"{entry_path}: a Hugging Face cache snapshot (its files link into the "
                        f"cache's blobs); check it by reference: {hf} (every blob is verified "
                        "against its name)"
                    )
                if not allow_symlinks:
                    raise InputError(
                        f"{entry_path}: symlinks are refused by default "
                        f"(points to {shown(short(os.readlink(entry_path)))})",
                        remedy=Remedy(
                            "replace it with the file, or follow links that stay inside the model",
                            "allow_symlinks",
                        ),
                    )
                target = entry_path.resolve()
                if not _within(target, real_root):
                    raise InputError(
                        f"{entry_path}: symlink escapes the model root (points to {target}); "
                        "links must stay inside the model even when links are followed"
                    )
                try:
                    est = target.stat()
                except FileNotFoundError:
                    raise InputError(
                        f"{entry_path}: dangling symlink (target {target} missing)"
                    ) from None
                except OSError as e:
                    if name_too_long(e):  # named by the link, not by where it leads
                        raise too_long(entry_path) from None
                    raise
            if stat.S_ISDIR(est.st_mode):
                visit(Path(entry.path), name, ancestors)
            elif stat.S_ISREG(est.st_mode):  # ModelFile's fields made directly (a str path)
                files.append(_new_file(ModelFile, (name, entry.path, est.st_size)))
            else:
                raise InputError(
                    f"{entry.path}: not a regular file (FIFO, socket or device)",
                    remedy=Remedy("remove it from the model or ignore it", "ignore"),
                )

    try:
        visit(root, "", frozenset())
    except OSError as e:  # a stat, a listing: of a path the system refuses as too long
        if not name_too_long(e):
            raise
        raise too_long(root if e.filename is None else e.filename) from None
    if require_files and not files:
        raise InputError(
            f"{root}: the model has no files to hash (after ignores); "
            "an empty model cannot be signed or verified"
        )
    files.sort(key=lambda f: f.name)
    found = tuple(files)
    # visit refers to itself (a cycle through its closure) and to ``files``: empty
    # the list, so a million ModelFiles are freed with the tree, not at the next GC
    files.clear()
    recorded = sorted({*GIT_PATHS, *patterns, *ignored_found})
    return ModelTree(
        root=root,
        is_single_file=False,
        files=found,
        ignore_paths=tuple(recorded),
        allow_symlinks=allow_symlinks,
        left_out=tuple(sorted(left_out, key=lambda f: f.name)),
    )
