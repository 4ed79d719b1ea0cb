"""Zip and tar members every real reader opens (zipfile, miniz/torch.load, tarfile).

Hostile archives are built from bytes (harmless ``os.system('true')`` payloads, never
loaded); benign ones are written with the real libraries and must stay clean.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from mlverify._internal.scan import Limits, Severity
from mlverify._internal.scan.tarreader import is_tar
from tests.scan.builders import EVIL0, EVIL4, call4, p4, sg
from tests.scan.conftest import Scan, rules, subjects


# -- zip builders ----------------------------------------------------------------------
def _local(name: str, data: bytes) -> bytes:
    n = name.encode()
    crc = zlib.crc32(data)
    hdr = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(n), 0
    )
    return hdr + n + data


def _central(name: str, data: bytes, lho: int, comment: bytes = b"") -> bytes:
    n, size, crc = name.encode(), len(data), zlib.crc32(data)
    fields = (20, 20, 0, 0, 0, 0x21, crc, size, size, len(n), 0, len(comment), 0, 0, 0, lho)
    return struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", *fields) + n + comment


def _eocd(n: int, cd_size: int, cd_off: int) -> bytes:
    return struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, cd_size, cd_off, 0)


def _z64(n: int, size: int, off: int) -> bytes:
    return struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, size, off)


def _npy_object(pickle_body: bytes) -> bytes:
    header = repr({"descr": "|O", "fortran_order": False, "shape": (1,)}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + pickle_body


def _benign_npy() -> bytes:
    header = repr({"descr": "<i8", "fortran_order": False, "shape": (1,)}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 8


def test_cd_at_its_offset_while_a_fake_cd_sits_before_the_end_record(scan_bytes: Scan) -> None:
    """miniz (torch.load) reads the directory at cd_offset; zipfile the one before the EOCD."""
    fake = [("arch/data.pkl", p4(b"N")), ("arch/version", b"3\n")]
    real = [("arch/data.pkl", EVIL4), ("arch/version", b"3\n")]
    out = bytearray(_local("j", b"x" * 256))  # room for the fake records' shifted offsets
    fpos, rpos = [], []
    for name, data in fake:
        fpos.append(len(out))
        out += _local(name, data)
    for name, data in real:
        rpos.append(len(out))
        out += _local(name, data)
    real_cd = b"".join(_central(n, d, p) for (n, d), p in zip(real, rpos, strict=True))
    s = len(real_cd)
    fake_cd = b"".join(_central(n, d, p - s) for (n, d), p in zip(fake, fpos, strict=True))
    assert len(fake_cd) == s
    cd_off = len(out)
    out += real_cd + fake_cd + _eocd(2, s, cd_off)
    report = scan_bytes(bytes(out), "m.pt")
    assert "os.system" in subjects(report)
    assert any(f.rule_id == "MLV205" and "disagree" in f.message for f in report.findings)


def test_cd_records_beyond_the_count(scan_bytes: Scan) -> None:
    """zipfile reads records until cd_size is used up; the duplicate name opens the hidden one."""
    out = bytearray()
    a = len(out)
    out += _local("w.npy", _benign_npy())
    b = len(out)
    out += _local("w.npy", _npy_object(EVIL0))
    cd = _central("w.npy", _benign_npy(), a) + _central("w.npy", _npy_object(EVIL0), b)
    cd_off = len(out)
    out += cd + _eocd(1, len(cd), cd_off)
    report = scan_bytes(bytes(out), "a.npz")
    assert "os.system" in subjects(report)
    assert any(f.rule_id == "MLV205" and "follow" in f.message for f in report.findings)


@pytest.mark.parametrize("name", ["w/", "model/"])
def test_member_named_like_a_directory_is_scanned(scan_bytes: Scan, name: str) -> None:
    """dict(np.load(npz)) and pandas.read_pickle(x.zip) open members whose name ends in '/'."""
    data = _npy_object(EVIL0) if name == "w/" else EVIL4
    loc = _local(name, data)
    cd = _central(name, data, 0)
    report = scan_bytes(loc + cd + _eocd(1, len(cd), len(loc)))
    assert "os.system" in subjects(report)


def _two_zip64(at_locator: bytes, before_locator: bytes) -> bytes:
    out = bytearray()
    a = len(out)
    out += _local("w.npy", at_locator)
    b = len(out)
    out += _local("w.npy", before_locator)
    cd_a = _central("w.npy", at_locator, a)
    cd_a_off = len(out)
    out += cd_a
    z64_a = len(out)
    out += _z64(1, len(cd_a), cd_a_off)
    cd_b = _central("w.npy", before_locator, b)
    cd_b_off = len(out)
    out += cd_b + _z64(1, len(cd_b), cd_b_off)
    out += struct.pack("<4sIQI", b"PK\x06\x07", 0, z64_a, 1)
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 2**32 - 1, 2**32 - 1, 0)
    return bytes(out)


def test_two_zip64_records(scan_bytes: Scan) -> None:
    """miniz follows the locator's offset, zipfile takes the record right before the locator."""
    evil = _npy_object(EVIL0)
    for data in (_two_zip64(_benign_npy(), evil), _two_zip64(evil, _benign_npy())):
        report = scan_bytes(data, "a.npz")
        assert "os.system" in subjects(report)
        assert any(f.rule_id == "MLV205" and "disagree" in f.message for f in report.findings)


def test_zip_member_bounds_still_hold(scan_bytes: Scan) -> None:
    members = {f"m{i}": b"x" for i in range(8)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    report = scan_bytes(buf.getvalue(), limits=Limits(max_members=3))
    assert any(f.rule_id == "MLV302" for f in report.findings)


def test_real_zips_stay_clean(scan_bytes: Scan, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    files: dict[str, bytes] = {}
    for legacy in (False, True):
        p = tmp_path / f"m{legacy}.pt"
        obj = {"w": torch.arange(6.0).reshape(2, 3), "lin": torch.nn.Linear(3, 2).state_dict()}
        torch.save(obj, p, _use_new_zipfile_serialization=not legacy)
        files[p.name] = p.read_bytes()
    for name, save in (("a.npz", np.savez), ("c.npz", np.savez_compressed)):
        buf = io.BytesIO()
        save(buf, a=np.arange(3), b=np.ones((2, 2)))
        files[name] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("dir/", b"")
        z.writestr("dir/a.txt", b"hello")
        with z.open("big.bin", "w", force_zip64=True) as f:
            f.write(b"x" * 1000)
    files["z.zip"] = buf.getvalue()
    for name, data in files.items():
        report = scan_bytes(data, name)
        assert report.findings == (), (name, report.findings)
        assert report.status.value == "clean", name


# -- tar ------------------------------------------------------------------------------
def _thdr(name: str, size: int, typ: bytes = b"0", magic: bytes = b"ustar\x0000") -> bytearray:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    hh = bytearray(ti.tobuf(format=tarfile.USTAR_FORMAT))
    hh[156:157] = typ
    hh[257:265] = magic
    if magic == b"\0" * 8:
        hh[265:345] = b"\0" * 80
    return hh


def _sum(hh: bytearray) -> bytes:
    hh[148:156] = b" " * 8
    hh[148:156] = b"%06o\0 " % sum(hh)
    return bytes(hh)


def _pad(d: bytes) -> bytes:
    return d + b"\0" * ((-len(d)) % 512)


def test_v7_header_without_magic(scan_bytes: Scan) -> None:
    for payload in (EVIL0, EVIL4):
        data = _sum(_thdr("m.pkl", len(payload), magic=b"\0" * 8)) + _pad(payload) + b"\0" * 1024
        report = scan_bytes(data, "m.tar")
        assert "tar" in report.formats
        assert "os.system" in subjects(report)


def test_pax_size_overrides_the_header(scan_bytes: Scan) -> None:
    rec = b"size=%d\n" % len(EVIL0)
    rec = b"%d %s" % (len(rec) + 3, rec)
    data = (
        _sum(_thdr("././@PaxHeader", len(rec), b"x"))
        + _pad(rec)
        + _sum(_thdr("storages", 0))
        + _pad(EVIL0)
        + b"\0" * 1024
    )
    assert "os.system" in subjects(scan_bytes(data, "m.tar"))


def test_gnu_sparse_member(scan_bytes: Scan) -> None:
    hh = _thdr("storages", len(EVIL0), b"S", b"ustar  \0")
    # one data chunk at offset 0, then a hole: the member expands to 4 KiB
    hh[386:398] = b"%011o\0" % 0
    hh[398:410] = b"%011o\0" % len(EVIL0)
    hh[483:495] = b"%011o\0" % 4096
    data = _sum(hh) + _pad(EVIL0) + b"\0" * 1024
    assert "os.system" in subjects(scan_bytes(data, "m.tar"))


def test_sparse_bomb_is_bounded(scan_bytes: Scan) -> None:
    hh = _thdr("big", 5, b"S", b"ustar  \0")
    hh[386:398] = b"%011o\0" % 0
    hh[398:410] = b"%011o\0" % 5
    hh[483:495] = b"%011o\0" % (1 << 33)
    data = _sum(hh) + _pad(b"hello") + b"\0" * 1024
    report = scan_bytes(data, "m.tar", limits=Limits(max_decompressed=1 << 20))
    assert "MLV302" in rules(report)


def test_random_data_is_not_a_tar() -> None:
    import random

    rng = random.Random(7)
    for _ in range(2000):
        assert not is_tar(bytes(rng.randrange(256) for _ in range(512)))
    good = _sum(_thdr("a", 0))
    assert is_tar(good)
    bad = bytearray(good)
    bad[0] ^= 1  # the checksum no longer matches
    assert not is_tar(bytes(bad))
    assert not is_tar(b"\0" * 1024)


def _tar(members: list[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_tar_member_bound(scan_bytes: Scan) -> None:
    data = _tar([(f"m{i}", b"x") for i in range(8)])
    report = scan_bytes(data, limits=Limits(max_members=3))
    assert "MLV302" in rules(report)


def test_compressed_v7_tar(scan_bytes: Scan) -> None:
    import gzip

    data = _sum(_thdr("m.pkl", len(EVIL4), magic=b"\0" * 8)) + _pad(EVIL4) + b"\0" * 1024
    assert "os.system" in subjects(scan_bytes(gzip.compress(data), "m.tar.gz"))


# -- torch's legacy tar format ---------------------------------------------------------
def _record(key: str, storage: str) -> bytes:
    mod, _, cls = storage.rpartition(".")
    return b"\x80\x02(" + _bu(key) + _bu("cpu") + b"c" + f"{mod}\n{cls}\n".encode() + b"t."


def _bu(s: str) -> bytes:
    return b"X" + struct.pack("<I", len(s)) + s.encode()


def _storages(records: list[tuple[str, str, int, int]], views: bytes = b"\x80\x02]q\x00.") -> bytes:
    out = b"\x80\x02K" + bytes([len(records)]) + b"."
    for key, cls, n, esize in records:
        out += _record(key, cls) + struct.pack("<q", n) + b"\x01" * (n * esize)
    return out + views


def _tensors(records: list[tuple[str, int]]) -> bytes:
    out = b"\x80\x02K" + bytes([len(records)]) + b"."
    for key, ndim in records:
        # (torch wrote type(tensor), e.g. torch.FloatTensor: an allowlist matter, not tested)
        out += b"\x80\x02(" + _bu(key) + _bu("0") + b"ctorch\nFloatStorage\nt."
        out += struct.pack("<i", ndim) + b"\0" * 4 + b"\x02" * (16 * ndim) + b"\0" * 8
    return out


def _legacy(storages: bytes, tensors: bytes, pickle: bytes = b"\x80\x02}q\x00.") -> bytes:
    sysinfo = b"\x80\x02}q\x00(X\x10\x00\x00\x00protocol_versionq\x01M\xe9\x03u."
    return _tar([("sys_info", sysinfo), ("pickle", pickle), ("storages", storages),
                 ("tensors", tensors)])  # fmt: skip


def test_benign_legacy_tar_is_clean(scan_bytes: Scan) -> None:
    st = _storages([("0", "torch.FloatStorage", 3, 4), ("1", "torch.LongStorage", 2, 8)])
    data = _legacy(st, _tensors([("0", 2), ("1", 1)]))
    report = scan_bytes(data, "old.pt")
    assert report.findings == (), report.findings


def test_pickle_after_raw_storage_bytes(scan_bytes: Scan) -> None:
    """legacy_load reads the int64 count and raw bytes, then the next record's pickle."""
    evil = b"\x80\x02" + call4("os", "system", "true")[:-1] + b"R."  # harmless, never run
    evil = p4(call4("os", "system", "true"))
    st = _storages([("0", "torch.ByteStorage", 1, 1)])[: -len(b"\x80\x02]q\x00.")]
    data = _legacy(st + b"\x80\x02(" + _bu("1") + _bu("cpu") + b"ctorch\nByteStorage\nt."
                   + struct.pack("<q", 1) + b"\x7f" + evil, _tensors([]))  # fmt: skip
    report = scan_bytes(data, "old.pt")
    assert any(f.member == "storages" and f.subject == "os.system" for f in report.findings)


def test_pickle_after_raw_tensor_header(scan_bytes: Scan) -> None:
    tens = _tensors([("0", 1)]) + _tensors([("1", 1)])[5:]  # a second record
    evil = p4(sg("os", "system") + b"(" + b"\x8c\x04true" + b"tR")
    data = _legacy(_storages([]), tens[:-8 - 16 - 8] + struct.pack("<i", 1) + b"\0" * 4
                   + b"\x02" * 16 + b"\0" * 8 + evil)  # fmt: skip
    report = scan_bytes(data, "old.pt")
    assert any(f.member == "tensors" and f.subject == "os.system" for f in report.findings)


def test_unsized_storage_record_cannot_be_followed(scan_bytes: Scan) -> None:
    st = b"\x80\x02K\x01." + b"\x80\x02(" + _bu("0") + _bu("cpu") + b"ctorch\nUntypedStorage\nt."
    st += struct.pack("<q", 4) + b"\x01" * 16 + EVIL4
    report = scan_bytes(_legacy(st, _tensors([])), "old.pt")
    hits = [f for f in report.findings if f.rule_id == "MLV108" and f.member == "storages"]
    assert hits and hits[0].severity == Severity.MEDIUM


def test_legacy_member_as_a_link_is_reported(scan_bytes: Scan) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("storages")
        info.type = tarfile.SYMTYPE
        info.linkname = "/tmp/elsewhere"
        t.addfile(info)
    assert "MLV205" in rules(scan_bytes(buf.getvalue(), "old.pt"))


def test_real_tars_stay_clean(scan_bytes: Scan, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.arange(4)}, legacy, _use_new_zipfile_serialization=False)
    npy = io.BytesIO()
    np.save(npy, np.arange(5))
    members = [
        ("a/" + "long" * 40 + ".txt", b"hello world\n" * 50),
        ("legacy.pt", legacy.read_bytes()),
        ("x.npy", npy.getvalue()),
        ("ünï.json", b"{}"),
    ]
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        report = scan_bytes(_tar(members, fmt), "a.tar")
        assert report.findings == (), (fmt, report.findings)
        assert "tar" in report.formats
    short = [("a/b.txt", b"x" * 700), ("legacy.pt", legacy.read_bytes())]
    report = scan_bytes(_tar(short, tarfile.USTAR_FORMAT), "u.tar")
    assert report.findings == (), report.findings
    # a tar holding a torch zip: the zip is found inside, nothing at or above medium
    zpt = tmp_path / "new.pt"
    torch.save({"w": torch.arange(4)}, zpt)
    report = scan_bytes(_tar([("new.pt", zpt.read_bytes())], tarfile.PAX_FORMAT), "z.tar")
    assert all(f.severity < Severity.MEDIUM for f in report.findings), report.findings


@pytest.mark.parametrize("gap", [b"\0" * 1024, b"\x01" * 512])
def test_member_after_where_tarfile_stops(scan_bytes: Scan, gap: bytes) -> None:
    """GNU tar -i and tarfile(ignore_zeros=True) read past the end block or a damaged one."""
    first = _tar([("a.txt", b"hello")])
    first = first[: first.index(b"hello") + 512]  # the member, without the end blocks
    data = first + gap + _tar([("m.pkl", EVIL4)])
    report = scan_bytes(data, "m.tar")
    assert "os.system" in subjects(report)
    assert any(f.rule_id == "MLV205" and "tarfile stops" in f.message for f in report.findings)
