"""How large a signature of a given model may be: derived from the model, not one constant.

An OMS signature lists every file (or shard) of the model, so its size grows
with the model: about 228 bytes per file for ordinary names, in both mlverify
and model_signing. A fixed cap therefore refuses real signatures of large
datasets, while no cap at all lets a hostile file exhaust memory. The bound
used here is what the model actually present could need:

    FLOOR + sum over entries present of ENTRY_BYTES(name) x shards(size)

where ``ENTRY_BYTES(name) = (ENTRY_OVERHEAD + 6 x len(name in UTF-8) +
SHARD_SUFFIX) x 4/3`` (JSON may escape every byte of a name as ``\\u00XX``; the
statement is base64 inside the bundle) and ``shards(size)`` counts the file's
shards at :data:`BUDGET_SHARD_SIZE`. Every regular file and symlink under the
model counts, before any ignore rule (ignores only remove entries). The floor
(the old fixed cap) leaves room for certificate chains, transparency-log
entries and timestamps. A file larger than the bound is refused from its
size, before it is read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

#: room for everything that does not grow with the model (the old fixed cap)
FLOOR = 16 * 1024 * 1024
#: JSON of one resource entry apart from its name: keys, algorithm, a 128-hex digest,
#: indentation (real writers use under 200 bytes)
ENTRY_OVERHEAD = 512
#: ":<start>:<end>" of a shard name, 20 digits each
SHARD_SUFFIX = 42
#: shards are budgeted at this size; signatures with smaller shards of large files
#: can exceed the bound (and are refused, naming it)
BUDGET_SHARD_SIZE = 1 << 20


def entry_bytes(name_len: int, size: int) -> int:
    """The most bytes the signature may spend on one file of ``size`` bytes."""
    shards = max(1, -(-size // BUDGET_SHARD_SIZE))
    return (ENTRY_OVERHEAD + 6 * name_len + SHARD_SUFFIX) * shards * 4 // 3


def signature_limit(entries: Iterable[tuple[str, int]]) -> int:
    """The bound for a model made of ``(name, size)`` entries."""
    return FLOOR + sum(
        entry_bytes(len(name.encode("utf-8", "surrogateescape")), size) for name, size in entries
    )


def signature_limit_for(path: Path, *, needed: int = 0) -> int:
    """The bound for the model at ``path``: every file and symlink under it counts.

    Listing only, symlinks not followed: bounded by the tree itself. File sizes
    (one ``lstat`` each) are read only when a signature of ``needed`` bytes
    exceeds the bound that counts one entry per file. Unreadable parts count as
    nothing; the walk that hashes reports them.
    """
    cheap = _tree_limit(path, with_sizes=False)
    if cheap >= needed:
        return cheap
    return _tree_limit(path, with_sizes=True)


#: what :func:`entry_bytes` gives a file of size 0 (one shard): linear in the name's
#: length (4/3 of 6 bytes per byte is whole), so a directory's files are counted at once
_ONE_SHARD = entry_bytes(0, 0)
_PER_NAME_BYTE = entry_bytes(1, 0) - _ONE_SHARD
assert all(entry_bytes(n, 0) == _ONE_SHARD + n * _PER_NAME_BYTE for n in range(64))


def _tree_limit(path: Path, *, with_sizes: bool) -> int:
    try:
        st = os.lstat(path)
    except OSError:
        return FLOOR
    if not stat.S_ISDIR(st.st_mode):
        return FLOOR + entry_bytes(len(os.fsencode(path.name)), st.st_size)
    total = FLOOR
    stack = [(os.fspath(path), 0)]  # (directory, length of its relative name prefix)
    while stack:
        directory, prefix = stack.pop()
        try:
            it = os.scandir(directory)
        except OSError:
            continue
        names: list[str] = []  # of the entries counted at size 0 (without sizes)
        with it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, prefix + len(os.fsencode(entry.name)) + 1))
                        continue
                    if with_sizes:
                        size = entry.stat(follow_symlinks=False).st_size
                        total += entry_bytes(prefix + len(os.fsencode(entry.name)), size)
                        continue
                except OSError:
                    continue
                names.append(entry.name)
        # the names' encoded lengths summed by encoding them joined (scandir's names hold
        # no high surrogate: none pairs with the next name's first character)
        name_bytes = len(os.fsencode("".join(names)))
        total += len(names) * (_ONE_SHARD + prefix * _PER_NAME_BYTE) + name_bytes * _PER_NAME_BYTE
    return total
