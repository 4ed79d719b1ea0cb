"""``hf://ORG/NAME[@REV][/PATH]`` from the local Hugging Face cache, offline.

Cache layout (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``)::

    models--ORG--NAME/refs/<rev>                 40-hex commit
    models--ORG--NAME/blobs/<etag>               LFS: sha256(content); else git blob sha1
    models--ORG--NAME/snapshots/<commit>/<path>  -> ../../blobs/<etag>

The cache directory comes from the settings (``SourceSettings.from_environment`` reads
the variables above). Offline unless the settings say ``download`` (the command line:
``MLVERIFY_HF_DOWNLOAD=1``): then huggingface_hub fills the cache first.
Every blob is read once: hashed against its name and copied into a private
directory that is then checked like a local model, so what was checked is what
was hashed. Blob names prove the cache is self-consistent, not who published it:
signatures and the policy decide that.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mlverify._internal.errors import InputError, UsageError, VerificationError
from mlverify._internal.sources.base import Resolved, admit_kind
from mlverify._internal.sources.settings import AdmissionRules, HfSettings, SourceSettings

_REF = re.compile(
    r"^hf://(?P<org>[A-Za-z0-9][\w.-]*)/(?P<name>[\w.-]+)(?:@(?P<rev>[\w.-]+))?(?:/(?P<path>.+))?$"
)
_CHUNK = 1 << 20


_COMMIT = re.compile(r"[0-9a-f]{40}")


def parse_parts(ref: str) -> tuple[str, str, str, str]:
    """(org, name, revision, path inside the repository) of an ``hf://`` reference."""
    m = _REF.match(ref)
    if m is None:
        raise UsageError(f"{ref}: expected hf://ORG/NAME[@REVISION][/PATH]")
    path = m.group("path") or ""
    if any(part in ("..", ".") for part in PurePosixPath(path).parts):
        raise UsageError(f"{ref}: the path inside the repository may not contain '.' or '..'")
    return m.group("org"), m.group("name"), m.group("rev") or "main", path.strip("/")


def _commit(repo: Path, ref: str, rev: str) -> str:
    if _COMMIT.fullmatch(rev):
        return rev
    try:
        commit = (repo / "refs" / rev).read_text().strip()
    except OSError:
        raise InputError(
            f"{ref}: revision {rev!r} is not in the local Hugging Face cache ({repo}); "
            "download it first (huggingface-cli download) or pin a commit"
        ) from None
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise InputError(f"{repo / 'refs' / rev}: not a commit id; the cache is damaged")
    return commit


def _copy_checked(link: Path, blobs: Path, dest: Path, shown: str) -> str:
    """Copy the blob behind ``link`` to ``dest``, checking it against its name; the kind."""
    if not link.is_symlink():
        raise InputError(
            f"{shown}: not a link into the cache's blobs (a cache without symlinks); "
            "its content cannot be checked against a blob name"
        )
    target = Path(os.path.normpath(link.parent / os.readlink(link)))
    if target.parent != blobs:
        raise InputError(f"{shown}: links outside the cache's blobs ({target}); refusing it")
    etag = target.name
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        kind, h = "lfs-sha256", hashlib.sha256()
    elif re.fullmatch(r"[0-9a-f]{40}", etag):
        kind, h = "git-sha1", hashlib.sha1()
        h.update(b"blob %d\0" % target.stat().st_size)
    else:
        raise InputError(f"{shown}: blob name {etag!r} is neither a sha256 nor a git sha1")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "rb") as src, open(dest, "xb") as out:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
    except FileNotFoundError:
        raise InputError(f"{shown}: blob {etag} is missing from the cache") from None
    if h.hexdigest() != etag:
        raise VerificationError(
            f"{shown}: blob content does not match its name {etag} ({kind} is "
            f"{h.hexdigest()}): the cache was tampered with or damaged; delete it and download "
            "again"
        )
    return kind


def download(repo_id: str, revision: str, sub: str, cache: Path) -> None:
    """Fill the cache with huggingface_hub (network!), only when the settings say so:
    the content is then checked from the cache exactly as without it."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UsageError(
            "MLVERIFY_HF_DOWNLOAD=1 needs huggingface_hub: pip install huggingface_hub"
        ) from None
    try:
        snapshot_download(
            repo_id=repo_id,
            revision=revision,
            cache_dir=str(cache),
            allow_patterns=[sub, f"{sub}/*"] if sub else None,
        )
    except Exception as e:  # huggingface_hub raises many kinds: one line
        raise InputError(f"hf://{repo_id}: download failed ({type(e).__name__}: {e})") from None


def resolve_hf(ref: str, dest: Path, settings: HfSettings) -> Resolved:
    """Materialise ``ref`` from the cache into ``dest`` (an empty directory), verified."""
    org, name, rev, sub = parse_parts(ref)
    cache = settings.cache
    if settings.download:
        download(f"{org}/{name}", rev, sub, cache)
    repo = cache / f"models--{org}--{name}"
    if not repo.is_dir():
        raise InputError(
            f"{ref}: {org}/{name} is not in the local Hugging Face cache ({cache}); "
            "download it first (huggingface-cli download), or set HF_HUB_CACHE"
        )
    commit = _commit(repo, ref, rev)
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        raise InputError(f"{ref}: snapshot {commit} is not in the local cache ({repo})")
    start = snapshot / sub if sub else snapshot
    if not (start.is_dir() or start.is_symlink()):
        raise InputError(f"{ref}: {sub!r} is not in snapshot {commit}")
    blobs = repo / "blobs"
    kinds: dict[str, int] = {}
    if start.is_dir() and not start.is_symlink():
        out = dest / name
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for fname in sorted(filenames):
                link = Path(dirpath) / fname
                rel = link.relative_to(start)
                k = _copy_checked(link, blobs, out / rel, f"{ref.rstrip('/')}/{rel.as_posix()}")
                kinds[k] = kinds.get(k, 0) + 1
    else:
        out = dest / start.name
        k = _copy_checked(start, blobs, out, ref)
        kinds[k] = 1
    return Resolved(
        ref,
        out,
        "hf",
        ref,
        digest=commit,
        metadata={
            "repository": f"{org}/{name}",
            "revision": rev,
            "commit": commit,
            "blobs_checked": kinds,
        },
    )


@dataclass(frozen=True)
class HfSource:
    reference: str
    revision: str
    settings: HfSettings
    kind: str = "hf"
    copies: bool = True
    pin_hint: str = "hf://ORG/NAME@<40-hex commit>"

    @property
    def pinned(self) -> bool:
        """Pinned to a commit: the snapshot under that commit is the content (a branch or
        tag in the local cache need not be what the runtime downloads)."""
        return bool(_COMMIT.fullmatch(self.revision))

    def admit(self, rules: AdmissionRules) -> None:
        admit_kind(self, rules)

    def resolve(self, dest: Path) -> Resolved:
        return resolve_hf(self.reference, dest, self.settings)


def parse(text: str, settings: SourceSettings) -> HfSource:
    _, _, rev, _ = parse_parts(text)
    return HfSource(text, rev, settings.hf)
