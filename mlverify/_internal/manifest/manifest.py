"""Stage 2: the manifest, a list of (resource name, digest) with its serialization.

This is the OMS predicate (``resources`` + ``serialization``) as typed data,
plus the root digest that becomes the in-toto subject. We write the spec's
form; we read the spec's form and the reference tool's variants (``"."`` for a
single file, ``sha256-sharded-N`` algorithms, float ``shard_size``, ``blake2``).
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal, overload

from mlverify._internal.errors import InputError
from mlverify._internal.manifest.hashing import DIGEST_SIZES, HashType, parse_hash_type

Method = Literal["files", "shards"]
METHODS: tuple[str, ...] = ("files", "shards")
DEFAULT_SHARD_SIZE = 1_000_000_000
SINGLE_FILE_NAME = "."


@dataclass(frozen=True)
class Serialization:
    """How a model was turned into resources."""

    method: Method = "files"
    hash_type: HashType = "sha256"
    shard_size: int | None = None
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "hash_type": self.hash_type,
            "allow_symlinks": self.allow_symlinks,
        }
        if self.method == "shards":
            out["shard_size"] = self.shard_size
        if self.ignore_paths:
            out["ignore_paths"] = list(self.ignore_paths)
        return out

    @classmethod
    def from_json(cls, data: object, *, where: str) -> Serialization:
        if not isinstance(data, dict):
            raise InputError(f"{where}: 'serialization' must be an object, found {_kind(data)}")
        method = data.get("method")
        if method not in METHODS:
            raise InputError(
                f"{where}: serialization method {method!r} unknown; expected 'files' or 'shards'"
            )
        hash_type = data.get("hash_type")
        if not isinstance(hash_type, str):
            raise InputError(f"{where}: serialization has no 'hash_type' string")
        try:
            ht = parse_hash_type(hash_type)
        except InputError as e:
            raise InputError(f"{where}: {e.message}") from None
        shard_size: int | None = None
        if method == "shards":
            raw = data.get("shard_size")
            # The reference tool writes a float (1000000000.0): accept whole floats.
            if isinstance(raw, float) and raw.is_integer():
                raw = int(raw)
            if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
                raise InputError(
                    f"{where}: shard serialization needs a positive integer 'shard_size', "
                    f"found {raw!r}"
                )
            shard_size = raw
        allow = data.get("allow_symlinks", False)
        if not isinstance(allow, bool):
            raise InputError(f"{where}: 'allow_symlinks' must be true or false, found {allow!r}")
        ignore = data.get("ignore_paths", [])
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise InputError(f"{where}: 'ignore_paths' must be a list of strings")
        return cls(
            method=method,
            hash_type=ht,
            shard_size=shard_size,
            allow_symlinks=allow,
            ignore_paths=tuple(sorted(set(ignore))),
        )


@dataclass(frozen=True)
class Resource:
    """One signed item: a whole file, or bytes ``[start, end)`` of it."""

    path: str  #: POSIX path relative to the model root; "." for the single file
    digest: str  #: lowercase hex
    start: int | None = None
    end: int | None = None

    @property
    def name(self) -> str:
        if self.start is None:
            return self.path
        return f"{self.path}:{self.start}:{self.end}"

    @property
    def is_shard(self) -> bool:
        return self.start is not None


class ResourceList(Sequence[Resource]):
    """The resources of a manifest, stored compactly.

    A million-file dataset has a million resources: their paths are one
    string (NUL-separated: no resource name holds a NUL), their digests one
    buffer of raw digests (``width`` bytes each) and shard ranges one array,
    instead of objects per resource. Holding no string per path also lets the
    memory of the walk that found them be returned whole. :class:`Resource`
    objects are made only when indexed or iterated; :attr:`paths` makes the
    list of path strings on each use.
    """

    __slots__ = ("_blob", "_count", "_offsets", "digests", "ranges", "width")

    def __init__(
        self, paths: list[str], digests: bytes, width: int, ranges: array[int] | None = None
    ) -> None:
        if len(digests) != width * len(paths) or (
            ranges is not None and len(ranges) != 2 * len(paths)
        ):
            raise ValueError("resource arrays of different lengths")
        self._blob = "\0".join(paths)
        if paths and self._blob.count("\0") != len(paths) - 1:
            raise ValueError("a resource path holds a NUL")
        self._count = len(paths)
        self._offsets: array[int] | None = None  # start of each path, made when indexed
        self.digests = digests
        self.width = width
        self.ranges = ranges

    @property
    def paths(self) -> list[str]:
        """The resource paths, in listed order (a new list each time)."""
        return self._blob.split("\0") if self._count else []

    def path(self, i: int) -> str:
        if self._offsets is None:
            offsets = array("Q", [0])
            pos = 0
            for p in self.paths:
                pos += len(p) + 1
                offsets.append(pos)
            self._offsets = offsets
        return self._blob[self._offsets[i] : self._offsets[i + 1] - 1]

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> ResourceList:
        items = list(resources)
        width = len(items[0].digest) // 2 if items else 32
        if any(len(r.digest) != 2 * width for r in items):
            raise ValueError("resources with digests of different lengths")
        shards = any(r.is_shard for r in items)
        ranges = None
        if shards:
            ranges = array("q")
            for r in items:
                if r.start is None or r.end is None:
                    raise ValueError("a manifest mixes shards and whole files")
                ranges.extend((r.start, r.end))
        return cls(
            [r.path for r in items], bytes.fromhex("".join(r.digest for r in items)), width, ranges
        )

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, i: int) -> Resource: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Resource, ...]: ...
    def __getitem__(self, i: int | slice) -> Resource | tuple[Resource, ...]:
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self))))
        if i < 0:
            i += len(self)
        if not 0 <= i < self._count:
            raise IndexError(i)
        if self.ranges is None:
            return Resource(self.path(i), self.digest(i))
        return Resource(self.path(i), self.digest(i), self.ranges[2 * i], self.ranges[2 * i + 1])

    def __iter__(self) -> Iterator[Resource]:
        paths = self.paths
        for i, p in enumerate(paths):
            if self.ranges is None:
                yield Resource(p, self.digest(i))
            else:
                yield Resource(p, self.digest(i), self.ranges[2 * i], self.ranges[2 * i + 1])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceList):
            return NotImplemented
        return (self._count, self._blob, self.digests, self.ranges) == (
            other._count,
            other._blob,
            other.digests,
            other.ranges,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ResourceList({len(self)} resources)"

    def digest(self, i: int) -> str:
        w = self.width
        return self.digests[i * w : (i + 1) * w].hex()

    def name(self, i: int) -> str:
        if self.ranges is None:
            return self.path(i)
        return f"{self.path(i)}:{self.ranges[2 * i]}:{self.ranges[2 * i + 1]}"

    def names(self) -> list[str]:
        """Resource names (``path`` or ``path:start:end``), in listed order."""
        paths = self.paths
        r = self.ranges
        if r is None:
            return paths
        return [f"{p}:{r[2 * i]}:{r[2 * i + 1]}" for i, p in enumerate(paths)]

    def same_names(self, other: ResourceList) -> bool:
        """The same resource names in the same order, with digests of one size."""
        return (
            self._count == other._count
            and self.width == other.width
            and self.ranges == other.ranges
            and self._blob == other._blob
        )

    def by_name(self) -> tuple[list[str], Sequence[int]]:
        """Names in code-point order, and the index of each (a sorted stream)."""
        names = self.names()
        if all(a < b for a, b in pairwise(names)):
            return names, range(len(names))
        order = sorted(range(len(names)), key=names.__getitem__)
        return [names[i] for i in order], order


@dataclass(frozen=True)
class Manifest:
    """The resources of a model and how they were made."""

    subject_name: str
    serialization: Serialization
    #: a :class:`ResourceList` (a sequence of :class:`Resource` is converted to one)
    resources: Sequence[Resource]

    def __post_init__(self) -> None:
        if not isinstance(self.resources, ResourceList):
            object.__setattr__(self, "resources", ResourceList.of(self.resources))

    @property
    def compact(self) -> ResourceList:
        assert isinstance(self.resources, ResourceList)
        return self.resources

    @property
    def root_digest(self) -> str:
        """SHA-256 over the concatenated resource digests, in listed order."""
        return hashlib.sha256(self.compact.digests).hexdigest()

    def predicate(self) -> dict[str, Any]:
        """The OMS predicate, resources in code-point order of their names."""
        rl = self.compact
        alg = self.serialization.hash_type
        return {
            "resources": [
                {"name": rl.name(i), "algorithm": alg, "digest": rl.digest(i)}
                for i in range(len(rl))
            ],
            "serialization": self.serialization.to_json(),
        }

    def subject(self) -> dict[str, Any]:
        return {"name": self.subject_name, "digest": {"sha256": self.root_digest}}

    @classmethod
    def from_predicate(cls, predicate: object, subject_name: str, *, where: str) -> Manifest:
        """Parse an OMS predicate (spec form or reference-tool form).

        Resource entries are objects, or ``(name, digest, algorithm)`` tuples
        made by :func:`compact_resource_hook` while the JSON is decoded.
        """
        if not isinstance(predicate, dict):
            raise InputError(f"{where}: predicate must be an object, found {_kind(predicate)}")
        ser = Serialization.from_json(predicate.get("serialization"), where=where)
        raw = predicate.get("resources")
        if not isinstance(raw, list):
            raise InputError(f"{where}: predicate has no 'resources' list")
        resources = _parse_resources(raw, ser, where=where)
        names, _ = resources.by_name()
        dup = sorted({a for a, b in pairwise(names) if a == b})
        if dup:
            raise InputError(f"{where}: resource listed twice: {', '.join(dup[:5])}")
        return cls(subject_name=subject_name, serialization=ser, resources=resources)


def compact_resource_hook(obj: dict[str, Any]) -> Any:
    """``json.loads`` object hook: a resource entry becomes a 3-tuple, not a dict.

    A million entries then cost a tuple each while the statement is parsed.
    JSON arrays decode to lists, so a tuple can only come from here; any other
    object is returned unchanged (and an object elsewhere that happens to have
    these three keys is refused where an object is expected).
    """
    if len(obj) == 3 and "name" in obj and "digest" in obj and "algorithm" in obj:
        alg = obj["algorithm"]
        return (obj["name"], obj["digest"], sys.intern(alg) if type(alg) is str else alg)
    return obj


def _kind(value: object) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value), repr(value))


def check_resource_path(path: str, *, where: str) -> str:
    """Reject names that could read outside the model root, before any read."""
    if path == SINGLE_FILE_NAME:
        return path
    if not path or "\\" in path or "\x00" in path:
        raise InputError(f"{where}: resource name {path!r} is not a relative POSIX path")
    if path.startswith("/"):
        raise InputError(
            f"{where}: resource name {path!r} is absolute; signed names must be relative to "
            "the model root (refusing to read outside it)"
        )
    parts = path.split("/")
    if ".." in parts or "." in parts or "" in parts:
        raise InputError(
            f"{where}: resource name {path!r} contains '..', '.' or an empty component; "
            "refusing a path that could leave the model root"
        )
    return path


def _parse_resources(raw: list[Any], ser: Serialization, *, where: str) -> ResourceList:
    width = DIGEST_SIZES[ser.hash_type]
    paths: list[str] = []
    hexes: list[str] = []
    ranges: array[int] | None = array("q") if ser.method == "shards" else None
    algorithms_ok: set[str] = set()
    for item in raw:
        if type(item) is tuple:
            name, digest, algorithm = item
        elif isinstance(item, dict):
            name, digest, algorithm = item.get("name"), item.get("digest"), item.get("algorithm")
        else:
            raise InputError(f"{where}: each resource must be an object, found {_kind(item)}")
        if (
            not isinstance(name, str)
            or not isinstance(digest, str)
            or not isinstance(algorithm, str)
        ):
            shown = (
                item
                if isinstance(item, dict)
                else dict(name=name, digest=digest, algorithm=algorithm)
            )
            raise InputError(
                f"{where}: resource {shown!r} needs string 'name', 'digest', 'algorithm'"
            )
        if algorithm not in algorithms_ok:
            # Reference-tool shards write "sha256-sharded-1000"; the spec writes "sha256".
            base_alg = algorithm.split("-sharded-", 1)[0]
            if parse_hash_type(base_alg) != ser.hash_type:
                raise InputError(
                    f"{where}: resource {name!r} uses {algorithm!r} but the serialization says "
                    f"{ser.hash_type!r}"
                )
            algorithms_ok.add(algorithm)
        if len(digest) != 2 * width:
            raise _bad_digest(name, ser, where)
        hexes.append(digest)
        if ranges is None:
            paths.append(check_resource_path(name, where=where))
            continue
        path, sep1, rest = name.rpartition(":")
        path, sep2, start_s = path.rpartition(":")
        if not (sep1 and sep2 and start_s.isdigit() and rest.isdigit()):
            raise InputError(f"{where}: shard resource {name!r} is not 'path:start:end'")
        start, end = int(start_s), int(rest)
        if end <= start or (ser.shard_size and end - start > ser.shard_size) or end >= 1 << 63:
            raise InputError(f"{where}: shard resource {name!r} has an invalid byte range")
        paths.append(check_resource_path(path, where=where))
        ranges.extend((start, end))
    try:
        # fromhex skips whitespace: a digest holding any decodes short
        raw_digests = bytes.fromhex("".join(hexes))
    except ValueError:
        raw_digests = b""
    if len(raw_digests) != width * len(hexes):
        bad = next(i for i, h in enumerate(hexes) if not _is_hex(h))
        raise _bad_digest(paths[bad] if bad < len(paths) else "?", ser, where)
    return ResourceList(paths, raw_digests, width, ranges)


def _bad_digest(name: str, ser: Serialization, where: str) -> InputError:
    width = 2 * DIGEST_SIZES[ser.hash_type]
    return InputError(
        f"{where}: resource {name!r} has a digest that is not {width} hex digits "
        f"(a {ser.hash_type} digest)"
    )


_HEX = frozenset("0123456789abcdefABCDEF")


def _is_hex(text: str) -> bool:
    return text.isascii() and not frozenset(text) - _HEX
