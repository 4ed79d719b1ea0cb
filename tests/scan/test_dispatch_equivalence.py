"""The fast detection path gives exactly the reports of the general one.

The general path (``dispatch.general_path``) is how every detector read before: each from
the file, for itself, decoding as it went. The fast path reads a small file once and shares
parses between detectors (``docs/scanner.md``, "Detection"). Compared here over the repo's
samples (every format's generator, the data files), the test builders' pickles and chat
templates, and a few thousand generated and mutated inputs, each under names that switch
name-driven detection on and off; the ``scan_bytes`` fixture compares every other sample
the tests in this directory build. The parts proven equal piece by piece are compared on
their own too, on inputs made to reach their corners.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import random
import struct
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlverify._internal.scan.dispatch import general, general_path
from mlverify._internal.scan.formats import _protobuf as pb
from mlverify._internal.scan.formats import configs
from mlverify._internal.scan.source import FileContent, FileSource, bytes_source
from mlverify._internal.scan.tarreader import _checksum_may_match
from tests.scan import builders as b
from tests.scan.chat_templates import ATTACKS, BENIGN
from tests.scan.differential import same_scan
from tests.scan.format_samples import all_samples

DATA = Path(__file__).parent / "data"
#: names that turn name-driven detection on (configs, templates) or leave it off
NAMES = ("blob.bin", "config.json", "params.yaml", "chat_template.jinja", "notes.txt", "x.h5")

MAGICS = (
    b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY", b"7z\xbc\xaf\x27\x1c", b"\x89HDF\r\n\x1a\n",
    b"GGUF", b"\x08\x07\x12", b"\x08\x01\x12", b"\x0a", b"\x1f\x8b", b"BZh9", b"\xfd7zXZ\x00",
    b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18", b"\x80\x02", b"\x80\x04\x95", b"\x80\x05",
    b"meta_graphs", b"saved_model_schema_version", b"version https://git-lfs", b"{", b"[",
    b"\xef\xbb\xbf{", b"\x78\x9c", b"\x5d\x00\x00\x80\x00",
    b"X\n\x00\x00\x00\x03", b"X\n\x00\x00\x00\x02", b"RDX3\nX\n", b"A\n3\n", b"B\n\x03\x00\x00\x00",
)  # fmt: skip

HINT_DOCS = (
    {"_target_": "os.system", "command": "true"},
    {"model": {"class_path": "builtins.eval"}},
    {"auto_map": {"AutoModel": "modeling.Evil"}},
    {"trust_remote_code": True},
    {"custom_pipelines": {"x": {"impl": "pipe.Evil"}}},
    {"class_name": "Lambda", "config": {"function": "eval"}},
    {"chat_template": "{{ cycler.__init__.__globals__.os.popen('id').read() }}"},
    {"_diffusers_version": "0.1", "unet": ["evil_module", "Evil"]},
    {"a": "${oc.decode:'{_target_: os.system}'}"},
    {"b": "${env:HOME}"},
    {"plain": [1, 2, 3], "name": "data"},
)


def _pickles() -> list[bytes]:
    evil = [b.EVIL0, b.EVIL4, b.p4(b.call4("builtins", "eval", "1")), b.p0(b.g0("os", "getcwd"))]
    benign = [b.p4(b.u("hello") + b"\x94"), b.p0(b.s0("text")), b.p4(b"}q\x00."[:-1])]
    return evil + benign


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _text(rng: random.Random, n: int, alphabet: bytes) -> bytes:
    return bytes(rng.choice(alphabet) for _ in range(n))


def _json_variants(rng: random.Random) -> Iterator[bytes]:
    for doc in HINT_DOCS:
        text = json.dumps(doc)
        yield text.encode()
        yield codecs.BOM_UTF8 + text.encode()
        yield text.encode("utf-16")
        yield text.encode("utf-32-le")
        # escaped: \u005f is "_", so the key is only seen once decoded
        yield text.replace("_", "\\u005f").encode()
        # invalid UTF-8 inside a key (a replacement character splits it) and around it
        raw = text.encode()
        i = rng.randrange(len(raw))
        yield raw[:i] + bytes([rng.choice((0x80, 0xC3, 0xE2, 0xFF, 0xED))]) + raw[i:]
        # a hint far into a large file (past the 4 KiB head), and one with control bytes
        yield b" " * rng.choice((4090, 5000, 70000)) + raw
        yield raw + b"\x01\x02"
        yield b"# yaml\n" + text.replace("{", "").replace("}", "").encode()


def generated(seed: int, count: int) -> Iterator[bytes]:
    """Random, truncated, prefixed and mixed inputs (harmless: bytes, never loaded)."""
    rng = random.Random(seed)
    pickles = _pickles()
    templates = list(BENIGN.values()) + list(ATTACKS.values())
    yield from _json_variants(rng)
    for m in MAGICS:
        for cut in range(1, len(m) + 1):
            yield m[:cut]
        yield m + rng.randbytes(rng.randrange(0, 600))
        yield b"text before " + m + rng.randbytes(40)
    for _ in range(count):
        kind = rng.randrange(14)
        if kind == 0:
            yield rng.randbytes(rng.randrange(0, 6000))
        elif kind == 1:  # text like the dataset benchmark's (hex), and other text
            alphabet = rng.choice(
                (b"0123456789abcdef", b"abc xyz_\n{}[]:,\"'", bytes(range(32, 127)))
            )
            yield _text(rng, rng.randrange(1, 5000), alphabet)
        elif kind == 2:
            yield rng.choice(MAGICS) + rng.randbytes(rng.randrange(0, 5000))
        elif kind == 3:  # a pickle after text, before text, truncated
            p = rng.choice(pickles)
            pre = _text(rng, rng.randrange(0, 20), b"abc\n ")
            yield rng.choice((pre + p, p + pre, p[: rng.randrange(1, len(p) + 1)]))
        elif kind == 4:  # protobuf-like: random fields with small numbers and wire types
            out = bytearray()
            for _ in range(rng.randrange(1, 60)):
                num, wt = rng.randrange(1, 20), rng.choice((0, 0, 2, 2, 1, 5, 3, 4, 6))
                out += pb_varint((num << 3) | wt)
                if wt == 0:
                    out += pb_varint(rng.randrange(1 << rng.choice((7, 14, 35, 64))))
                elif wt == 2:
                    body = rng.randbytes(rng.randrange(0, 30))
                    out += pb_varint(len(body) + rng.choice((0, 0, 0, 1, -1, 50)) % 256) + body
            yield bytes(out)
        elif kind == 5:
            yield json.dumps(rng.choice(HINT_DOCS)).encode()
        elif kind == 6:  # chat templates, in JSON and bare
            t = rng.choice(templates)
            yield rng.choice((t.encode(), json.dumps({"chat_template": t}).encode()))
        elif kind == 7:  # archives holding pickles / configs
            inner = rng.choice(pickles)
            yield rng.choice(
                (
                    _zip({"archive/data.pkl": inner}),
                    _tar({"model.pkl": inner}),
                    gzip.compress(inner),
                    b"prefix" + _zip({"x/config.json": json.dumps(HINT_DOCS[0]).encode()}),
                )
            )
        elif kind == 8:  # polyglots: a pickle with a zip after it, a template after a pickle
            yield rng.choice(pickles) + _zip({"a.txt": b"x"})
        elif kind == 9:
            yield rng.choice(pickles) + rng.choice(templates).encode()
        elif kind == 10:  # mutations of a structured input
            base = bytearray(rng.choice([*pickles, _tar({"m.pkl": pickles[0]})]))
            for _ in range(rng.randrange(1, 6)):
                base[rng.randrange(len(base))] = rng.randrange(256)
            yield bytes(base)
        elif kind == 11:  # a tar header checksum field of octal digits over text
            block = bytearray(_text(rng, 512, b"01234567 \0abc"))
            yield bytes(block) + rng.randbytes(rng.randrange(0, 100))
        elif kind == 12:  # onnx / savedmodel openings over random bodies
            yield bytes([0x08, rng.randrange(1, 21), rng.choice((0x12, 0x1A, 0x22, 0x3A))]) + (
                rng.randbytes(rng.randrange(0, 300))
            )
        else:
            yield b"\xef\xbb\xbf" + _text(rng, rng.randrange(0, 300), b"ab_\\$ {}\xc3\xa9")


def pb_varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def test_general_path_is_scoped() -> None:
    assert not general()
    with general_path():
        assert general()
    assert not general()


@pytest.mark.slow
def test_samples_of_every_format(tmp_path_factory: pytest.TempPathFactory) -> None:
    samples = all_samples(tmp_path_factory.mktemp("eq"))
    assert len(samples) > 50
    for s in samples:
        same_scan(s.path)


def test_data_files() -> None:
    files = [p for p in DATA.rglob("*") if p.is_file()]
    assert files
    for p in files:
        same_scan(p)


def test_generated_inputs(tmp_path: Path) -> None:
    rng = random.Random(7)
    n = 0
    for i, data in enumerate(generated(16, 2500)):
        p = tmp_path / f"{i}-{rng.choice(NAMES)}"
        p.write_bytes(data)
        same_scan(p)
        n += 1
    assert n > 2500


def test_top_level_parse_equals_the_window_reader() -> None:
    rng = random.Random(3)
    cases = [data for data in generated(5, 3000)]
    cases += [bytes([k]) + rng.randbytes(rng.randrange(0, 40)) for k in range(256)]
    # groups, nested and unbalanced, and more fields than the limit
    cases += [b"\x0b\x08\x01\x0c", b"\x0b\x0b\x0c\x0c", b"\x0b\x14", b"\x0b", b"\x08\x01" * 5000]
    cases += [b"\x0b" + b"\x08\x01" * 9000 + b"\x0c"]
    for data in cases:
        src = bytes_source(data, "")
        for limit in (4096, 3):
            want = pb._top_level(src, limit)
            assert pb._top_level_bytes(data, limit) == want, data[:40]


def test_hint_search_in_raw_bytes_equals_the_decoded_search() -> None:
    rng = random.Random(5)
    pieces = [h for h in configs._HINTS] + [b"\\", b"$", b"{", b"_", b"\xc3", b"\xa9", b"\xe2\x82"]
    pieces += [b"\xff", b"\x80", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"a", b" ", b"\n"]
    for _ in range(3000):
        parts = [rng.choice(pieces) for _ in range(rng.randrange(0, 12))]
        if rng.random() < 0.5:  # a hint cut by an invalid or partial sequence
            h = rng.choice(configs._HINTS)
            i = rng.randrange(1, len(h))
            parts.insert(rng.randrange(len(parts) + 1), h[:i] + rng.choice(pieces[-8:]) + h[i:])
        data = b"".join(parts)
        if rng.random() < 0.03:  # across the first chunk's end
            data = b" " * rng.choice((configs._CHUNK - 3, configs._CHUNK - 10)) + data
        for enc in ("utf-8", "utf-8-sig"):
            for limit in (None, configs.MAX_CONFIG, max(1, len(data) // 2)):
                src = FileSource(FileContent(data), 0, len(data), "")
                fast = configs._hinted(src, enc, limit)
                whole = configs._hinted(src, enc, limit, whole=data)  # the bytes in hand
                with general_path():
                    want = configs._hinted(src, enc, limit)
                assert fast == whole == want, (data[:80], enc, limit)


def test_control_byte_test_equals_the_pattern() -> None:
    for k in range(256):
        one = bytes([k])
        assert configs._has_control(b"text" + one) == (configs._CONTROL.search(one) is not None)
    rng = random.Random(9)
    for _ in range(500):
        data = rng.randbytes(rng.randrange(0, 64))
        with general_path():
            want = configs._has_control(data)
        assert configs._has_control(data) == want


def test_tar_checksum_test() -> None:
    rng = random.Random(2)
    real = _tar({"a.pkl": b"x" * 10})[:512]
    blocks = [real, b"\0" * 512]
    for _ in range(2000):
        block = bytearray(rng.randbytes(512) if rng.random() < 0.5 else real)
        for _ in range(rng.randrange(0, 4)):
            block[rng.randrange(512)] = rng.randrange(256)
        if rng.random() < 0.5:  # a checksum field that parses, and sometimes matches
            total = 256 + sum(block[:148]) + sum(block[156:512])
            signed = total - 256 * sum(1 for x in block[:148] + block[156:512] if x >= 128)
            value = rng.choice((total, signed, rng.randrange(1 << 18)))
            block[148:156] = (b"%06o\0 " % value)[:8].ljust(8, b" ")
        blocks.append(bytes(block))
    for block in blocks:
        fast = _checksum_may_match(block)
        with general_path():
            want = _checksum_may_match(block)
        assert fast == want
    assert _checksum_may_match(real)


def test_a_small_file_is_scanned_from_memory_as_the_file_itself(tmp_path: Path) -> None:
    """Its budget is the file's (a value copied out of it is not the file)."""
    from mlverify._internal.scan.source import _file_size

    data = b"x" * 100
    src = FileSource(FileContent(data), 0, len(data), "")
    assert _file_size(src) == (100, True)
    assert _file_size(bytes_source(data, "v")) == (100, False)
    assert struct.calcsize("<Q") == 8


def test_pickle_streams_that_stop_at_their_first_opcode() -> None:
    from mlverify._internal.scan.formats.pickle import FAILS_AT_ONCE, looks_like_pickle

    rng = random.Random(4)
    tails = [p for p in _pickles()] + [b"", b"(", b"(dp0\n.", b"\x80\x04" + b.EVIL4]
    for op in sorted(FAILS_AT_ONCE):
        for tail in tails + [rng.randbytes(rng.randrange(0, 200)) for _ in range(40)]:
            data = bytes([op]) + tail
            for deep in (True, False):
                for src in (bytes_source(data, ""), None):
                    fast = looks_like_pickle(data[:4096], src, deep)
                    with general_path():
                        want = looks_like_pickle(data[:4096], src, deep)
                    assert fast == want is False, (data[:40], deep)


def test_tar_checksum_fields_of_every_byte() -> None:
    """The octal field's pre-check (bytes ``int(x, 8)`` never takes) against the parse:
    every byte at every place of the field, around digits and whitespace."""
    real = bytearray(_tar({"a.pkl": b"x" * 10})[:512])
    field = bytes(real[148:156])
    for k in range(256):
        for pos in range(8):
            for base in (field, b"0000644\0", b" 17 \0\0\0\0", b"\0" * 8, b"0o17\0   "):
                block = bytearray(real)
                f = bytearray(base)
                f[pos] = k
                block[148:156] = f
                with general_path():
                    want = _checksum_may_match(bytes(block))
                assert _checksum_may_match(bytes(block)) == want, (k, pos, base)


def test_content_kinds_by_first_byte() -> None:
    """content_kind's first-byte gate: every first byte, with and without each opening's
    rest (ELF, Mach-O, PE, WebAssembly, Java, pyc, shebang, notebook)."""
    from mlverify._internal.scan.formats.code import content_kind

    rng = random.Random(11)
    rests = [
        b"ELF\x02\x01\x01" + bytes(10) + b"\x03\x00" + bytes(40),
        b"\xed\xfa\xce" + bytes(60),
        b"Z" + bytes(58) + b"\x40\0\0\0" + b"PE\0\0" + bytes(8),
        b"asm\x01\0\0\0" + bytes(8),
        b"\xed\x00\x05" + bytes(20),
        b"\r\n" + bytes(14) + b"\xe3" + bytes(30),
        b"\x0d\r\n" + bytes(14) + b"\xe3" + bytes(30),
        b"!/bin/sh\n",
        b'{"cells": [], "nbformat": 4}',
        b' \n{"cells": [{"cell_type": "code"}]}',
    ]
    for k in range(256):
        for rest in [*rests, rng.randbytes(40), b""]:
            head = bytes([k]) + rest
            for deep in (True, False):
                with general_path():
                    want = content_kind(head, deep)
                assert content_kind(head, deep) == want, (head[:20], deep)


def test_hdf5_signatures_in_small_files(tmp_path: Path) -> None:
    """A file within the head is searched in the head: the superblock at 0 or after a user
    block, at any other offset, cut at the end, and not there at all."""
    from mlverify._internal.scan.formats.hdf5 import SIGNATURE, signature_offset

    for size in (8, 600, 1032, 2056, 4096):
        for at in (0, 1, 511, 512, 1024, 2048, size - 8, size - 4):
            if at < 0 or at + 8 > size + 4:
                continue
            data = (bytes(at) + SIGNATURE + bytes(size))[:size]
            src = FileSource(FileContent(data), 0, len(data), "")
            with general_path():
                want = signature_offset(data[:4096], src)
            assert signature_offset(data[:4096], src) == want, (size, at)
            p = tmp_path / f"{size}-{at}.h5"
            p.write_bytes(data)
            same_scan(p)
