"""Red-team review r5: code shipped beside or inside a model is never "data".

Each kind is built from bytes (or written by the real library, with benign content), never
run or loaded: native binaries, Python source and bytecode, scripts, notebooks, Java
serialized objects, loader manifests (MLmodel, modules.json) and dependency files; Python
members of archives (a TorchServe .mar, a torch.package whose modules shadow allowlisted
names). Content is recognised whatever the name; a name only adds scrutiny.
"""

from __future__ import annotations

import io
import json
import py_compile
import struct
import zipfile
from pathlib import Path

import pytest

from mlverify._internal.scan import Severity, scan_file
from mlverify._internal.scan.formats import catalogue
from mlverify._internal.scan.model import ScanReport
from tests.core.helpers import run
from tests.scan.conftest import rules

ELF_SO = b"\x7fELF\x02\x01\x01\0" + b"\0" * 8 + struct.pack("<HH", 3, 0x3E) + b"\0" * 44
ELF_EXE = b"\x7fELF\x02\x01\x01\0" + b"\0" * 8 + struct.pack("<HH", 2, 0x3E) + b"\0" * 44
MACHO = b"\xcf\xfa\xed\xfe" + b"\0" * 60
PE = b"MZ" + b"\0" * 58 + struct.pack("<I", 64) + b"PE\0\0" + b"\0" * 60
APE = b"MZqFpD='\n" + b"\0" * 120  # an Actually Portable Executable (a llamafile)
JAVA = bytes.fromhex("aced0005737200116a6176612e7574696c2e486173684d6170")
SYSTEM_PY = "import os\nos.system('true')\n"  # written, never run


def _write(tmp: Path, name: str, data: bytes | str) -> ScanReport:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return scan_file(p)


def _worst(report: ScanReport, rule: str) -> Severity | None:
    return max((f.severity for f in report.findings if f.rule_id == rule), default=None)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "rule"),
    [
        ("libcustom_ops.so", ELF_SO, "MLV1101"),
        ("weights.bin", ELF_SO, "MLV1101"),  # content, whatever the name
        ("model.llamafile", ELF_EXE, "MLV1101"),
        ("model.llamafile", APE, "MLV1101"),
        ("op.dylib", MACHO, "MLV1101"),
        ("config.json", MACHO, "MLV1101"),  # a name that reads as data removes nothing
        ("op.dll", PE, "MLV1101"),
        ("java.model", JAVA, "MLV1104"),
        ("ops.wasm", b"\0asm\x01\0\0\0" + b"\0" * 8, "MLV1101"),
        ("run.bat", "echo x\n", "MLV1103"),
        ("run.sh", "#!/bin/sh\ntrue\n", "MLV1103"),
        ("serve", "#!/usr/bin/env python\nprint(1)\n", "MLV1103"),
        ("setup.sh", "true\n", "MLV1103"),  # a script by name, no shebang
        ("hubconf.py", "dependencies = []\n", "MLV1102"),
        ("modeling_custom.py", "class M:\n    pass\n", "MLV1102"),
        ("code/handler.py", "x = 1\n", "MLV1102"),
        ("evil.pyc", b"\0" * 32, "MLV1102"),  # named as bytecode: not judged, a finding
        ("demo.ipynb", json.dumps({"cells": [], "nbformat": 4}), "MLV1103"),
    ],
)
def test_code_is_at_least_medium(tmp_path: Path, name: str, data: bytes | str, rule: str) -> None:
    report = _write(tmp_path, name, data)
    worst = _worst(report, rule)
    assert worst is not None and worst >= Severity.MEDIUM, report.findings
    assert report.status.value == "findings"


def test_real_bytecode_is_recognised_by_content(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("x = 1\n")
    out = py_compile.compile(str(src), cfile=str(tmp_path / "blob"), doraise=True)
    src.unlink()
    report = scan_file(Path(out))  # no .pyc name: the header and the code object tell
    assert _worst(report, "MLV1102") == Severity.MEDIUM
    assert "python-bytecode" in report.formats


def test_text_is_not_taken_for_bytecode_or_code(tmp_path: Path) -> None:
    # CR LF after two characters and a 'c' where a code object would sit: text, not a .pyc
    report = _write(tmp_path, "notes.txt", b"id\r\nabcdcfghcjklcnopcrst\r\n" * 4)
    assert report.status.value == "data", report.findings
    assert _write(tmp_path, "README.md", "# A model\n\nx.py is not here\n").status.value == "data"


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("hubconf.py", SYSTEM_PY),
        ("modeling_evil.py", "import subprocess\nsubprocess.run(['true'])\n"),
        ("pipeline_evil.py", "exec('1')\n"),
        ("x.py", "__import__('os').system('true')\n"),
    ],
)
def test_python_that_reaches_processes_is_high(tmp_path: Path, name: str, body: str) -> None:
    assert _worst(_write(tmp_path, name, body), "MLV1102") == Severity.HIGH


def test_python_that_does_not_parse_is_still_code(tmp_path: Path) -> None:
    report = _write(tmp_path, "modeling_x.py", "def (:\n")
    assert _worst(report, "MLV1102") == Severity.MEDIUM


def test_notebook_shell_and_calls_are_high(tmp_path: Path) -> None:
    def nb(src: str) -> str:
        cell = {"cell_type": "code", "source": [src], "metadata": {}, "outputs": []}
        return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})

    assert _worst(_write(tmp_path, "a.ipynb", nb("!rm -rf x")), "MLV1103") == Severity.HIGH
    assert _worst(_write(tmp_path, "b.ipynb", nb(SYSTEM_PY)), "MLV1103") == Severity.HIGH
    assert _worst(_write(tmp_path, "c.json", nb("x = 1")), "MLV1103") == Severity.MEDIUM


def test_mlmodel_loader_module_and_code_paths(tmp_path: Path) -> None:
    evil = "flavors:\n  python_function:\n    loader_module: evil_loader\n    code: code\n"
    report = _write(tmp_path, "a/MLmodel", evil)
    sev = sorted(f.severity for f in report.findings if f.rule_id == "MLV1105")
    assert sev == [Severity.MEDIUM, Severity.HIGH]
    benign = "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    code: null\n"
    assert not _write(tmp_path, "b/MLmodel", benign).findings


def test_sentence_transformers_modules(tmp_path: Path) -> None:
    evil = [{"idx": 0, "name": "0", "path": "", "type": "joblib.numpy_pickle"}]
    assert _worst(_write(tmp_path, "a/modules.json", json.dumps(evil)), "MLV1105") == (
        Severity.HIGH
    )
    ok = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Pooling"}]
    assert "MLV1105" not in rules(_write(tmp_path, "b/modules.json", json.dumps(ok)))


@pytest.mark.parametrize(
    "line",
    [
        "git+https://example.invalid/evil.git",
        "--extra-index-url https://example.invalid/simple",
        "-i https://example.invalid/simple",
        "evil @ https://example.invalid/evil-1.0.tar.gz",
        "./wheels/evil-1.0-py3-none-any.whl",
        "-e ../evil",
    ],
)
def test_requirements_outside_the_index(tmp_path: Path, line: str) -> None:
    report = _write(tmp_path, "requirements.txt", f"numpy==1.26\n{line}\n")
    assert _worst(report, "MLV1106") == Severity.MEDIUM


def test_benign_requirements_and_conda_are_clean(tmp_path: Path) -> None:
    req = _write(tmp_path, "requirements.txt", "numpy==1.26  # arrays\ntorch~=2.1\n")
    assert not req.findings
    conda = "name: env\nprefix: /opt/conda/envs/env\nchannels:\n- conda-forge\n"
    conda += "dependencies:\n- python=3.11\n- pip:\n  - mlflow==2.9.0\n"
    assert not _write(tmp_path, "conda.yaml", conda).findings
    bad = conda + "  - git+https://example.invalid/evil.git\n"
    assert _worst(_write(tmp_path, "x/conda.yaml", bad), "MLV1106") == Severity.MEDIUM


def test_torchserve_mar_handler_is_code(tmp_path: Path) -> None:
    mar = _zip({"MAR-INF/MANIFEST.json": b'{"model": {"handler": "handler.py"}}',
                "handler.py": SYSTEM_PY.encode()})  # fmt: skip
    report = _write(tmp_path, "model.mar", mar)
    assert _worst(report, "MLV1102") == Severity.HIGH


def test_code_dir_is_torchscript_only_beside_constants_pkl(tmp_path: Path) -> None:
    ts_code = b"class M(Module):\n  __parameters__ = []\n"
    ts = _write(tmp_path, "a.pt", _zip({"archive/constants.pkl": b"\x80\x02).",
                                          "archive/code/__torch__.py": ts_code}))  # fmt: skip
    assert "MLV1102" not in rules(ts)  # TorchScript IR: judged by the TorchScript scanner
    # the same member in an archive torch.load does not take for TorchScript: Python
    plain = _write(tmp_path, "b.zip", _zip({"archive/code/__torch__.py": ts_code}))
    assert _worst(plain, "MLV1102") == Severity.MEDIUM
    # TorchScript code that reads as Python reaching processes: high either way
    evil = _write(tmp_path, "c.pt", _zip({"archive/constants.pkl": b"\x80\x02).",
                                          "archive/code/x.py": SYSTEM_PY.encode()}))  # fmt: skip
    assert _worst(evil, "MLV1102") == Severity.HIGH


def test_real_torchscript_archive_stays_clean(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    p = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(p))
    report = scan_file(p)
    assert not [f for f in report.findings if f.severity >= Severity.LOW], report.findings


def _package(tmp: Path, name: str, modules: dict[str, str], obj: object) -> Path:
    pytest.importorskip("torch")
    from torch.package import PackageExporter

    p = tmp / name
    with PackageExporter(str(p)) as exp:
        for mod, src in modules.items():
            exp.save_source_string(mod, src)
        exp.save_pickle("model", "model.pkl", obj)
    return p


def test_torch_package_shadowing_an_allowlisted_module(tmp_path: Path) -> None:
    import collections

    # benign module text, written by the real exporter: the shadowing alone is the finding
    p = _package(tmp_path, "shadow.pt", {"collections": "x = 1\n"}, collections.OrderedDict(a=1))
    report = scan_file(p)
    assert "torch-package" in report.formats
    shadowed = [f for f in report.findings if f.rule_id == "MLV101"]
    assert shadowed and shadowed[0].severity == Severity.HIGH
    assert "collections.OrderedDict" in shadowed[0].subject + shadowed[0].message
    assert _worst(report, "MLV1102") == Severity.MEDIUM  # the shipped module is code


def test_torch_package_without_shadowing_judges_imports_as_usual(tmp_path: Path) -> None:
    import collections

    p = _package(tmp_path, "plain.pt", {"helpers": "x = 1\n"}, collections.OrderedDict(a=1))
    report = scan_file(p)
    assert "MLV101" not in rules(report)  # collections is not shipped: the allowlisted name
    assert _worst(report, "MLV1102") == Severity.MEDIUM


def test_default_policy_denies_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    (model / "hubconf.py").write_text("dependencies = []\n")
    assert run(capsys, "check", model).code == 1
    (model / "hubconf.py").unlink()
    (model / "libop.so").write_bytes(ELF_SO)
    assert run(capsys, "check", model).code == 1
    (model / "libop.so").unlink()
    assert run(capsys, "check", model).code == 0


def test_every_code_rule_is_catalogued() -> None:
    ids = set(catalogue())
    assert {"MLV1101", "MLV1102", "MLV1103", "MLV1104", "MLV1105", "MLV1106"} <= ids


def test_git_hook_samples_are_inert_and_hooks_are_high(tmp_path: Path) -> None:
    hooks = tmp_path / "model" / ".git" / "hooks"
    sample = _write(hooks, "pre-commit.sample", "#!/bin/sh\nexit 0\n")  # what git init writes
    assert _worst(sample, "MLV1103") == Severity.LOW
    hook = _write(hooks, "post-checkout", "#!/bin/sh\ntrue\n")  # git runs it by its name
    assert _worst(hook, "MLV1103") == Severity.HIGH
    elsewhere = _write(tmp_path / "model", "pre-commit.sample", "#!/bin/sh\nexit 0\n")
    assert _worst(elsewhere, "MLV1103") == Severity.MEDIUM
