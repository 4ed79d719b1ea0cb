"""Stage 2: the manifest, a list of (resource name, digest) with its serialization.

This is the OMS predicate (``resources`` + ``serialization``) as typed data,
plus the root digest that becomes the in-toto subject. We write the spec's
form; we read the spec's form and the reference tool's variants (``"."`` for a
single file, ``sha256-sharded-N`` algorithms, float ``shard_size``, ``blake2``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from mlverify.errors import InputError
from mlverify.manifest.hashing import HashType, parse_hash_type

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


@dataclass(frozen=True)
class Manifest:
    """The resources of a model and how they were made."""

    subject_name: str
    serialization: Serialization
    resources: tuple[Resource, ...]

    @property
    def root_digest(self) -> str:
        """SHA-256 over the concatenated resource digests, in listed order."""
        h = hashlib.sha256()
        for r in self.resources:
            h.update(bytes.fromhex(r.digest))
        return h.hexdigest()

    def predicate(self) -> dict[str, Any]:
        """The OMS predicate, resources in code-point order of their names."""
        return {
            "resources": [
                {"name": r.name, "algorithm": self.serialization.hash_type, "digest": r.digest}
                for r in self.resources
            ],
            "serialization": self.serialization.to_json(),
        }

    def subject(self) -> dict[str, Any]:
        return {"name": self.subject_name, "digest": {"sha256": self.root_digest}}

    @classmethod
    def from_predicate(cls, predicate: object, subject_name: str, *, where: str) -> Manifest:
        """Parse an OMS predicate (spec form or reference-tool form)."""
        if not isinstance(predicate, dict):
            raise InputError(f"{where}: predicate must be an object, found {_kind(predicate)}")
        ser = Serialization.from_json(predicate.get("serialization"), where=where)
        raw = predicate.get("resources")
        if not isinstance(raw, list):
            raise InputError(f"{where}: predicate has no 'resources' list")
        resources = tuple(_parse_resource(item, ser, where=where) for item in raw)
        counts = Counter(r.name for r in resources)
        if len(counts) != len(resources):
            dup = sorted(n for n, c in counts.items() if c > 1)
            raise InputError(f"{where}: resource listed twice: {', '.join(dup[:5])}")
        return cls(subject_name=subject_name, serialization=ser, resources=resources)


def _kind(value: object) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value), repr(value))


def check_resource_path(path: str, *, where: str) -> str:
    """Reject names that could read outside the model root, before any read."""
    if path == SINGLE_FILE_NAME:
        return path
    if not path or "\\" in path or "\x00" in path:
        raise InputError(f"{where}: resource name {path!r} is not a relative POSIX path")
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("/"):
        raise InputError(
            f"{where}: resource name {path!r} is absolute; signed names must be relative to "
            "the model root (refusing to read outside it)"
        )
    if any(part in ("..", ".") for part in path.split("/")) or "" in path.split("/"):
        raise InputError(
            f"{where}: resource name {path!r} contains '..', '.' or an empty component; "
            "refusing a path that could leave the model root"
        )
    return path


def _parse_resource(item: object, ser: Serialization, *, where: str) -> Resource:
    if not isinstance(item, dict):
        raise InputError(f"{where}: each resource must be an object, found {_kind(item)}")
    name, digest, algorithm = item.get("name"), item.get("digest"), item.get("algorithm")
    if not isinstance(name, str) or not isinstance(digest, str) or not isinstance(algorithm, str):
        raise InputError(f"{where}: resource {item!r} needs string 'name', 'digest', 'algorithm'")
    # Reference-tool shards write "sha256-sharded-1000"; the spec writes "sha256".
    base_alg = algorithm.split("-sharded-", 1)[0]
    if parse_hash_type(base_alg) != ser.hash_type:
        raise InputError(
            f"{where}: resource {name!r} uses {algorithm!r} but the serialization says "
            f"{ser.hash_type!r}"
        )
    try:
        bytes.fromhex(digest)
    except ValueError:
        raise InputError(f"{where}: resource {name!r} has a digest that is not hex") from None
    if digest != digest.lower():
        digest = digest.lower()
    if ser.method == "files":
        return Resource(path=check_resource_path(name, where=where), digest=digest)
    path, sep1, rest = name.rpartition(":")
    path, sep2, start_s = path.rpartition(":")
    if not (sep1 and sep2 and start_s.isdigit() and rest.isdigit()):
        raise InputError(f"{where}: shard resource {name!r} is not 'path:start:end'")
    start, end = int(start_s), int(rest)
    if end <= start or (ser.shard_size and end - start > ser.shard_size):
        raise InputError(f"{where}: shard resource {name!r} has an invalid byte range")
    return Resource(
        path=check_resource_path(path, where=where), digest=digest, start=start, end=end
    )
