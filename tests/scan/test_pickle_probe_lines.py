"""A trial pickle walk's budget counts opcodes, not the bytes of one text opcode's line.

A valid safetensors file whose 8-byte header length starts with 0x50 ('P', PERSID: a text
opcode) and whose tensor data holds no newline was flagged MLV108 ("the pickle stream
breaks"): the trial walk spent its 16 KiB budget reading PERSID's line and took that as 16 KiB
of opcodes. A loader reads that line to the end of the file and fails before any effect.
"""

from __future__ import annotations

import json

from tests.scan.conftest import Scan, rules


def _safetensors(size: int, fill: bytes = b"\0") -> bytes:
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    for pad in range(64):  # a header length whose low byte is b"P"
        raw = (header + " " * pad).encode()
        if len(raw) % 256 == 0x50:
            return len(raw).to_bytes(8, "little") + raw + fill * size
    raise AssertionError("no padding gives a header length ending in 0x50")


def test_a_safetensors_file_whose_length_byte_is_a_text_opcode_is_not_a_pickle(
    scan_bytes: Scan,
) -> None:
    for size in (1 << 10, 200 << 10, 3 << 20):
        report = scan_bytes(_safetensors(size), "model.safetensors")
        assert tuple(report.formats) == ("safetensors",), (size, report.findings)
        assert report.status.value == "clean"


def test_a_long_line_does_not_hide_what_follows_it(scan_bytes: Scan) -> None:
    """The line is passed over for free; the opcodes after it are still judged."""
    long_string = b"S'" + b"a" * (40 << 10) + b"'\n"
    payload = long_string + b"0" + b"cos\nsystem\n(S'true'\ntR."
    report = scan_bytes(payload, "weights.bin")
    assert "pickle" in report.formats
    assert "MLV102" in rules(report) or "MLV101" in rules(report), report.findings
    # a line that never ends: the loader fails reading it, nothing after it runs
    report = scan_bytes(b"P" + b"x" * (300 << 10), "blob.bin")
    assert "pickle" not in report.formats


def test_a_global_whose_name_runs_to_the_end_still_imports(scan_bytes: Scan) -> None:
    """Loaders take the rest of the stream as the last line: a GLOBAL whose name line runs
    to the end imports its module (a side effect) before failing; never "data"."""
    for tail in (20 << 10, 200 << 10):
        report = scan_bytes(b"cantigravity\n" + b"x" * tail, "weights.bin")
        assert "pickle" in report.formats, (tail, report.formats)
        assert report.findings, tail
