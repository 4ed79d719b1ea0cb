"""Job keys: what a verdict is a verdict about.

A key is the SHA-256 of (reference name, artifact digest, policy digest, trust digest,
mlverify version). The reference name is part of it because policies match on names
(a repository may be governed by a stricter policy than another holding the same bytes).
The artifact digest is what the bytes are:

- ``oci://HOST/REPO@sha256:...``: the manifest digest and the set of manifests attached
  to it (signatures and attestations are evidence: attaching one changes the verdict);
- ``hf://ORG/NAME@COMMIT``: the commit;
- a local path: :func:`tree_digest`, every byte of every file under it (signature files
  included), names, sizes and symlink targets.

The policy digest is over the policy files' bytes; the trust digest over what they trust
as loaded (key fingerprints, root certificates, identities), computed once when a worker
or replica starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlverify._internal.errors import InputError, UsageError
from mlverify._internal.text import shown
from mlverify._internal.version import __version__

if TYPE_CHECKING:
    from mlverify._internal.policy.model import Policy

#: Largest trust file read (keys and roots are a few KiB).
MAX_TRUST_FILE = 4 << 20
#: Most entries under one artifact directory.
MAX_ENTRIES = 1_000_000
#: Bytes read at a time by the job digest.
READ_CHUNK = 4 << 20


def _sha256(parts: Sequence[str]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()


def policy_digest(policies: Sequence[Policy]) -> str:
    return _sha256([p.digest for p in policies])


def trust_digest(policies: Sequence[Policy]) -> str:
    """Over what the policies trust, as loaded: keys by fingerprint (never re-read from a
    file), certificate roots by their DER bytes, Sigstore identities; a Sigstore trusted
    root (named by a file, or the public-good one) is read once, here."""
    from mlverify._internal.signing.sigstore_verify import default_trust_root_path

    parts: list[str] = []
    for p in policies:
        sig = p.signatures
        for k in sig.keys:
            window = f"{k.not_before}..{k.not_after}"
            parts += ["key", k.fingerprint, window, k.owner, k.problem]
        for c in sig.certificates:
            parts += [
                "certificate",
                *(hashlib.sha256(d).hexdigest() for d in c.root_certificates_der),
            ]
            parts += [*c.identities, c.identity_regex or "", c.subject or "", c.owner]
        for s in sig.sigstore:
            parts += ["sigstore", s.issuer, *s.identities, s.identity_regex or ""]
            parts += [s.source_repo or "", s.source_ref or "", s.workflow or "", s.owner]
            # the root verification will read: a named one, else the public-good root as
            # refreshed by `trust update` (a refresh is a new trust: new keys)
            parts.append(_file_digest(s.trust_root or default_trust_root_path()))
        parts += ["threshold", str(sig.threshold)]
    return _sha256(parts)


def _file_digest(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TRUST_FILE + 1)
    except OSError as e:
        raise InputError(
            f"{shown(str(path))}: cannot read this Sigstore trusted root ({e.strerror})",
            remedy="fix the policy's path",
        ) from None
    if len(data) > MAX_TRUST_FILE:
        raise InputError(f"{shown(str(path))}: larger than {MAX_TRUST_FILE} bytes; not a root")
    return hashlib.sha256(data).hexdigest()


def job_key(ref: str, artifact_digest: str, policy: str, trust: str, version: str) -> str:
    return _sha256([ref, artifact_digest, policy, trust, version])


@dataclass(frozen=True)
class Config:
    """The digests a worker or replica judges with."""

    policy: str
    trust: str
    version: str = __version__

    @classmethod
    def of(cls, policies: Sequence[Policy]) -> Config:
        return cls(policy_digest(policies), trust_digest(policies))

    def key(self, ref: str, artifact_digest: str) -> str:
        return job_key(ref, artifact_digest, self.policy, self.trust, self.version)


def oci_digest(manifest: str, referrers: Sequence[str]) -> str:
    """A manifest digest with the set of manifests attached to it."""
    if not referrers:
        return manifest
    return f"{manifest}+referrers:{_sha256(sorted(referrers)).split(':', 1)[1]}"


#: (size, mtime_ns, ctime_ns, inode) of every entry: what a check compares before and
#: after. ctime because mtime can be set back (utime) after a write; ctime cannot.
Fingerprint = dict[str, tuple[int, int, int, int]]


#: One entry under an artifact: its name (relative, ``/``-separated), its path, its lstat.
Entry = tuple[str, str, os.stat_result]


def entries(path: Path) -> list[Entry]:
    """Every entry under ``path`` with its lstat, sorted by name: files, symlinks (to
    directories too: entries, never followed) and anything else that is not a directory
    (refused when read). A directory that cannot be listed is an error, never skipped."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        raise InputError(f"{shown(str(path))}: no such file or directory") from None
    except OSError as e:
        raise InputError(f"{shown(str(path))}: cannot read it ({e.strerror})") from None
    if not stat.S_ISDIR(top.st_mode):
        return [(".", str(path), top)]
    out: list[Entry] = []
    stack = [("", str(path))]
    dirs = 0
    while stack:
        rel, where = stack.pop()
        dirs += 1
        try:
            with os.scandir(where) as it:
                for ent in it:
                    name = rel + ent.name
                    if ent.is_dir(follow_symlinks=False):
                        stack.append((name + "/", ent.path))
                    else:
                        out.append((name, ent.path, ent.stat(follow_symlinks=False)))
        except OSError as e:
            raise InputError(
                f"{shown(where)}: cannot list this directory ({e.strerror}); "
                "the artifact cannot be read whole"
            ) from None
        if len(out) + dirs > MAX_ENTRIES:
            raise InputError(f"{shown(str(path))}: more than {MAX_ENTRIES} entries")
    out.sort(key=lambda x: x[0])
    return out


def prints_of(listed: Sequence[Entry]) -> Fingerprint:
    return {n: (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) for n, _, st in listed}


def fingerprint(path: Path) -> Fingerprint:
    """(size, mtime_ns, ctime_ns, inode) of every entry under ``path`` now."""
    return prints_of(entries(path))


def digest_entries(listed: Sequence[Entry], known: Mapping[str, str] | None = None) -> str:
    """BLAKE3 over ``listed``: per entry its name, then ``L`` and a symlink's target, or
    ``F``, a regular file's size and the BLAKE3 of its contents (32 bytes). Composable:
    a file's part needs only its own digest, so ``known`` (name -> BLAKE3 hex of that
    file's contents, computed elsewhere over the bytes of the very inode and fingerprint
    listed: the caller checks that) is taken instead of reading the file. The only
    definition of a path's artifact digest (workers, back-fills and replicas use it).

    Devices, sockets and FIFOs are refused (reading one may never end). Symlinks are not
    followed (the check decides what a link may point at). A file is opened without
    following a link and must still be the inode listed, of the size listed, when read:
    otherwise it changed since it was listed (an error, never other bytes digested).
    """
    import blake3

    # one thread: 5 GB/s here, faster than the reads; more would take the cores the
    # check beside it hashes and scans on
    h = blake3.blake3()
    known = known or {}
    # a buffer no larger than the largest file read needs (+1: a file grown since it was
    # listed reads past its size): zero-filling 4 MiB cost more than a small tree's reads
    sizes = [st.st_size for n, _, st in listed if stat.S_ISREG(st.st_mode) and n not in known]
    buf = bytearray(min(READ_CHUNK, max(sizes, default=0) + 1))
    view = memoryview(buf)
    for name, full, st in listed:
        h.update(json.dumps(name).encode() + b"\0")
        if stat.S_ISLNK(st.st_mode):
            h.update(b"L" + os.readlink(full).encode("utf-8", "surrogateescape") + b"\0")
        elif stat.S_ISREG(st.st_mode):
            h.update(b"F%d\0" % st.st_size)
            given = known.get(name)
            if given is not None:
                h.update(bytes.fromhex(given))
                continue
            fh = blake3.blake3()

            def chunk(n: int, fh: Any = fh) -> None:
                fh.update(view[:n])

            read_file(full, st, buf, chunk)
            h.update(fh.digest())
        else:
            raise UsageError(
                f"{shown(full)}: not a regular file, directory or symlink; refusing to read it"
            )
    return "blake3:" + h.hexdigest()


#: how a file listed is opened: never through a link, never blocking (a FIFO swapped in)
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def read_file(full: str, st: os.stat_result, buf: bytearray, chunk: Callable[[int], None]) -> None:
    """Read the regular file ``full`` once, listed with lstat ``st``, into ``buf`` a chunk
    at a time (``chunk(n)``: ``buf[:n]`` holds the next bytes). Opened without following
    a link (:func:`read_fd`)."""
    try:
        fd = os.open(full, OPEN_FLAGS)
    except OSError as e:
        raise InputError(f"{shown(full)}: cannot read it ({e.strerror})") from None
    read_fd(fd, full, st, buf, chunk)


def read_fd(
    fd: int, full: str, st: os.stat_result, buf: bytearray, chunk: Callable[[int], None]
) -> None:
    """Read (and close) ``fd``, opened on ``full`` listed with lstat ``st``: it must be
    the inode listed, of the size listed; otherwise it changed since it was listed (an
    error, never other bytes read)."""
    size = 0
    with open(fd, "rb", buffering=0) as f:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise InputError(f"{shown(full)}: changed while being read; try again")
        while n := f.readinto(buf):
            size += n
            if size > st.st_size:
                break
            chunk(n)
    if size != st.st_size:
        raise InputError(f"{shown(full)}: changed while being read; try again")


def tree_digest(path: Path) -> tuple[str, Fingerprint]:
    """BLAKE3 over every entry under ``path`` (:func:`digest_entries`), and the entries'
    fingerprint when listed (before they were read)."""
    listed = entries(path)
    return digest_entries(listed), prints_of(listed)
