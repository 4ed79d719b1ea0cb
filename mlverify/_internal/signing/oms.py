"""Sign a model into an OMS bundle, and verify a model against one.

Verification has three distinct outcomes, each its own error: no signature
(:class:`SignatureNotFoundError`), a signature by no trusted signer
(:class:`UntrustedSignerError`) and a valid signature over other bytes
(:class:`ArtifactMismatchError`, naming every changed, missing and extra file).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path, PurePosixPath
from typing import Literal

from mlverify._internal.artifact import (
    GIT_PATHS,
    IgnoreRules,
    ModelFile,
    ModelTree,
    normalize_ignore,
    walk_model,
)
from mlverify._internal.errors import (
    ArtifactMismatchError,
    UsageError,
)
from mlverify._internal.manifest.build import ManifestDiff, diff_resources, hash_files
from mlverify._internal.manifest.hashing import DigestStore
from mlverify._internal.manifest.manifest import SINGLE_FILE_NAME, Manifest
from mlverify._internal.signing.bundle import SignatureBundle, key_signed_bundle
from mlverify._internal.signing.keys import RawSigner
from mlverify._internal.signing.statement import manifest_of_payload, statement_bytes

Method = Literal["key", "certificate", "sigstore"]


def sign_manifest(manifest: Manifest, signer: RawSigner) -> bytes:
    """An OMS bundle (key method) signing ``manifest``."""
    return key_signed_bundle(statement_bytes(manifest), signer)


@dataclass(frozen=True)
class VerifiedStatement:
    """A statement whose envelope signature checked out, and who made it."""

    source: str
    method: Method
    #: the signer's stable identity, the same however often or whenever the signature
    #: is checked: "key sha256:<SPKI fingerprint>", "certificate <SAN> (root sha256:<root
    #: fingerprint>)", "sigstore <SAN> (issuer <URL>)"; thresholds count distinct ones
    signer: str
    statement_payload: bytes
    #: what the signer's certificate vouches for (Sigstore: issuer, source
    #: repository, workflow ref...); empty for keys
    claims: Mapping[str, str] = field(default_factory=dict)
    #: the trust material that matched: a key, a root certificate, a Sigstore root
    anchor: str = ""
    #: certificates: the time validity was judged at, and where that time came from
    judged_at: str = ""


def signed_manifest(bundle: SignatureBundle) -> Manifest:
    """Parse the statement a bundle carries, to reject malformed ones early.

    Nothing read here is trusted before the signature is checked; this only
    names format defects (wrong predicate, bad resource names) precisely.
    """
    return manifest_of_payload(bundle.envelope.payload, where=bundle.source)


@dataclass(frozen=True)
class ModelVerification:
    """The outcome of checking a model's bytes against a verified manifest."""

    signature: VerifiedStatement
    manifest: Manifest
    diff: ManifestDiff
    checked_files: int


def _resolve_inside(root: Path, name: str, allow_symlinks: bool) -> Path | None:
    """The regular file ``name`` under ``root``, or None if absent or unsafe.

    Walks component by component with lstat, so a symlink can neither be
    followed when not allowed nor lead outside the root.
    """
    current = root
    real_root = root.resolve()
    for part in PurePosixPath(name).parts:
        current = current / part
        try:
            st = os.lstat(current)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            if not allow_symlinks:
                return None
            target = current.resolve()
            if target != real_root and real_root not in target.parents:
                return None
    try:
        return current if stat.S_ISREG(os.stat(current).st_mode) else None
    except OSError:
        return None


def _signature_ignores(paths: Iterable[str]) -> list[str]:
    """Ignore paths from a (verified) signature, minus entries that cannot apply."""
    usable = []
    for p in paths:
        try:
            usable.append(normalize_ignore(p))
        except UsageError:
            continue  # absolute or escaping entries match nothing inside the root
    return usable


def _narrowed(tree: ModelTree, ignore: Sequence[str]) -> ModelTree:
    """``tree`` (walked with no ignore pattern, symlinks refused) as the walk with the
    patterns ``ignore`` would find it: its files less those the patterns match. Exactly
    that walk: the patterns only leave more out (a file matched, or under a directory
    matched); whatever they would spare the walk from entering (a symlink, a FIFO) made
    the plain walk fail, and following links changes nothing where there are none."""
    if tree.allow_symlinks:
        raise ValueError("a walk that followed symlinks cannot stand for another")
    extra = {normalize_ignore(p) for p in ignore} - set(GIT_PATHS)
    if not extra:
        return tree
    rules = IgnoreRules(extra)
    kept = tuple(f for f in tree.files if not rules.matches(f.name))
    return dataclasses.replace(tree, files=kept)


def verify_model(
    path: Path,
    verified: VerifiedStatement,
    *,
    ignore: Sequence[str] = (),
    ignore_unsigned_files: bool = False,
    signature_path: Path | None = None,
    cache: DigestStore | None = None,
    walked: Callable[[], ModelTree] | None = None,
    scanned: Callable[[str], bool] | None = None,
) -> ModelVerification:
    """Re-hash ``path`` the way the signature says and compare, all files at once.

    ``walked``: gives the caller's own walk of the directory ``path`` (no ignore
    patterns, symlinks refused, ``signature_path`` alone excluded), called once the
    signature is parsed and narrowed here to its ignores instead of walking again (the
    same files: see :func:`_narrowed`). ``scanned``: when given (``check``), a signed file
    the walk left out is compared only if the caller read it (scanned it) too; one that
    was not there then (made since) is missing, never verified unread by the check."""
    manifest = manifest_of_payload(verified.statement_payload, where=verified.source)
    ser = manifest.serialization
    expected = manifest.resources
    paths = manifest.compact.paths
    # usually already sorted and distinct (files are listed in code-point order)
    expected_paths = paths if all(a < b for a, b in pairwise(paths)) else sorted(set(paths))
    if not expected_paths:
        # `sign` refuses an empty model; a signature over nothing proves nothing about
        # any bytes (and with --ignore-unsigned-files it would "verify" any directory).
        raise ArtifactMismatchError(
            f"{verified.source}: the signature covers no files (an empty model); it proves "
            "nothing about these bytes: sign the model's files"
        )

    if path.is_file() and not path.is_symlink():
        if len(expected_paths) != 1:
            raise ArtifactMismatchError(
                f"{path}: the signature covers {len(expected_paths)} files of a model "
                "directory, but a single file was given; verify the directory instead"
            )
        tree = walk_model(path)
        # "." (reference tool) or the file's name (spec, legacy): the bytes matter.
        names, files = [expected_paths[0]], [tree.files[0]]
        extra_names: list[str] = []
    else:
        if expected_paths == [SINGLE_FILE_NAME]:
            raise ArtifactMismatchError(
                f"{path}: the signature covers a single file, but a directory was given; "
                "verify the signed file itself"
            )
        ignores = [*_signature_ignores(ser.ignore_paths), *ignore]
        excluded = [signature_path] if signature_path else []
        given = walked() if walked is not None else None
        tree = (
            _narrowed(given, ignores)
            if given is not None and given.root == path and not given.is_single_file
            else walk_model(
                path,
                ignore=ignores,
                allow_symlinks=ser.allow_symlinks,
                extra_excluded=excluded,
                require_files=False,
            )
        )
        # Both sides are sorted by name: one merge, no dictionary of either.
        on_disk = tree.files
        names = []
        files = []
        extra = []
        j = 0
        for name in expected_paths:
            while j < len(on_disk) and on_disk[j].name < name:
                extra.append(on_disk[j])
                j += 1
            if j < len(on_disk) and on_disk[j].name == name:
                names.append(name)
                files.append(on_disk[j])
                j += 1
                continue
            # A signed file our walk leaves out (e.g. named like a signature):
            # still check it if it is safely inside the model.
            found = (
                _resolve_inside(path, name, ser.allow_symlinks)
                if scanned is None or scanned(name)
                else None
            )
            if found is not None:
                names.append(name)
                files.append(ModelFile(name=name, path=found, size=found.stat().st_size))
        extra.extend(on_disk[j:])
        if ignore_unsigned_files:
            extra = []
        if ser.method == "shards":
            # empty files have no shards, so they are not extra
            extra = [f for f in extra if f.size > 0]
        extra_names = [f.name for f in extra]
    found_resources = hash_files(zip(names, files, strict=True), ser, cache)
    diff = diff_resources(expected, found_resources, extra_names)
    return ModelVerification(
        signature=verified, manifest=manifest, diff=diff, checked_files=len(names)
    )


def require_match(result: ModelVerification, path: Path) -> None:
    if not result.diff.ok:
        raise ArtifactMismatchError(
            f"{path}: signature by {result.signature.signer} is valid, but the files "
            f"differ from what was signed: {result.diff.describe()}"
        )
