"""Build a manifest from a model tree, and compare two manifests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlverify.artifact import ModelFile, ModelTree, walk_model
from mlverify.manifest.hashing import DigestStore, HashJob, hash_all, parse_hash_type
from mlverify.manifest.manifest import (
    DEFAULT_SHARD_SIZE,
    SINGLE_FILE_NAME,
    Manifest,
    Resource,
    Serialization,
)


def shard_bounds(size: int, shard_size: int) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` of a file; an empty file has none."""
    return [(start, min(start + shard_size, size)) for start in range(0, size, shard_size)]


@dataclass(frozen=True)
class _Planned:
    resource_path: str
    file: ModelFile
    start: int | None
    end: int | None


def _plan(files: Iterable[tuple[str, ModelFile]], serialization: Serialization) -> list[_Planned]:
    planned: list[_Planned] = []
    for resource_path, f in files:
        if serialization.method == "files":
            planned.append(_Planned(resource_path, f, None, None))
        else:
            assert serialization.shard_size
            for start, end in shard_bounds(f.size, serialization.shard_size):
                planned.append(_Planned(resource_path, f, start, end))
    return planned


def hash_files(
    files: Iterable[tuple[str, ModelFile]],
    serialization: Serialization,
    cache: DigestStore | None = None,
) -> list[Resource]:
    """Hash ``(resource path, file)`` pairs into resources, in the order given."""
    planned = _plan(files, serialization)
    jobs = [
        HashJob(
            path=p.file.path,
            start=p.start or 0,
            end=p.end,
            size_hint=(p.end - (p.start or 0)) if p.end is not None else p.file.size,
        )
        for p in planned
    ]
    digests = hash_all(
        jobs,
        serialization.hash_type,
        lookup=cache.lookup_for(serialization.hash_type) if cache else None,
        store=cache.store_for(serialization.hash_type) if cache else None,
    )
    return [
        Resource(path=p.resource_path, digest=d, start=p.start, end=p.end)
        for p, d in zip(planned, digests, strict=True)
    ]


def build_manifest(
    tree: ModelTree,
    serialization: Serialization,
    cache: DigestStore | None = None,
) -> Manifest:
    """Hash every file of ``tree`` as ``serialization`` says.

    A single-file model is one resource named ``"."`` (as the reference tool
    names it, so its verifier accepts our signatures); resources are in
    code-point order of their names.
    """
    if tree.is_single_file:
        pairs = [(SINGLE_FILE_NAME, tree.files[0])]
    else:
        pairs = [(f.name, f) for f in tree.files]
    resources = hash_files(pairs, serialization, cache)
    resources.sort(key=lambda r: (r.path, r.start or 0))
    return Manifest(subject_name=tree.name, serialization=serialization, resources=tuple(resources))


@dataclass(frozen=True)
class ManifestDiff:
    """What differs between the signed manifest and the model on disk."""

    missing: tuple[str, ...] = ()  #: signed, not on disk
    extra: tuple[str, ...] = ()  #: on disk, not signed
    changed: tuple[tuple[str, str, str], ...] = ()  #: (name, expected hex, found hex)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def describe(self) -> str:
        parts = []
        if self.changed:
            parts.append(
                "changed: "
                + ", ".join(f"{n} (expected {e}, found {f})" for n, e, f in self.changed)
            )
        if self.missing:
            parts.append("missing: " + ", ".join(self.missing))
        if self.extra:
            parts.append("extra (unsigned): " + ", ".join(self.extra))
        return "; ".join(parts)


def diff_resources(
    expected: Iterable[Resource], found: Iterable[Resource], extra_files: Iterable[str] = ()
) -> ManifestDiff:
    exp = {r.name: r.digest for r in expected}
    got = {r.name: r.digest for r in found}
    missing = sorted(n for n in exp if n not in got)
    extra = sorted({*(n for n in got if n not in exp), *extra_files})
    changed = sorted((n, exp[n], got[n]) for n in exp if n in got and exp[n] != got[n])
    return ManifestDiff(tuple(missing), tuple(extra), tuple(changed))


def file_path(root: Path, name: str) -> Path:
    return root.joinpath(*name.split("/"))


def hash_model(
    path: Path,
    *,
    ignore: Iterable[str] = (),
    allow_symlinks: bool = False,
    method: str = "files",
    hash_type: str = "sha256",
    shard_size: int | None = None,
    use_cache: bool = False,
    extra_excluded: Iterable[Path] = (),
) -> Manifest:
    """Walk and hash the model at ``path``: the one entry point for stage 2."""
    tree = walk_model(
        path, ignore=ignore, allow_symlinks=allow_symlinks, extra_excluded=extra_excluded
    )
    serialization = Serialization(
        method="shards" if method == "shards" else "files",
        hash_type=parse_hash_type(hash_type),
        shard_size=(shard_size or DEFAULT_SHARD_SIZE) if method == "shards" else None,
        allow_symlinks=allow_symlinks,
        ignore_paths=tree.ignore_paths,
    )
    cache: DigestStore | None = None
    if use_cache:
        from mlverify.manifest.cache import DigestCache

        cache = DigestCache()
    return build_manifest(tree, serialization, cache)
