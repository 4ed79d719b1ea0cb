"""Build a manifest from a model tree, and compare two manifests."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from mlverify._internal.artifact import ModelFile, ModelTree, walk_model
from mlverify._internal.manifest.hashing import (
    DIGEST_SIZES,
    DigestStore,
    HashJob,
    hash_all,
    hash_whole_files,
    parse_hash_type,
)
from mlverify._internal.manifest.manifest import (
    DEFAULT_SHARD_SIZE,
    SINGLE_FILE_NAME,
    Manifest,
    Resource,
    ResourceList,
    Serialization,
)


def shard_bounds(size: int, shard_size: int) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` of a file; an empty file has none."""
    return [(start, min(start + shard_size, size)) for start in range(0, size, shard_size)]


def hash_files(
    files: Iterable[tuple[str, ModelFile]],
    serialization: Serialization,
    cache: DigestStore | None = None,
) -> ResourceList:
    """Hash ``(resource path, file)`` pairs into resources, in the order given."""
    paths: list[str] = []
    width = DIGEST_SIZES[serialization.hash_type]
    lookup_many = getattr(cache, "lookup_many", None)
    if serialization.method == "files" and (cache is None or lookup_many is not None):
        # the dataset path: no job object per file, digests in one buffer (a store
        # with ``lookup_many`` fills in what it knows, in one call)
        locations: list[str] = []
        sizes: list[int] = []
        for resource_path, f in files:
            paths.append(resource_path)
            locations.append(f.location)
            sizes.append(f.size)
        if lookup_many is None:
            raw = hash_whole_files(locations, sizes, serialization.hash_type)
        else:
            known, missing = lookup_many(serialization.hash_type, locations)
            if len(known) != width * len(locations):
                raise ValueError("a digest store answered for a different number of files")
            found = hash_whole_files(
                [locations[i] for i in missing], [sizes[i] for i in missing],
                serialization.hash_type,
            )  # fmt: skip
            for k, i in enumerate(missing):
                known[i * width : (i + 1) * width] = found[k * width : (k + 1) * width]
            raw = bytes(known)
        return ResourceList(paths, raw, width, None)
    jobs: list[HashJob] = []
    ranges: array[int] | None = None
    if serialization.method == "files":
        for resource_path, f in files:
            paths.append(resource_path)
            jobs.append(HashJob(f.location, 0, None, f.size))
    else:
        assert serialization.shard_size
        ranges = array("q")
        for resource_path, f in files:
            for start, end in shard_bounds(f.size, serialization.shard_size):
                paths.append(resource_path)
                jobs.append(HashJob(f.location, start, end, end - start))
                ranges.extend((start, end))
    digests = hash_all(
        jobs,
        serialization.hash_type,
        lookup=cache.lookup_for(serialization.hash_type) if cache else None,
        store=cache.store_for(serialization.hash_type) if cache else None,
    )
    commit = getattr(cache, "commit", None)
    if commit is not None:
        commit()  # the digest cache writes once per run
    raw = bytes.fromhex("".join(digests))
    del digests
    return ResourceList(paths, raw, width, ranges)


def _in_resource_order(rl: ResourceList) -> ResourceList:
    """``rl`` in (path, start) order (the walk's order already is: usually a no-op)."""
    p, r = rl.paths, rl.ranges
    keys: list[tuple[str, int]] | list[str] = (
        p if r is None else [(p[i], r[2 * i]) for i in range(len(p))]
    )
    if all(a <= b for a, b in pairwise(keys)):  # type: ignore[operator]
        return rl
    order = sorted(range(len(p)), key=keys.__getitem__)
    w = rl.width
    digests = b"".join(rl.digests[i * w : (i + 1) * w] for i in order)
    ranges = None if r is None else array("q", (v for i in order for v in (r[2 * i], r[2 * i + 1])))
    return ResourceList([p[i] for i in order], digests, w, ranges)


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
        pairs: Iterable[tuple[str, ModelFile]] = [(SINGLE_FILE_NAME, tree.files[0])]
    else:
        pairs = ((f.name, f) for f in tree.files)
    return _manifest(tree, serialization, hash_files(pairs, serialization, cache))


def manifest_of_digests(tree: ModelTree, serialization: Serialization, digests: bytes) -> Manifest:
    """The manifest :func:`build_manifest` makes, from digests computed elsewhere: the raw
    digests of ``tree.files``, in order, concatenated (whole files: the ``files`` method)."""
    if serialization.method != "files":
        raise ValueError("digests of whole files make a manifest of files only")
    paths = [SINGLE_FILE_NAME] if tree.is_single_file else [f.name for f in tree.files]
    width = DIGEST_SIZES[serialization.hash_type]
    return _manifest(tree, serialization, ResourceList(paths, digests, width, None))


def _manifest(tree: ModelTree, serialization: Serialization, rl: ResourceList) -> Manifest:
    resources = _in_resource_order(rl)
    return Manifest(subject_name=tree.name, serialization=serialization, resources=resources)


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
    expected: Sequence[Resource], found: Sequence[Resource], extra_files: Iterable[str] = ()
) -> ManifestDiff:
    """Compare two manifests as sorted streams of names (no dictionary of either side)."""
    exp = expected if isinstance(expected, ResourceList) else ResourceList.of(expected)
    got = found if isinstance(found, ResourceList) else ResourceList.of(found)
    if exp.same_names(got):
        # the usual case: the same names in the same order; compare the digest buffers
        w = exp.width
        changed_at = (
            []
            if exp.digests == got.digests
            else [
                i
                for i in range(len(exp))
                if exp.digests[i * w : (i + 1) * w] != got.digests[i * w : (i + 1) * w]
            ]
        )
        return ManifestDiff(
            (),
            tuple(sorted(set(extra_files))),
            tuple(sorted((exp.name(i), exp.digest(i), got.digest(i)) for i in changed_at)),
        )
    e_names, e_idx = exp.by_name()
    g_names, g_idx = got.by_name()
    ew, gw = exp.width, got.width
    missing: list[str] = []
    extra: list[str] = []
    changed: list[tuple[str, str, str]] = []
    i = j = 0
    while i < len(e_names) or j < len(g_names):
        if j == len(g_names) or (i < len(e_names) and e_names[i] < g_names[j]):
            missing.append(e_names[i])
            i += 1
        elif i == len(e_names) or g_names[j] < e_names[i]:
            extra.append(g_names[j])
            j += 1
        else:
            a, b = e_idx[i], g_idx[j]
            if exp.digests[a * ew : (a + 1) * ew] != got.digests[b * gw : (b + 1) * gw]:
                changed.append((e_names[i], exp.digest(a), got.digest(b)))
            i += 1
            j += 1
    extra_all = sorted({*extra, *extra_files})
    return ManifestDiff(tuple(missing), tuple(extra_all), tuple(changed))


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
        from mlverify._internal.manifest.cache import DigestCache

        cache = DigestCache()
    return build_manifest(tree, serialization, cache)
