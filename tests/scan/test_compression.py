"""Compressed streams and archives read to their end: every gzip/bz2/xz/zlib member, zstd and
lz4 frames, joblib's legacy ``ZF`` files, 7z members, zip members of every method zipfile reads.
Samples are built from bytes; the payload is ``os.system('true')`` as opcodes, never loaded."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlverify._internal.scan import Limits, Severity
from tests.scan.builders import EVIL0, EVIL4, p4
from tests.scan.conftest import Scan, rules, subjects

BENIGN = p4(b"N")
SKIP = struct.pack("<II", 0x184D2A50, 4) + b"skip"  # a zstd / lz4 skippable frame


def zstd(data: bytes) -> bytes:
    zs = pytest.importorskip("zstandard")
    return bytes(zs.ZstdCompressor().compress(data))


def lz4f(data: bytes) -> bytes:
    lz4_frame = pytest.importorskip("lz4.frame")
    return bytes(lz4_frame.compress(data))


def zf(data: bytes, space: bool = False) -> bytes:
    """joblib < 0.10 ``write_zfile``: b"ZF", hex length padded to 19 (+1 on py2), zlib data."""
    return b"ZF" + f"{len(data):#x}".encode().ljust(20 if space else 19) + zlib.compress(data)


def xz(d: bytes) -> bytes:
    return lzma.compress(d)


def alone(d: bytes) -> bytes:
    return lzma.compress(d, format=lzma.FORMAT_ALONE)


# a benign first stream, the payload in the second: every reader of these formats reads both
MULTI: dict[str, Callable[[bytes, bytes], bytes]] = {
    "gzip": lambda a, b: gzip.compress(a) + gzip.compress(b),
    "gzip-padded": lambda a, b: gzip.compress(a) + b"\0" * 7 + gzip.compress(b),
    "bz2": lambda a, b: bz2.compress(a) + bz2.compress(b),
    "xz": lambda a, b: xz(a) + xz(b),
    "xz-padded": lambda a, b: xz(a) + b"\0" * 4 + xz(b),
    "lzma-alone": lambda a, b: alone(a) + alone(b),
    "zlib": lambda a, b: zlib.compress(a) + zlib.compress(b),
    "zstd": lambda a, b: zstd(a) + zstd(b),
    "zstd-skippable": lambda a, b: zstd(a) + SKIP + zstd(b),
    "lz4": lambda a, b: lz4f(a) + lz4f(b),
    "lz4-skippable": lambda a, b: SKIP + lz4f(a) + SKIP + lz4f(b),
}


@pytest.mark.parametrize("kind", sorted(MULTI))
def test_payload_in_a_later_stream_is_found(scan_bytes: Scan, kind: str) -> None:
    report = scan_bytes(MULTI[kind](BENIGN, EVIL0))
    assert "os.system" in subjects(report), report.findings
    # ... and the same container with two benign streams is clean
    assert scan_bytes(MULTI[kind](BENIGN, BENIGN)).status.value == "clean"


@pytest.mark.parametrize(
    "pack",
    [zstd, lz4f, zf, lambda d: zf(d, space=True), lambda d: zlib.compress(d, wbits=9),
     lambda d: SKIP * 3 + zstd(d), lambda d: SKIP + lz4f(d)],
)  # fmt: skip
def test_payload_in_each_codec(scan_bytes: Scan, pack: Callable[[bytes], bytes]) -> None:
    report = scan_bytes(pack(EVIL4))
    assert "os.system" in subjects(report), report.findings
    assert report.max_severity == Severity.CRITICAL


def test_zf_header_is_read_as_joblib_reads_it(scan_bytes: Scan) -> None:
    assert "zf" in scan_bytes(zf(EVIL0)).formats
    # joblib parses the length with int(..., 16), which fails here: joblib cannot load it
    bad = b"ZFzz" + b" " * 17 + zlib.compress(EVIL0)
    assert "zf" not in scan_bytes(bad).formats
    # text that happens to start like a ZF header is not one (no zlib stream follows)
    text = b"ZF 12 34 56          some notes\n" * 3
    assert scan_bytes(text).status.value == "data"


def test_trailing_bytes_after_the_last_stream_are_not_a_stream(scan_bytes: Scan) -> None:
    # gzip.open stops (with an error) at bytes that start no member; the pickle was read
    report = scan_bytes(gzip.compress(BENIGN) + b"junk")
    assert report.status.value == "clean"


def test_payload_before_corruption_is_found(scan_bytes: Scan) -> None:
    data = bytearray(gzip.compress(EVIL0 + b"\0" * 5000, compresslevel=0))
    data[-12:-8] = b"\xff\xff\xff\xff"
    assert "os.system" in subjects(scan_bytes(bytes(data)))


def _drain(f: Any, n: int = 64) -> bytes:
    out = bytearray()
    try:
        while chunk := f.read(n):
            out += chunk
    except Exception:  # what a loader reading n bytes at a time had before the error
        pass
    return bytes(out)


def _zlib_reference(data: bytes) -> bytes:
    d, out = zlib.decompressobj(15), bytearray()
    try:
        for i in range(0, len(data), 64):
            out += d.decompress(data[i : i + 64])
            if d.eof:
                break
    except zlib.error:
        pass
    return bytes(out)


def _references() -> dict[str, tuple[bytes, Callable[[bytes], bytes]]]:
    zs = pytest.importorskip("zstandard")
    lz4_frame = pytest.importorskip("lz4.frame")
    a = EVIL4 + bytes(range(256)) * 40
    b = EVIL0 + b"x" * 3000

    def zstd_ref(d: bytes) -> bytes:
        reader = zs.ZstdDecompressor().stream_reader(io.BytesIO(d), read_across_frames=True)
        return _drain(reader)

    return {
        "gzip": (gzip.compress(a) + gzip.compress(b), lambda d: _drain(gzip.open(io.BytesIO(d)))),
        "bz2": (bz2.compress(a) + bz2.compress(b), lambda d: _drain(bz2.open(io.BytesIO(d)))),
        "xz": (xz(a) + xz(b), lambda d: _drain(lzma.open(io.BytesIO(d)))),
        "lzma": (alone(a) + alone(b), lambda d: _drain(lzma.open(io.BytesIO(d)))),
        "zlib": (zlib.compress(a), _zlib_reference),
        "zstd": (zstd(a) + SKIP + zstd(b), zstd_ref),
        "lz4": (lz4f(a) + lz4f(b), lambda d: _drain(lz4_frame.open(io.BytesIO(d)))),
    }


def test_decompression_hands_out_all_a_reader_would_see() -> None:
    """Differential: on damaged streams, everything Python's readers (read 64 bytes at a time)
    hand out before failing, the scanner's stream hands out too (a loader may run it)."""
    import random

    from mlverify._internal.scan.source import CODECS, _Decompressed, bytes_source, sniff_codec

    rng = random.Random(10)
    for codec, (seed, reference) in _references().items():
        checked = 0
        for _ in range(80):
            b = bytearray(seed)
            for _ in range(rng.choice([1, 2, 3])):
                i = rng.randrange(len(b))
                b[i] = rng.randrange(256)
            data = bytes(b)
            if sniff_codec(data[:64]) != codec:
                continue
            ours = _drain(_Decompressed(bytes_source(data, "").open, CODECS[codec], Limits(), None))
            theirs = reference(data)
            assert ours[: len(theirs)] == theirs, (codec, data.hex())
            checked += 1
        assert checked > 40, codec


def test_corrupt_streams_are_unsupported(scan_bytes: Scan) -> None:
    for data in (b"\x1f\x8b\x08\x00" + b"\xff" * 40, b"(\xb5/\xfd" + b"\xff" * 40,
                 b"\x04\x22\x4d\x18" + b"\xff" * 40, b"BZh9" + b"\xff" * 40):  # fmt: skip
        report = scan_bytes(data)
        assert report.status.value == "unsupported", data[:4]


def test_legacy_lz4_frame_is_unsupported(scan_bytes: Scan) -> None:
    report = scan_bytes(b"\x02\x21\x4c\x18" + b"\0" * 40)
    assert report.status.value == "unsupported"


def test_missing_codec_package_is_unsupported(
    scan_bytes: Scan, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlverify._internal.scan import source

    monkeypatch.setattr(source, "codec_available", lambda codec: codec not in ("zstd", "lz4"))
    for data in (zstd(EVIL4), lz4f(EVIL4)):
        report = scan_bytes(data)
        assert report.status.value == "unsupported" and "MLV301" in rules(report)


@pytest.mark.parametrize("compress", ["zlib", "gzip", "bz2", "xz", "lzma", "lz4"])
def test_real_joblib_dumps_scan_clean(tmp_path: Path, compress: str) -> None:
    np = pytest.importorskip("numpy")
    joblib = pytest.importorskip("joblib")
    from mlverify._internal.scan import scan_file

    p = tmp_path / f"a.{compress}.joblib"
    joblib.dump({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": 3}, p, compress=compress)
    report = scan_file(p)
    assert report.status.value == "clean", report.findings
    assert compress in report.formats and "pickle" in report.formats


def test_real_legacy_zf_files_are_read_to_the_end() -> None:
    joblib = pytest.importorskip("joblib")
    from mlverify._internal.scan import scan_file

    files = []
    for p in sorted((Path(joblib.__file__).parent / "test" / "data").glob("*")):
        if p.is_file() and p.read_bytes()[:2] == b"ZF":
            files.append(p)
    if not files:
        pytest.skip("this joblib wheel ships no ZF test files")
    for p in files:
        report = scan_file(p)
        assert "zf" in report.formats, p.name
        # the container is read completely (what the globals mean is the allowlist's business)
        assert not rules(report) & {"MLV108", "MLV301", "MLV302"}, (p.name, report.findings)
        if not p.name.endswith(".npy.z"):
            assert "pickle" in report.formats, p.name


# -- zip members of every method zipfile reads ----------------------------------------------
def raw_zip(members: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A zip from (name, method, stored bytes, uncompressed size, crc) without zipfile."""
    out = bytearray()
    cd = bytearray()
    for name, method, data, usize, crc in members:
        off = len(out)
        n = name.encode()
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc,
                           len(data), usize, len(n), 0) + n + data  # fmt: skip
        cd += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc,
                          len(data), usize, len(n), 0, 0, 0, 0, 0, off) + n  # fmt: skip
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(cd),
                       len(out), 0)  # fmt: skip
    return bytes(out + cd + eocd)


def zip_lzma(data: bytes) -> bytes:
    """zipfile's ZIP_LZMA member encoding (version, properties size, properties, raw LZMA1)."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_LZMA) as z:
        z.writestr("archive/data.pkl", data)
    return buf.getvalue()


def test_zip_members_of_each_method(scan_bytes: Scan) -> None:
    crc = zlib.crc32(EVIL4)
    deflated = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = deflated.compress(EVIL4) + deflated.flush()
    for method, body in ((8, raw), (12, bz2.compress(EVIL4)), (93, zstd(EVIL4))):
        report = scan_bytes(raw_zip([("archive/data.pkl", method, body, len(EVIL4), crc)]))
        assert any(
            f.subject == "os.system" and f.member == "archive/data.pkl" for f in report.findings
        ), (method, report.findings)
    report = scan_bytes(zip_lzma(EVIL4))
    assert "os.system" in subjects(report)
    report = scan_bytes(raw_zip([("archive/data.pkl", 98, EVIL4, len(EVIL4), crc)]))  # ppmd
    assert report.status.value == "unsupported"


# -- 7z ----------------------------------------------------------------------------------------
def seven(members: dict[str, bytes], **kw: object) -> bytes:
    py7zr = pytest.importorskip("py7zr")
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", **kw) as z:
        for name, data in members.items():
            z.writestr(data, name)
    return buf.getvalue()


def test_7z_members_are_scanned(scan_bytes: Scan) -> None:
    report = scan_bytes(seven({"notes.txt": b"hello", "archive/data.pkl": EVIL4}))
    assert any(f.member == "archive/data.pkl" and f.subject == "os.system" for f in report.findings)
    assert "7z" in report.formats
    report = scan_bytes(seven({"notes.txt": b"hello", "archive/data.pkl": BENIGN}))
    assert report.status.value == "clean", report.findings
    # a 7z inside a zip inside a 7z
    from tests.scan.test_containers import make_zip

    inner = make_zip({"m.7z": seven({"x/data.pkl": EVIL0})})
    report = scan_bytes(seven({"outer.zip": inner}))
    assert any(f.member == "outer.zip!m.7z!x/data.pkl" for f in report.findings if f.subject)
    # ... and a 7z that is compressed content (copied aside to be read)
    report = scan_bytes(gzip.compress(seven({"x/data.pkl": EVIL0})))
    assert any(
        f.member == "<gzip>!x/data.pkl" and f.subject == "os.system" for f in report.findings
    )


def test_7z_solid_and_filters(scan_bytes: Scan) -> None:
    py7zr = pytest.importorskip("py7zr")
    for filters in ([{"id": py7zr.FILTER_BZIP2}], [{"id": py7zr.FILTER_COPY}],
                    [{"id": py7zr.FILTER_ZSTD}], [{"id": py7zr.FILTER_X86},
                                                  {"id": py7zr.FILTER_LZMA2}]):  # fmt: skip
        report = scan_bytes(seven({"a": b"x" * 1000, "b/data.pkl": EVIL0}, filters=filters))
        assert "os.system" in subjects(report), filters


def test_encrypted_7z_is_unsupported(scan_bytes: Scan) -> None:
    for kw in ({"password": "pw"}, {"password": "pw", "header_encryption": True}):
        report = scan_bytes(seven({"archive/data.pkl": EVIL4}, **kw))
        assert report.status.value == "unsupported" and "MLV301" in rules(report), kw


def test_damaged_7z_is_unsupported(scan_bytes: Scan) -> None:
    data = bytearray(seven({"archive/data.pkl": EVIL4 + b"\0" * 4096}))
    for pos in (40, len(data) // 2, len(data) - 10):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        report = scan_bytes(bytes(bad))
        assert report.status.value != "clean", pos
    report = scan_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\0" * 100)
    assert report.status.value == "unsupported"


def test_7z_without_py7zr_is_unsupported(scan_bytes: Scan, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    data = seven({"archive/data.pkl": BENIGN})
    monkeypatch.setitem(sys.modules, "py7zr", None)
    report = scan_bytes(data)
    assert report.status.value == "unsupported"


# -- the per-file budget -------------------------------------------------------------------------
def big_value(n: int) -> tuple[bytes, bytes]:
    """The head and tail of a pickle holding an n-byte BINBYTES8 value (zeros go between)."""
    return b"\x80\x04\x8e" + struct.pack("<Q", n), b"."


def test_one_stream_of_many_members_is_bounded(scan_bytes: Scan) -> None:
    # 40 gzip members of 1 MiB of zeros, read to the end (one big value across them)
    head, tail = big_value(40 << 20)
    data = gzip.compress(head) + gzip.compress(b"\0" * (1 << 20)) * 40 + gzip.compress(tail)
    report = scan_bytes(data, limits=Limits(ratio_floor=4 << 20))
    assert "MLV302" in rules(report)
    assert any("over budget" in f.message for f in report.findings)
    assert scan_bytes(data, limits=Limits(ratio_floor=64 << 20)).status.value == "clean"


def test_budget_is_shared_by_all_members_of_a_file(scan_bytes: Scan) -> None:
    # 20 deflated zip members, each 1 MiB from ~1 KiB (under the per-stream floor): together
    # they pass the file's budget of max(4 MiB, 250 x its ~22 KiB)
    from tests.scan.test_containers import make_zip

    head, tail = big_value(1 << 20)
    member = head + b"\0" * (1 << 20) + tail
    data = make_zip({f"m{i}.pkl": member for i in range(20)}, zipfile.ZIP_DEFLATED)
    report = scan_bytes(data, limits=Limits(ratio_floor=4 << 20))
    assert any("over budget" in f.message for f in report.findings), report.findings
    assert scan_bytes(data).status.value == "clean"


def test_nested_compression_shares_the_budget(scan_bytes: Scan) -> None:
    # three gzip layers, each well under the per-stream limits, 8+ MiB in all from ~600 bytes
    head, tail = big_value(8 << 20)
    data = head + b"\0" * (8 << 20) + tail
    for _ in range(3):
        data = gzip.compress(data)
    report = scan_bytes(data, limits=Limits(ratio_floor=6 << 20))
    assert "MLV302" in rules(report) and any("over budget" in f.message for f in report.findings)
    assert scan_bytes(data).status.value == "clean"


def test_member_budget(scan_bytes: Scan) -> None:
    from tests.scan.test_containers import make_zip

    data = make_zip({f"m{i}": b"x" for i in range(50)})
    assert "MLV302" in rules(scan_bytes(data, limits=Limits(max_total_members=10)))
    assert "MLV302" not in rules(scan_bytes(data))


def test_7z_with_an_unknown_coder_is_unsupported(scan_bytes: Scan) -> None:
    import zlib as _z

    py7zr = pytest.importorskip("py7zr")
    buf = io.BytesIO()
    z = py7zr.SevenZipFile(buf, "w", filters=[{"id": py7zr.FILTER_DEFLATE}])
    z.set_encoded_header_mode(False)
    z.writestr(EVIL4, "archive/data.pkl")
    z.close()
    data = buf.getvalue()
    i = data.rfind(b"\x04\x01\x08")  # the Deflate coder id in the (plain) header
    data = data[:i] + b"\x04\x01\x7f" + data[i + 3 :]
    nh_off, nh_size = struct.unpack("<QQ", data[12:28])
    start = data[12:28] + struct.pack("<I", _z.crc32(data[32 + nh_off : 32 + nh_off + nh_size]))
    data = data[:8] + struct.pack("<I", _z.crc32(start)) + start + data[32:]
    report = scan_bytes(data)
    assert report.status.value == "unsupported"
    assert any("method" in f.message for f in report.findings)


def test_7z_entry_bound(scan_bytes: Scan, monkeypatch: pytest.MonkeyPatch) -> None:
    py7zr = pytest.importorskip("py7zr")
    from mlverify._internal.scan import sevenzip

    data = seven({f"f{i}": b"" for i in range(50)} | {"archive/data.pkl": EVIL4})
    monkeypatch.setattr(py7zr.archiveinfo, "MAX_NUMFILES", py7zr.archiveinfo.MAX_NUMFILES)
    monkeypatch.setattr(sevenzip, "MAX_FILES", 20)
    report = scan_bytes(data)
    assert report.status.value != "clean" and "MLV301" in rules(report)
    monkeypatch.setattr(sevenzip, "MAX_FILES", 1 << 17)
    assert "os.system" in subjects(scan_bytes(data))


@pytest.mark.parametrize("pack", [gzip.compress, bz2.compress, xz, zstd])
def test_compressed_tar_members_are_scanned(
    scan_bytes: Scan, pack: Callable[[bytes], bytes]
) -> None:
    """A model.tar.gz (SageMaker style) or a compressed legacy torch tar: members scanned."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in (("code/inference.py", b"print(1)\n"), ("model/model.pkl", EVIL4)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    report = scan_bytes(pack(buf.getvalue()))
    assert "tar" in report.formats
    assert any(f.subject == "os.system" and "model/model.pkl" in f.member for f in report.findings)


def test_zip_member_that_cannot_be_inflated_is_unsupported(scan_bytes: Scan) -> None:
    crc = zlib.crc32(EVIL4)
    data = raw_zip([("archive/data.pkl", 8, b"\xff" * 64, len(EVIL4), crc)])
    report = scan_bytes(data)
    assert report.status.value == "unsupported" and "MLV301" in rules(report)


def test_budget_base_is_the_scanned_file(scan_bytes: Scan) -> None:
    """A small compressed value met first does not shrink the budget of a big file: the
    budget's base grows to the scanned file's size when one of its members is met."""
    import os

    from tests.scan.builders import binbytes
    from tests.scan.test_containers import make_zip

    n = 40 << 20
    head, tail = big_value(n)
    member = head + os.urandom(n) + tail  # incompressible: 40 MiB from 40 MiB
    big_zip = make_zip({"archive/data.pkl": member}, zipfile.ZIP_DEFLATED)
    small = gzip.compress(BENIGN + b"\0" * 100)
    pad = b"\0" * (80 << 10)  # keeps the zip's end record out of reach of the file's own tail
    body = binbytes(small) + b"0" + b"\x8e" + struct.pack("<Q", len(big_zip)) + big_zip + b"0"
    report = scan_bytes(p4(body + binbytes(pad) + b"0N"))
    assert "pytorch-zip" in report.formats and report.formats[0] == "pickle", report.formats
    assert not any("over budget" in f.message for f in report.findings), report.findings


def _container_seeds() -> list[bytes]:
    return [
        MULTI["gzip-padded"](EVIL4, EVIL0),
        MULTI["bz2"](EVIL4, EVIL0),
        MULTI["xz-padded"](EVIL4, EVIL0),
        MULTI["zstd-skippable"](EVIL4, EVIL0),
        MULTI["lz4-skippable"](EVIL4, EVIL0),
        zf(EVIL4),
        zip_lzma(EVIL4),
        seven({"a/data.pkl": EVIL4, "b": b"x" * 300}),
    ]


def test_mutated_containers_never_raise_or_hang() -> None:
    """Bounded fuzzing of every container kind through the whole engine."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from mlverify._internal.scan.engine import Context
    from mlverify._internal.scan.policy import get_policy
    from mlverify._internal.scan.source import bytes_source

    seeds = _container_seeds()

    @settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.sampled_from(range(len(seeds))),
        st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6),
        st.integers(0, 30),
    )
    def run(which: int, edits: list[tuple[float, int]], cut: int) -> None:
        b = bytearray(seeds[which])
        for where, val in edits:
            b[int(where * len(b))] = val
        data = bytes(b[: max(1, len(b) - cut)])
        ctx = Context("fuzz", Limits(max_depth=3), get_policy())
        ctx.scan(bytes_source(data, ""), 0)

    run()
