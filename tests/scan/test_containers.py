"""Containers and non-pickle formats: torch zip tricks, npy/npz, joblib, safetensors, ..."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import struct
import zipfile
import zlib
from collections.abc import Callable

import pytest

from mlverify._internal.scan import Limits, Severity
from tests.scan.builders import EVIL0, EVIL4, binbytes, call4, p4, sg
from tests.scan.conftest import Scan, rules, subjects


def make_zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


TORCHLIKE = {"archive/data.pkl": EVIL4, "archive/version": b"3\n", "archive/byteorder": b"little"}


def test_torch_zip_with_malicious_data_pkl(scan_bytes: Scan) -> None:
    report = scan_bytes(make_zip(TORCHLIKE), name="model.pt")
    assert "pytorch-zip" in report.formats
    f = next(f for f in report.findings if f.subject == "os.system")
    assert f.member == "archive/data.pkl" and f.severity == Severity.CRITICAL


def test_pickle_member_with_any_name(scan_bytes: Scan) -> None:
    data = make_zip({"archive/data.pkl": p4(b"N"), "archive/data/0": EVIL0, "x/.hidden": EVIL4})
    report = scan_bytes(data)
    assert {f.member for f in report.findings if f.subject == "os.system"} == {
        "archive/data/0",
        "x/.hidden",
    }


def test_deflated_members(scan_bytes: Scan) -> None:
    report = scan_bytes(make_zip(TORCHLIKE, zipfile.ZIP_DEFLATED))
    assert "os.system" in subjects(report)


def _patch_all(data: bytes, sig: bytes, field_off: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    i = out.find(sig)
    while i >= 0:
        struct.pack_into(fmt, out, i + field_off, value)
        i = out.find(sig, i + 4)
    return bytes(out)


def test_encryption_flag_bit_does_not_hide_the_member(scan_bytes: Scan) -> None:
    data = make_zip(TORCHLIKE)
    data = _patch_all(data, b"PK\x03\x04", 6, "<H", 0x1)
    data = _patch_all(data, b"PK\x01\x02", 8, "<H", 0x1)
    report = scan_bytes(data)
    assert "os.system" in subjects(report)
    assert "MLV201" in rules(report)


def test_crc_mismatch(scan_bytes: Scan) -> None:
    data = _patch_all(make_zip(TORCHLIKE), b"PK\x01\x02", 16, "<I", 0xDEADBEEF)
    report = scan_bytes(data)
    assert "os.system" in subjects(report)
    assert "MLV202" in rules(report)


def test_local_central_name_mismatch(scan_bytes: Scan) -> None:
    data = make_zip({"archive/data.pkl": EVIL4})
    i = data.find(b"archive/data.pkl")  # first occurrence: the local header
    data = data[:i] + b"archive/xxxx.pkl" + data[i + 16 :]
    report = scan_bytes(data)
    assert "MLV203" in rules(report)
    assert "os.system" in subjects(report)


def test_prefix_and_appended_data(scan_bytes: Scan) -> None:
    report = scan_bytes(b"JUNK" * 100 + make_zip(TORCHLIKE) + b"TRAILER" * 10)
    assert "os.system" in subjects(report)
    assert "MLV204" in rules(report)


def test_pickle_zip_polyglot(scan_bytes: Scan) -> None:
    # pickle.load reads the front, torch.load reads the zip: both must be scanned
    benign_zip = make_zip({"archive/data.pkl": p4(b"N")})
    report = scan_bytes(EVIL0 + benign_zip)
    assert {"pickle", "pytorch-zip"} <= set(report.formats)
    assert "os.system" in subjects(report)
    report = scan_bytes(p4(b"N") + make_zip(TORCHLIKE))
    assert "os.system" in subjects(report)


def test_zip_in_zip(scan_bytes: Scan) -> None:
    inner = make_zip(TORCHLIKE)
    report = scan_bytes(make_zip({"outer/model.pt": inner}, zipfile.ZIP_DEFLATED))
    f = next(f for f in report.findings if f.subject == "os.system")
    assert f.member == "outer/model.pt!archive/data.pkl"


def test_zip_nesting_depth_is_bounded(scan_bytes: Scan) -> None:
    data = make_zip({"a": EVIL4})
    for i in range(10):
        data = make_zip({f"z{i}.zip": data})
    report = scan_bytes(data)
    assert "MLV302" in rules(report)


def test_zip_bomb_ratio(scan_bytes: Scan) -> None:
    data = make_zip({"bomb": b"\0" * (40 * 1024 * 1024)}, zipfile.ZIP_DEFLATED)
    report = scan_bytes(data)
    assert "MLV302" in rules(report)


def test_zip_bomb_lying_sizes_are_bounded_while_streaming(scan_bytes: Scan) -> None:
    data = make_zip({"bomb": p4(b"N") + b"\0" * (4 * 1024 * 1024)}, zipfile.ZIP_DEFLATED)
    report = scan_bytes(data, limits=Limits(max_decompressed=1024 * 1024, ratio_floor=1024))
    assert "MLV302" in rules(report)


def test_overlapping_members(scan_bytes: Scan) -> None:
    data = bytearray(make_zip({"a": b"x" * 100, "b": b"y" * 100}))
    cds = [i for i in range(len(data)) if data[i : i + 4] == b"PK\x01\x02"]
    first_lho = struct.unpack_from("<I", data, cds[0] + 42)[0]
    struct.pack_into("<I", data, cds[1] + 42, first_lho)
    report = scan_bytes(bytes(data))
    assert "MLV302" in rules(report)


def test_unsupported_zip_method(scan_bytes: Scan) -> None:
    data = _patch_all(make_zip({"archive/data.pkl": EVIL4}), b"PK\x01\x02", 10, "<H", 99)
    report = scan_bytes(data)
    assert "MLV301" in rules(report)


def test_7z_is_unsupported_never_clean(scan_bytes: Scan) -> None:
    report = scan_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\0" * 100)
    assert report.status.value == "unsupported"
    assert report.max_severity == Severity.MEDIUM


def test_legacy_tar_checkpoint(scan_bytes: Scan) -> None:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in (("sys_info", p4(b"N")), ("pickle", EVIL4), ("storages", b"\0" * 64)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    report = scan_bytes(buf.getvalue())
    assert "tar" in report.formats
    assert any(f.member == "pickle" and f.subject == "os.system" for f in report.findings)


def _npy(descr: object, body: bytes) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": (2,)}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def test_npy_object_array_is_a_pickle(scan_bytes: Scan) -> None:
    report = scan_bytes(_npy("|O", EVIL4))
    assert "os.system" in subjects(report)
    report = scan_bytes(_npy("<f8", b"\0" * 16))
    assert report.findings == () and report.formats == ("npy",)
    # a structured dtype: only real object fields make the body a pickle
    report = scan_bytes(_npy([("Orange", "<f8")], b"\0" * 16))
    assert report.findings == ()
    report = scan_bytes(_npy([("a", "<f8"), ("b", "|O")], EVIL4))
    assert "os.system" in subjects(report)


def test_npz_with_object_member(scan_bytes: Scan) -> None:
    report = scan_bytes(make_zip({"a.npy": _npy("<f8", b"\0" * 16), "b.npy": _npy("|O", EVIL0)}))
    assert any(f.member == "b.npy" and f.subject == "os.system" for f in report.findings)


@pytest.mark.parametrize(
    "compress",
    [zlib.compress, gzip.compress, bz2.compress, lzma.compress,
     lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE)],
)  # fmt: skip
def test_joblib_style_compressed_pickles(
    scan_bytes: Scan, compress: Callable[[bytes], bytes]
) -> None:
    report = scan_bytes(compress(EVIL4))
    assert "os.system" in subjects(report)


def test_corrupt_gzip_is_unsupported(scan_bytes: Scan) -> None:
    report = scan_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 40)
    assert "MLV301" in rules(report)


def test_gzip_bomb(scan_bytes: Scan) -> None:
    n = 8 * 1024 * 1024
    data = gzip.compress(b"\x80\x04\x8e" + struct.pack("<Q", n) + b"\0" * n + b".")
    report = scan_bytes(data, limits=Limits(max_decompressed=1024 * 1024))
    assert "MLV302" in rules(report)


def test_joblib_payload_after_inline_array(scan_bytes: Scan) -> None:
    np = pytest.importorskip("numpy")
    joblib = pytest.importorskip("joblib")
    buf = io.BytesIO()
    joblib.dump(
        {"w": np.arange(1000, dtype=np.float64), "o": np.array([1, "a"], dtype=object)}, buf
    )
    benign = buf.getvalue()
    assert benign.endswith(b".")
    evil = benign[:-1] + b"0" + call4("os", "system", "true") + b"."
    assert scan_bytes(benign).findings == ()
    report = scan_bytes(evil)
    assert "os.system" in subjects(report)


def _st(header: dict[str, object], data: bytes, hlen: int | None = None) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", hlen if hlen is not None else len(h)) + h + data


def test_safetensors_checks(scan_bytes: Scan) -> None:
    good = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    assert scan_bytes(_st(good, b"\0" * 8)).findings == ()
    bad_cases = [
        {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 800]}},  # out of range
        {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},  # size mismatch
        {"w": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}},  # dtype
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
        },  # overlap
    ]
    for case in bad_cases:
        report = scan_bytes(_st(case, b"\0" * 12))
        assert "MLV401" in rules(report), case
    report = scan_bytes(struct.pack("<Q", 12) + b"{not json!!}" + b"\0" * 8)
    assert "MLV401" in rules(report)


def test_keras_lambda(scan_bytes: Scan) -> None:
    layer = {"class_name": "Lambda", "config": {"name": "evil", "function": {"code": "4wEAAA=="}}}
    cfg = {"class_name": "Sequential", "config": {"layers": [layer]}}
    data = make_zip(
        {"config.json": json.dumps(cfg).encode(), "model.weights.h5": b"\x89HDF\r\n\x1a\n"}
    )
    report = scan_bytes(data, name="m.keras")
    assert "MLV501" in rules(report) and report.max_severity == Severity.CRITICAL


def test_hdf5_that_h5py_cannot_read_is_unsupported(scan_bytes: Scan) -> None:
    # HDF5 is parsed with h5py (tests/scan/test_formats_keras_hdf5.py): bytes after the
    # signature that are no HDF5 structure are unsupported, whatever text they hold
    pytest.importorskip("h5py")
    h5 = b"\x89HDF\r\n\x1a\n" + b"\0" * 1000
    cfg = b'{"class_name": "Functional", "config": {"layers": [{"class_name": "Lambda"}]}}'
    assert scan_bytes(h5 + cfg + b"\0" * 100).status.value == "unsupported"
    assert scan_bytes(h5).status.value == "unsupported"


def _gguf(template: str) -> bytes:
    def s(x: str) -> bytes:
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    kv = s("general.name") + struct.pack("<I", 8) + s("tiny")
    kv += s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + s("a") + s("b")
    kv += s("tokenizer.chat_template") + struct.pack("<I", 8) + s(template)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 3) + kv


CHATML = (
    "{% set ns = namespace(found=false) %}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_gguf_chat_template(scan_bytes: Scan) -> None:
    benign = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    assert scan_bytes(_gguf(benign)).findings == ()
    assert scan_bytes(_gguf(CHATML)).findings == ()
    for evil in (
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ request|attr('application') }}",
        "{{ ''['\\x5f\\x5fclass\\x5f\\x5f'] }}",
        "{{ ''['__cla' ~ 'ss__'] }}",
    ):
        report = scan_bytes(_gguf(evil))
        assert "MLV601" in rules(report), evil
    report = scan_bytes(_gguf(benign)[:-10])
    assert "MLV301" in rules(report)


def test_git_lfs_pointer_is_not_a_failure(scan_bytes: Scan) -> None:
    ptr = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 12\n"
    report = scan_bytes(ptr)
    assert report.max_severity == Severity.INFO


def test_torchscript_code_member(scan_bytes: Scan) -> None:
    code = b"def forward(self, x):\n    return __import__('os').system('true')\n"
    data = make_zip({"m/code/__torch__.py": code, "m/constants.pkl": p4(b")")})
    report = scan_bytes(data)
    assert "MLV801" in rules(report)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(num << 3) + _varint(payload)
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _onnx(location: str, domain: str = "") -> bytes:
    ext = _field(13, _field(1, b"location") + _field(2, location.encode()))
    tensor = _field(8, b"w") + _field(9, b"\0" * 1000) + _field(14, 1) + ext
    graph = _field(1, _field(4, b"Relu")) + _field(5, tensor)
    opset = _field(8, _field(1, domain.encode()) + _field(2, 17))
    return _field(1, 8) + _field(2, b"pytorch") + _field(7, graph) + opset


def test_onnx_external_data_path_escape(scan_bytes: Scan) -> None:
    assert scan_bytes(_onnx("weights.bin")).findings == ()
    assert scan_bytes(_onnx("weights.bin")).formats == ("onnx",)
    for bad in ("../../etc/passwd", "/etc/shadow", "C:\\Windows\\win.ini", "sub/../../x"):
        report = scan_bytes(_onnx(bad))
        assert "MLV701" in rules(report), bad
    assert "MLV702" in rules(scan_bytes(_onnx("w.bin", domain="evil.custom")))
    assert "MLV301" in rules(scan_bytes(_onnx("w.bin")[:-7]))


def test_tensorflow_savedmodel_ops(scan_bytes: Scan) -> None:
    def saved_model(*ops: bytes) -> bytes:
        nodes = b"".join(_field(1, _field(1, b"n") + _field(2, op)) for op in ops)
        meta = _field(1, _field(1, b"serve")) + _field(2, nodes)
        return _field(1, 1) + _field(2, meta)

    benign = scan_bytes(saved_model(b"MatMul", b"Relu"))
    assert benign.formats == ("tf-savedmodel",) and benign.findings == ()
    # a checkpoint op whose path is not the saver's placeholder (here: none) writes files
    assert scan_bytes(saved_model(b"MatMul", b"SaveV2")).max_severity == Severity.HIGH
    report = scan_bytes(saved_model(b"MatMul", b"PyFunc", b"ReadFile"))
    assert {f.subject for f in report.findings} == {"PyFunc", "ReadFile"}
    assert report.max_severity == Severity.HIGH


def test_large_nested_payload_inside_compressed_streams(scan_bytes: Scan) -> None:
    # torch.storage._load_from_bytes(<big bytes>) hides a pickle in a value larger than the
    # skip threshold; in deflate/gzip streams it cannot be re-read by offset, so it is spooled
    blob = EVIL4 + b"\0" * (200 * 1024)
    body = sg("torch.storage", "_load_from_bytes") + b"(" + binbytes(blob) + b"tR"
    outer = p4(body)
    for data in (gzip.compress(outer), make_zip({"archive/data.pkl": outer}, zipfile.ZIP_DEFLATED)):
        report = scan_bytes(data)
        assert "os.system" in subjects(report)
    assert "os.system" in subjects(scan_bytes(outer))


def test_a_scanner_failure_is_unsupported_not_a_pass(
    scan_bytes: Scan, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlverify._internal.scan.formats import safetensors as formats

    def boom(self: object, src: object, ctx: object, depth: int) -> None:
        raise ValueError("bug")

    monkeypatch.setattr(formats.SafetensorsScanner, "scan", boom)
    report = scan_bytes(
        _st({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    )
    assert report.status.value == "unsupported" and "MLV301" in rules(report)
