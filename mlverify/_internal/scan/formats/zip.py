"""zip archives: PyTorch, TorchScript, npz, ``.keras``, nested zips. Every member is scanned."""

from __future__ import annotations

import zlib

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.formats.pickle import looks_like_pickle
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import UNSUPPORTED, ZIP_CRC_MISMATCH, Rule, by_id
from mlverify._internal.scan.source import FileSource, Source
from mlverify._internal.scan.zipreader import LOCAL_SIG, find_eocd, read_zip

RULES: tuple[Rule, ...] = ()  # the zip reader's rules are core rules


class ZipScanner:
    name = "zip"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        if head[:4] in (LOCAL_SIG, b"PK\x05\x06"):
            return True
        return deep and isinstance(src, FileSource) and find_eocd(src) is not None

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        from mlverify._internal.scan.formats.torchscript import judge_code_member, report_archive
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
        from mlverify._internal.scan.zipreader import member_sources

        for e, member in member_sources(fsrc, arc, ctx, prefix):
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
