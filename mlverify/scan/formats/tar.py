"""tar archives (legacy torch checkpoints, .nemo): every member is scanned."""

from __future__ import annotations

from mlverify.scan.context import ScanContext
from mlverify.scan.rules import ZIP_MALFORMED, Rule
from mlverify.scan.source import Source, materialize

RULES: tuple[Rule, ...] = ()


class TarScanner:
    name = "tar"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return len(head) >= 262 and head[257:262] == b"ustar"

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        # a compressed tar (.tar.gz, a gzipped .nemo) is copied out first, bounded
        src = materialize(src, ctx.limits.max_decompressed)
        ctx.format("tar")
        size = src.size or 0
        off = 0
        longname: str | None = None
        prefix = src.label + "!" if src.label else ""
        count = 0
        while off + 512 <= size and count < ctx.limits.max_members:
            hdr = src.read_at(off, 512)
            if hdr == b"\0" * 512:
                break
            try:
                msize = int(hdr[124:136].split(b"\0")[0].strip() or b"0", 8)
            except ValueError:
                ctx.add(ZIP_MALFORMED, src.label, off, "tar", "tar header is damaged")
                break
            kind = hdr[156:157]
            name = longname or (
                (hdr[345:500].split(b"\0")[0] + b"/" if hdr[345:346] != b"\0" else b"")
                + hdr[:100].split(b"\0")[0]
            ).decode("utf-8", "replace")
            longname = None
            body = off + 512
            if kind == b"L":
                longname = (
                    src.read_at(body, min(msize, 4096)).split(b"\0")[0].decode("utf-8", "replace")
                )
            elif kind in (b"0", b"\0", b"7"):
                ctx.scan(src.sub(body, msize, prefix + name), depth + 1)
            count += 1
            off = body + (msize + 511) // 512 * 512
