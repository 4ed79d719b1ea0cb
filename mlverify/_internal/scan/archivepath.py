"""Archive member names that escape the directory an archive is extracted to.

NeMo, SageMaker ``model.tar.gz``, TorchServe and many hand-written loaders extract
archives before loading them (``tarfile.extractall`` without the ``data`` filter,
``unzip``, Java and Go extractors). A member named ``../../x.py`` or ``/etc/cron.d/x``, a
symlink pointing outside, a hard link to a file outside, or a member written *through* a
symlink member (``sub -> /home/u/.ssh`` then ``sub/authorized_keys``) writes or exposes
files outside the extraction directory. Each is a high finding, whichever extractor would
refuse it: names are judged as the most permissive extractor resolves them (``/`` and
``\\`` both separators, a drive letter absolute, ``..`` through a symlink resolved on disk,
not lexically), and links in any order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import Rule

ARCHIVE_PATH_ESCAPE = Rule(
    "MLV206",
    "archive-path-escape",
    Severity.HIGH,
    "An archive member escapes the extraction directory (../, absolute name, link outside, "
    "a member written through a link).",
    "Extracting the archive (tarfile.extractall without filter='data', unzip, other "
    "extractors) writes or links files outside its directory: code planted where it runs "
    "(shell profiles, cron, site-packages), host files exposed to the loader. Rebuild the "
    "archive with plain relative names and no links.",
)

_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Member:
    name: str
    offset: int | None
    link: str = ""  # "" | "symlink" | "hardlink"
    target: str | None = None  # the link's target (None: could not be read)


def _split(name: str) -> list[str]:
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or bool(_DRIVE.match(name))


def _key(parts: list[str]) -> tuple[str, ...]:
    """A path as a case-insensitive file system (macOS, Windows) compares it: a link
    ``Sub`` is what ``sub/x`` is written through there."""
    return tuple(p.casefold() for p in parts)


def _resolve(parts: list[str], links: set[tuple[str, ...]]) -> tuple[list[str], str | None]:
    """Lexical resolution from the extraction root; the problem met on the way, if any:
    leaving the root, or passing through a symlink member (the OS then follows it)."""
    stack: list[str] = []
    for p in parts:
        if stack and _key(stack) in links:  # a component follows the link
            return stack, f"through the symlink member {'/'.join(stack)!r}"
        if p == "..":
            if not stack:
                return stack, "above the extraction directory"
            stack.pop()
        else:
            stack.append(p)
    return stack, None


def report_escapes(ctx: ScanContext, prefix: str, members: Iterable[Member], subject: str) -> None:
    """Report every member of one archive whose extraction reaches outside its directory."""
    items = list(members)
    links = {_key(_resolve(_split(m.name), set())[0]) for m in items if m.link == "symlink"}
    for m in items:
        label = prefix + m.name
        shown = m.name[:200]
        if _absolute(m.name):
            ctx.add(ARCHIVE_PATH_ESCAPE, label, m.offset, subject,
                    f"member name {shown!r} is absolute: extracting it writes there")  # fmt: skip
            continue
        parts = _split(m.name)
        where, why = _resolve(parts, links)
        if why is not None:
            ctx.add(ARCHIVE_PATH_ESCAPE, label, m.offset, subject,
                    f"member {shown!r} is extracted {why}")  # fmt: skip
            continue
        if not m.link:
            continue
        if m.target is None:
            ctx.add(ARCHIVE_PATH_ESCAPE, label, m.offset, subject,
                    f"{m.link} {shown!r}: its target could not be read, so it may point "
                    "anywhere")  # fmt: skip
            continue
        target = m.target[:200]
        if _absolute(m.target):
            ctx.add(ARCHIVE_PATH_ESCAPE, label, m.offset, subject,
                    f"{m.link} {shown!r} points to the absolute path {target!r}")  # fmt: skip
            continue
        base = where[:-1] if m.link == "symlink" else []  # a hard link names from the root
        _, why = _resolve(base + _split(m.target), links - {_key(where)})
        if why is not None:
            ctx.add(ARCHIVE_PATH_ESCAPE, label, m.offset, subject,
                    f"{m.link} {shown!r} points to {target!r}, {why}")  # fmt: skip
