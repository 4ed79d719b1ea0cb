"""Red-team review r1, the non-pickle classes: each closed by design, each with hostile samples
built from bytes (harmless payloads, never rendered, loaded or run) and a benign twin that
must stay clean.

B6 chat templates known by name; B7 configs past the decode bound; B8 GGUF metadata walked
to its end; B10 exact Git LFS pointers, and skipping only them; B11 TorchScript extension
ops judged per op; ``scan`` walks ``.git``; HDF5 after a user block in compressed members.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import pytest

from mlverify._internal.scan import Severity, scan_file
from mlverify._internal.scan.model import ScanReport
from tests.scan.conftest import rules

PAYLOAD = "{{ cycler.__init__.__globals__.os.popen('true').read() }}"
LOOP = "{% for m in messages %}{{ m.content }}{% endfor %}"
EVIL_PICKLE = b"cos\nsystem\n(S'true'\ntR."  # built from bytes, never loaded


def _worst(report: ScanReport) -> Severity:
    return report.max_severity or Severity.INFO


def _tar(members: dict[str, bytes]) -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


# -- B6: chat templates by file name ------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("a_nowords.jinja", PAYLOAD + "\n"),  # no chat keyword at all
        ("c_control.jinja", "{#\x01#}" + LOOP + PAYLOAD),  # a control byte
        ("e_pad.jinja", " " * 5000 + "\n" + LOOP + PAYLOAD),  # the tag past the first 4 KiB
        ("chat_template.jinja", "\x00\x01" + PAYLOAD),  # NUL bytes do not make it data
        ("tool_use.j2", PAYLOAD),
        ("chat_template.txt", PAYLOAD),
        ("Template.JINJA2", PAYLOAD),
    ],
)
def test_a_file_named_as_a_template_is_judged_whatever_it_holds(
    tmp_path: Path, name: str, text: str
) -> None:
    pytest.importorskip("jinja2")
    p = tmp_path / name
    p.write_bytes(text.encode())
    report = scan_file(p)
    assert "MLV601" in rules(report), report.findings
    assert "chat-template" in report.formats


def test_a_named_template_in_an_archive_is_judged(tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    p = tmp_path / "model.zip"
    p.write_bytes(_zip({"model/chat_template.jinja": (" " * 5000 + PAYLOAD).encode()}))
    report = scan_file(p)
    assert any(f.rule_id == "MLV601" and f.member.endswith("chat_template.jinja")
               for f in report.findings)  # fmt: skip


def test_the_name_in_the_artifact_counts_not_the_blob_name(tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    blob = tmp_path / ("a" * 64)  # a Hugging Face cache blob: named by its hash
    blob.write_text(PAYLOAD)
    assert "MLV601" in rules(scan_file(blob, display="snap/chat_template.jinja"))


def test_a_named_template_past_the_bound_or_unparsed_is_a_finding(tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    from mlverify._internal.scan.formats.chat_template import MAX_TEMPLATE

    big = tmp_path / "chat_template.jinja"
    big.write_bytes(b" " * (MAX_TEMPLATE + 1) + PAYLOAD.encode())
    report = scan_file(big)
    assert "MLV302" in rules(report) and _worst(report) >= Severity.MEDIUM
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}" + PAYLOAD)  # no endfor: jinja2 cannot parse
    report = scan_file(broken)
    assert "MLV602" in rules(report) and _worst(report) >= Severity.MEDIUM


def test_real_templates_by_name_stay_clean(tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    from tests.scan.chat_templates import BENIGN

    for i, template in enumerate(BENIGN.values()):
        p = tmp_path / f"t{i}" / "chat_template.jinja"
        p.parent.mkdir()
        p.write_text(template)
        report = scan_file(p)
        assert _worst(report) == Severity.INFO, (i, report.findings)
        assert report.formats == ("chat-template",)


def test_other_text_is_judged_by_keywords_anywhere_not_by_name(tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    hidden = tmp_path / "prompt.txt"
    hidden.write_text(" " * 6000 + LOOP + PAYLOAD)  # past the first 4 KiB
    assert "MLV601" in rules(scan_file(hidden))
    readme = tmp_path / "README.md"
    readme.write_text("Use {{ name }} in your messages.\n" + "{% broken " * 3)
    report = scan_file(readme)
    assert report.findings == () and report.status.value == "data"
    # a name that is not a file's name (a value inside a pickle, "x@12") is not a template name
    from mlverify._internal.scan.formats.chat_template import file_name, named_template
    from mlverify._internal.scan.source import bytes_source

    assert file_name(bytes_source(b"", "model.pkl@12")) == ""
    assert file_name(bytes_source(b"", "a.zip!dir/chat_template.jinja")) == "chat_template.jinja"
    assert named_template("chat_template.jinja") and not named_template("chat_template.json")
    assert not named_template("config.json") and not named_template("README.md")


# -- B7: configs by name past the decode bound -------------------------------------------
def test_a_config_by_name_past_the_bound_is_a_finding(tmp_path: Path) -> None:
    from mlverify._internal.scan.formats.configs import MAX_CONFIG

    p = tmp_path / "model_config.yaml"
    with open(p, "wb") as f:
        f.write(b"# " + b"x" * (MAX_CONFIG + 1024) + b"\n")
        f.write(b"model: {_target_: os.system, _args_: ['true']}\n")
    report = scan_file(p)
    assert "MLV302" in rules(report) and _worst(report) >= Severity.MEDIUM


@pytest.mark.parametrize("name", ["config.yaml", "c.yml", "big.json", "data/hydra.YAML"])
def test_every_config_name_is_searched_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    from mlverify._internal.scan.formats import configs

    monkeypatch.setattr(configs, "MAX_CONFIG", 4096)
    monkeypatch.setattr(configs, "_CHUNK", 1000)  # the hint straddles a chunk's end
    p = tmp_path / name
    p.parent.mkdir(exist_ok=True)
    pad = b"# " + b"y" * 4995 + b"\n"
    p.write_bytes(pad + b"m: {_target_: os.system}\n")
    assert "MLV302" in rules(scan_file(p))
    # utf-16 text (what json.loads reads too) is searched through its decoder
    p.write_bytes(("\ufeff# " + "y" * 4995 + "\n" + "m: {_target_: os.system}\n").encode("utf-16"))
    assert "MLV302" in rules(scan_file(p))


@pytest.mark.parametrize(
    ("tail", "flagged"),
    [
        (rb'{"\u005ftarget_": "os.system"}', True),  # a key spelled with escapes
        (rb'{"a": "\U0000005f\x5ftarget_"}', True),
        (b'k: "_tar\\\n   get_"\n', True),  # YAML joins an escaped line break
        (rb'{"a": "\UFFFFFFFF", "_target_": "os.system"}', True),  # an escape past Unicode
        (rb'{"vocab": {"\u0120the": 1, "\n": 2, "\\": 3}}', False),  # a tokenizer's escapes
    ],
)
def test_big_configs_resolve_escapes_before_searching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: bytes, flagged: bool
) -> None:
    from mlverify._internal.scan.formats import configs

    monkeypatch.setattr(configs, "MAX_CONFIG", 4096)
    p = tmp_path / "tokenizer.json"
    p.write_bytes(b" " * 5000 + tail)
    assert ("MLV302" in rules(scan_file(p))) is flagged


def test_big_configs_and_text_without_code_keys_stay_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlverify._internal.scan.formats import configs

    monkeypatch.setattr(configs, "MAX_CONFIG", 4096)
    p = tmp_path / "config.yaml"
    p.write_text("layers:\n" + "".join(f"  - width: {i}\n" for i in range(2000)))
    report = scan_file(p)
    assert report.findings == () and report.status.value == "data"
    csv = tmp_path / "train.csv"  # not a config name: not searched past the bound
    csv.write_text("a,b\n" * 3000 + "x,_target_\n")
    assert scan_file(csv).findings == ()
    small = tmp_path / "small.yaml"
    small.write_text("m: {_target_: torch.nn.Linear, in_features: 2, out_features: 2}\n")
    assert _worst(scan_file(small)) <= Severity.LOW


# -- B8: GGUF metadata walked to its end -------------------------------------------------
def _s(x: str) -> bytes:
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


def _gguf(kv: bytes, n_kv: int) -> bytes:
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, n_kv) + kv
    return header + b"\0" * ((-len(header)) % 32)


def test_gguf_template_after_a_million_keys_is_judged(tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    n = 1_000_001
    filler = b"".join(_s(f"k{i:07d}") + struct.pack("<IB", 0, 1) for i in range(n))
    kv = filler + _s("tokenizer.chat_template") + struct.pack("<I", 8) + _s(PAYLOAD)
    p = tmp_path / "kvcap.gguf"
    p.write_bytes(_gguf(kv, n + 1))
    assert "MLV601" in rules(scan_file(p))


def test_gguf_past_the_value_bound_is_a_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlverify._internal.scan.formats import gguf

    monkeypatch.setattr(gguf, "MAX_VALUES", 100)
    many = b"".join(_s(f"k{i}") + struct.pack("<IB", 0, 1) for i in range(150))
    p = tmp_path / "many.gguf"
    p.write_bytes(_gguf(many, 150))
    assert "MLV302" in rules(scan_file(p))
    # array items count too: a string array past the bound
    arr = _s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 150)
    arr += b"".join(_s("t") for _ in range(150))
    p.write_bytes(_gguf(arr, 1))
    assert "MLV302" in rules(scan_file(p))
    # below the bound: walked, clean
    monkeypatch.setattr(gguf, "MAX_VALUES", 1000)
    report = scan_file(p)
    assert report.findings == () and report.formats == ("gguf",)


def test_gguf_key_count_past_the_table_and_odd_template_types(tmp_path: Path) -> None:
    one = _s("general.name") + struct.pack("<I", 8) + _s("tiny")
    p = tmp_path / "lies.gguf"
    p.write_bytes(_gguf(one, 2**63))  # n_kv far beyond the bytes: truncated, never clean
    assert _worst(scan_file(p)) >= Severity.MEDIUM
    arr = _s("tokenizer.chat_template") + struct.pack("<IIQ", 9, 8, 1) + _s(PAYLOAD)
    p.write_bytes(_gguf(arr, 1))  # a template key that is not a string: not judged
    assert "MLV602" in rules(scan_file(p))


# -- B10: exact Git LFS pointers; only they are skipped ----------------------------------
POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 12345\n"
)


@pytest.mark.parametrize(
    "data",
    [
        POINTER.replace(b"\n", b"\r\n"),  # CRLF
        POINTER + b"x",  # anything after the pointer (a zip, a pickle)
        POINTER + _zip({"model.pkl": EVIL_PICKLE}),
        POINTER.rstrip(b"\n"),  # no final LF
        b"version https://git-lfs.github.com/spec/v1\nsize 12345\n"
        + POINTER.split(b"\n")[1]
        + b"\n",  # keys out of order
        POINTER.replace(b"oid sha256:4d7a", b"oid sha256:4D7A"),  # upper-case hex
        POINTER.replace(b"size 12345", b"size 012345"),
        POINTER.replace(b"size 12345", b"size 99999999999999999999"),  # past int64
        POINTER.replace(b"\nsize", b"\next-0-foo sha256:" + b"a" * 64 + b"\nsize"),
        POINTER.replace(b"version", b" version"),
        b"\x80\x04" + POINTER,
    ],
)
def test_only_exact_pointers_are_pointers(data: bytes) -> None:
    from mlverify._internal.lfs import parse_pointer

    assert parse_pointer(POINTER) is not None
    assert parse_pointer(data) is None


def test_a_pointer_prefix_on_a_zip_is_content_and_scanned(tmp_path: Path) -> None:
    p = tmp_path / "m.pkl.zip"
    p.write_bytes(POINTER + _zip({"model.pkl": EVIL_PICKLE}))
    from mlverify._internal.lfs import pointers_in

    assert pointers_in(p) == [] and "MLV101" in rules(scan_file(p))
    ok = tmp_path / "weights.bin"
    ok.write_bytes(POINTER)
    assert scan_file(ok).formats == ("git-lfs-pointer",)


def _hook_check(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, path: Path
) -> tuple[int, str]:
    from tests.core.helpers import run

    monkeypatch.setenv("PRE_COMMIT", "1")
    r = run(capsys, "check", "--no-cache", path)
    return r.code, r.err


def test_hooks_skip_only_the_pointers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "weights.bin").write_bytes(POINTER)
    (d / "sub" / "model.pkl").write_bytes(EVIL_PICKLE)
    code, err = _hook_check(capsys, monkeypatch, d)
    assert code == 1, err
    assert "weights.bin" in err and "model.pkl" in err and "MLV101" in err
    # the benign twin: the pointer and a clean config: skipped (exit 0), saying what was scanned
    (d / "sub" / "model.pkl").unlink()
    (d / "config.json").write_text(json.dumps({"hidden_size": 8}))
    code, err = _hook_check(capsys, monkeypatch, d)
    assert code == 0, err
    assert "(skipped)" in err and "weights.bin" in err and "1 other file(s) were scanned" in err
    # a pickle disguised with the pointer's first lines is not a pointer: checked, denied
    (d / "weights.bin").write_bytes(POINTER + _zip({"model.pkl": EVIL_PICKLE}))
    code, err = _hook_check(capsys, monkeypatch, d)
    assert code == 1, err


@pytest.mark.parametrize("absolute", [True, False], ids=["absolute-link", "relative-link"])
def test_hooks_walk_the_rest_as_check_does(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    absolute: bool,
) -> None:
    """red-team r3: beside a pointer, a symlinked directory holding a malicious pickle was
    never walked (skipped, exit 0); the rest is walked as check walks it: refused (the
    pointers are found by check's own walk and scan, so the link stops it first: exit 2,
    could not be checked, as check of the same directory without the pointer)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.pkl").write_bytes(EVIL_PICKLE)
    d = tmp_path / "model"
    d.mkdir()
    (d / "weights.bin").write_bytes(POINTER)
    (d / "sub").symlink_to(outside if absolute else Path("..") / "outside")
    code, err = _hook_check(capsys, monkeypatch, d)
    assert code == 2 and "symlink" in err and "could not be checked" in err, err


# -- B11: TorchScript extension ops per op -----------------------------------------------
def _ts(tmp_path: Path, body: str) -> ScanReport:
    code = (
        "class M(Module):\n  __parameters__ = []\n  __buffers__ = []\n"
        "  def __setstate__(self: __torch__.M, state: Tuple[Tensor]) -> None:\n"
        f"    {body}\n    return None\n"
    )
    p = tmp_path / "ts.pt"
    data = pickle.dumps({}, protocol=2)  # an empty dict: benign
    p.write_bytes(_zip({"archive/data.pkl": data, "archive/code/__torch__.py": code.encode()},
                       zipfile.ZIP_STORED))  # fmt: skip
    return scan_file(p)


def _ts_severity(report: ScanReport) -> Severity:
    return max((f.severity for f in report.findings if f.rule_id in ("MLV801", "MLV802")),
               default=Severity.INFO)  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        'ops.image.write_file("/tmp/x.pth", (state)[0])',
        'ops.image.write_png((state)[0], "/tmp/x.png", 6)',
        'ops.image.write_jpeg((state)[0], "/tmp/x.jpg")',
        '_0 = ops.image.read_file("/etc/passwd")',
        'torch.ops.image.write_file("/tmp/x", (state)[0])',
        '_0 = ops.torchaudio.sox_io_load_audio_file("/etc/passwd", None, None)',
        "_0 = ops.torchvision.save_tensor((state)[0])",
        '_0 = ops.mylib.download_url("http://h/x")',
        '_0 = torch.classes.torchaudio.ffmpeg_StreamReader("/dev/video0")',
        '_0 = torch.classes.evil.FileWriter("/tmp/x")',
        "_0 = ops.symm_mem.stream_write_value32_((state)[0], 0, 1)",
        '_0 = ops.aten._save_jit_module((state)[0], "/tmp/x")',  # built-in namespaces too
        '_0 = ops.prim.read_file("/etc/passwd")',
        "_0 = getattr(ops.image, name)((state)[0])",  # a computed op name: any op
    ],
)
def test_io_ops_of_any_extension_namespace_are_high(tmp_path: Path, body: str) -> None:
    report = _ts(tmp_path, body)
    assert "MLV801" in rules(report), report.findings


@pytest.mark.parametrize(
    ("body", "severity"),
    [
        ("_0 = ops.torchvision.nms((state)[0], (state)[0], 0.5)", Severity.LOW),
        ("_0 = ops.image.decode_png((state)[0], 0, False)", Severity.LOW),
        ("_0 = ops.image.encode_jpeg((state)[0], 75)", Severity.LOW),
        ("_0 = ops.image.some_new_op((state)[0])", Severity.MEDIUM),  # not on the op list
        ("_0 = ops.torchvision.unknown_thing((state)[0])", Severity.MEDIUM),
        ("_0 = ops.mylib.fused((state)[0])", Severity.MEDIUM),
        ("_0 = ops._test.anything((state)[0])", Severity.MEDIUM),  # not shipped to users
        ("_0 = ops.inductor._reinterpret_tensor((state)[0], [1], [1], 0)", Severity.MEDIUM),
        ("_0 = torch.relu((state)[0])", Severity.INFO),
        ("_0 = ops.aten.record_stream((state)[0], 0)", Severity.INFO),  # a CUDA stream
    ],
)
def test_extension_ops_are_judged_op_by_op(tmp_path: Path, body: str, severity: Severity) -> None:
    assert _ts_severity(_ts(tmp_path, body)) == severity


# -- scan walks .git; HDF5 after a user block in a compressed member ---------------------
def test_scan_walks_git_directories(tmp_path: Path) -> None:
    from mlverify._internal.scan.engine import scan_paths

    hidden = tmp_path / "model" / "sub" / ".git" / "x.pkl"
    hidden.parent.mkdir(parents=True)
    hidden.write_bytes(EVIL_PICKLE)
    (tmp_path / "model" / "config.json").write_text("{}")
    reports = scan_paths([tmp_path / "model"])
    assert any(r.path.endswith(".git/x.pkl") and "MLV101" in rules(r) for r in reports)


def test_hdf5_after_a_user_block_is_found_in_compressed_members(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    import gzip

    h5 = tmp_path / "w.h5"
    with h5py.File(h5, "w", userblock_size=8192) as f:
        f.attrs["model_config"] = json.dumps(
            {"class_name": "Lambda", "config": {"function": "x"}}
        )  # a config to judge: Keras reads it
    data = h5.read_bytes()
    assert data[:8] != b"\x89HDF\r\n\x1a\n" and data[8192:8200] == b"\x89HDF\r\n\x1a\n"
    plain = scan_file(h5)
    assert "hdf5" in " ".join(plain.formats) or "keras-h5" in plain.formats
    for name, blob in (
        ("w.zip", _zip({"model.weights.h5": data})),
        ("w.keras", _zip({"config.json": b"{}", "sub/x.hdf5": data})),
        ("t.tar.gz", gzip.compress(_tar({"model.weights.h5": data}))),
    ):
        p = tmp_path / name
        p.write_bytes(blob)
        report = scan_file(p)
        assert set(plain.formats) - {"hdf5"} <= set(report.formats), (name, report.formats)
        assert rules(plain) <= rules(report), (name, report.findings)
    # the benign twin: zeros in a deflated member named as HDF5 are not HDF5
    p = tmp_path / "zeros.zip"
    p.write_bytes(_zip({"blob.h5": b"\0" * 100_000}))
    assert not any("hdf5" in f or "keras" in f for f in scan_file(p).formats)
