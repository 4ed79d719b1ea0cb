"""zip archives: PyTorch, TorchScript, npz, ``.keras``, nested zips. Every member is scanned."""

from __future__ import annotations

import zlib
from functools import lru_cache

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.formats.pickle import looks_like_pickle
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.policy import Policy, Verdict
from mlverify._internal.scan.rules import UNSUPPORTED, ZIP_CRC_MISMATCH, Rule, by_id
from mlverify._internal.scan.source import FileSource, Source
from mlverify._internal.scan.zipreader import LOCAL_SIG, ZipArchive, find_eocd, read_zip

RULES: tuple[Rule, ...] = ()  # the zip reader's rules are core rules


class ZipScanner:
    name = "zip"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        if head[:4] in (LOCAL_SIG, b"PK\x05\x06"):
            return True
        return deep and isinstance(src, FileSource) and find_eocd(src) is not None

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        from mlverify._internal.scan.formats.torchscript import report_archive
        from mlverify._internal.scan.source import materialize

        fsrc = src if isinstance(src, FileSource) else materialize(src, ctx.limits.max_decompressed)
        arc = read_zip(fsrc, ctx.limits)
        prefix = src.label + "!" if src.label else ""
        for p in arc.problems:
            ctx.add(
                by_id(p.rule, p.severity, p.message),
                prefix + p.member if p.member else src.label,
                p.offset,
                "zip",
                p.message,
                severity=p.severity,
            )
        names = [e.name for e in arc.entries]
        if any(n.endswith("data.pkl") for n in names):
            ctx.format("pytorch-zip")
        elif any(n.endswith(".npy") for n in names):
            ctx.format("npz")
        elif "config.json" in names and any(n.endswith(".h5") for n in names):
            ctx.format("keras")
        else:
            ctx.format("zip")
        code_files = [n for n in names if "/code/" in "/" + n and n.endswith(".py")]
        if any("/code/" in n or n.startswith("code/") for n in names):
            ctx.format("torchscript")
            report_archive(ctx, src.label, len(code_files))
        if arc.start > 0 and not src.label and not looks_like_pickle(fsrc.head(4096)):
            pre = fsrc.sub(0, arc.start, "<before zip>")
            ctx.scan(pre, depth + 1, deep=False)
        shipped = package_modules(names)
        script_code = _torchscript_code(names) if shipped is None else frozenset()
        outer = ctx.policy
        if shipped is not None:
            ctx.format("torch-package")
            ctx.policy = PackagePolicy(outer, shipped)
        try:
            self._members(fsrc, arc, ctx, depth, prefix, script_code)
        finally:
            ctx.policy = outer

    def _members(
        self,
        fsrc: FileSource,
        arc: ZipArchive,
        ctx: ScanContext,
        depth: int,
        prefix: str,
        script_code: frozenset[str],
    ) -> None:
        from mlverify._internal.scan.archivepath import Member, report_escapes
        from mlverify._internal.scan.formats.code import claim_torchscript
        from mlverify._internal.scan.formats.skops import judge_schema
        from mlverify._internal.scan.formats.torchscript import (
            judge_bytecode_member,
            judge_code_member,
        )
        from mlverify._internal.scan.zipreader import member_sources

        targets: dict[int, str] = {}  # the target of each symlink member read
        for e, member in member_sources(fsrc, arc, ctx, prefix):
            if e.name in script_code:
                claim_torchscript(member)
            if e.is_symlink:
                try:
                    raw = member.head(4096)
                except (ValueError, EOFError, OSError):
                    raw = None
                if raw is not None and len(raw) < 4096:
                    targets[id(e)] = raw.decode("utf-8", "replace")
            label = member.label
            recognised = ctx.scan(member, depth + 1)
            if recognised and e.method == 0 and e.csize <= 64 * 1024 * 1024:
                crc = 0
                stream = member.open()
                while chunk := stream.read(1 << 20):
                    crc = zlib.crc32(chunk, crc)
                if crc != e.crc:
                    ctx.add(
                        ZIP_CRC_MISMATCH,
                        label,
                        e.header_offset,
                        "zip",
                        f"CRC-32 {crc:08x} does not match the recorded {e.crc:08x}",
                    )
            if not recognised and e.flags & 0x41:
                ctx.add(
                    UNSUPPORTED,
                    label,
                    e.header_offset,
                    "zip",
                    "member is marked encrypted and its bytes are not a known format",
                    severity=Severity.MEDIUM,
                )
            if "/code/" in "/" + e.name and e.name.endswith(".py"):
                judge_code_member(member, ctx, label)
            elif e.name == "bytecode.pkl" or e.name.endswith("/bytecode.pkl"):
                judge_bytecode_member(member, ctx, label)  # the lite interpreter's op tables
            elif e.name == "schema.json":  # skops.io reads this one by name
                judge_schema(member, ctx, label, frozenset(n.name for n in arc.entries))
        members = [
            Member(e.name, e.header_offset, "symlink" if e.is_symlink else "", targets.get(id(e)))
            for e in arc.entries
        ]
        report_escapes(ctx, prefix, members, "zip")


def _torchscript_code(names: list[str]) -> frozenset[str]:
    """The members ``torch.jit.load`` compiles as TorchScript: ``<root>/code/**.py`` of an
    archive with ``<root>/constants.pkl`` (what torch.load takes for TorchScript). Any other
    ``.py`` member, and every one of a torch.package archive, is Python code."""
    present = set(names)
    out = set()
    for n in names:
        root, sep, rest = n.partition("/")
        if not sep or not rest.startswith("code/") or not n.endswith(".py"):
            continue
        if f"{root}/constants.pkl" in present:
            out.add(n)
    return frozenset(out)


# -- torch.package ------------------------------------------------------------------------
def package_modules(names: list[str]) -> frozenset[str] | None:
    """The modules a torch.package archive ships (with the packages they imply), or None
    when the archive is not one (no ``<root>/.data/extern_modules``, which the importer
    reads first).

    ``torch.package.PackageImporter`` resolves every import of the archive's pickles and
    modules in the archive first: a module it ships is what the name means there.
    """
    # PackageImporter reads .data/extern_modules (it fails without it); .data/version is
    # not required to recognise the archive
    roots = {n[: -len(".data/extern_modules")] for n in names if n.endswith(".data/extern_modules")}
    if not roots:
        return None
    out: set[str] = set()
    for n in names:
        root = next((r for r in roots if n.startswith(r)), None)
        if root is None or not n.endswith(".py"):
            continue
        rel = n[len(root) : -3]
        if rel.startswith(".data/"):
            continue
        parts = [p for p in rel.split("/") if p]
        if parts and parts[-1] == "__init__":
            parts.pop()
        for i in range(1, len(parts) + 1):
            out.add(".".join(parts[:i]))
    return frozenset(out)


class PackagePolicy(Policy):
    """The import policy inside a torch.package archive: an import of a module the archive
    ships (or of a name inside it) is the archive's code, never the allowlisted name."""

    def __init__(self, base: Policy, shipped: frozenset[str]) -> None:
        self.__dict__.update(base.__dict__)  # the base policy's data, unchanged
        self.shipped = shipped | getattr(base, "shipped", frozenset())  # nested packages
        self.classify = lru_cache(maxsize=8192)(self._classify)

    def _classify_one(self, module: str, name: str) -> Verdict:
        dotted = f"{module}.{name}" if module else name
        parts = dotted.split(".")
        prefixes = (".".join(parts[:i]) for i in range(1, len(parts)))
        hit = next((p for p in prefixes if p in self.shipped), None)
        if hit is not None:
            return Verdict(
                "deny", Severity.HIGH,
                f"the torch.package archive ships module {hit!r}: importing {dotted} runs the "
                "archive's code, not what the allowlist means by that name",
            )  # fmt: skip
        return super()._classify_one(module, name)
