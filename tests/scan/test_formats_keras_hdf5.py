"""Keras configs and HDF5: real files written by keras / h5py pass, every attack shape is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlverify._internal.scan import Severity, scan_file
from tests.scan.conftest import rules
from tests.scan.format_samples import Sample, hdf5_samples, keras_samples

pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    out = tmp_path_factory.mktemp("kerash5")
    return keras_samples(out / "keras") + hdf5_samples(out / "h5")


def test_every_attack_is_caught_and_every_real_file_passes(samples: list[Sample]) -> None:
    assert sum(s.malicious for s in samples) >= 25
    missed, flagged = [], []
    for s in samples:
        report = scan_file(s.path)
        if s.malicious and s.rule not in rules(report):
            missed.append((s.name, sorted(rules(report))))
        if not s.malicious and (report.max_severity or Severity.INFO) > Severity.INFO:
            flagged.append((s.name, [f.message for f in report.findings]))
    assert missed == [] and flagged == []


def test_real_keras_files_are_checked_as_keras(samples: list[Sample]) -> None:
    pytest.importorskip("keras")
    real = {s.name: s for s in samples}
    report = scan_file(real["real_sequential"].path)
    assert "keras" in report.formats and report.status.value == "clean"
    assert report.findings == ()
    # the weights member and a weights-only file are data (no model_config): no finding
    weights = scan_file(real["real_weights_h5"].path)
    assert weights.findings == () and weights.status.value == "data"
    legacy = scan_file(real["real_legacy_h5_model"].path)
    assert "keras-h5" in legacy.formats and legacy.findings == ()


def test_lambda_found_by_keras_is_critical(samples: list[Sample]) -> None:
    pytest.importorskip("keras")
    s = next(s for s in samples if s.name == "real_lambda_written_by_keras")
    assert scan_file(s.path).max_severity == Severity.CRITICAL


def test_torch_module_wrapper_is_scanned_as_a_nested_pickle(samples: list[Sample]) -> None:
    s = next(s for s in samples if s.name == "torch_module_wrapper")
    report = scan_file(s.path)
    assert {"MLV504", "MLV101"} <= rules(report)
    assert any(f.member.endswith("config.json!TorchModuleWrapper") for f in report.findings)


def test_hdf5_plain_data_is_data(samples: list[Sample]) -> None:
    s = next(s for s in samples if s.name == "plain_data")
    report = scan_file(s.path)
    assert report.status.value == "data" and report.findings == ()


def test_hdf5_garbage_after_signature_is_unsupported(tmp_path: Path) -> None:
    p = tmp_path / "broken.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x01" * 600)
    report = scan_file(p)
    assert report.status.value == "unsupported" and rules(report) == {"MLV301"}


def test_hdf5_without_h5py_is_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    s = tmp_path / "x.h5"
    import h5py
    import numpy as np

    with h5py.File(s, "w") as f:
        f["x"] = np.zeros(3)
    monkeypatch.setitem(sys.modules, "h5py", None)
    report = scan_file(s)
    assert report.status.value == "unsupported" and "MLV301" in rules(report)


def test_config_json_that_is_not_keras_is_not_judged_as_keras(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "bert", "hidden_size": 8, "path": "/abs/where"}))
    assert scan_file(p).findings == ()


@pytest.mark.slow
def test_the_shipped_allowlist_is_what_the_installed_keras_gives(tmp_path: Path) -> None:
    import subprocess
    import sys

    keras = pytest.importorskip("keras")
    shipped = json.loads(
        (
            Path(__file__).parents[2] / "mlverify/_internal/scan/data/keras_allowlist.json"
        ).read_text()
    )
    if shipped["keras_version"] != keras.__version__:
        pytest.skip(f"allowlist harvested from Keras {shipped['keras_version']}")
    out = tmp_path / "allow.json"
    script = Path(__file__).parents[2] / "scripts/harvest_keras_allowlist.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True,
                   capture_output=True, env={**__import__("os").environ,
                                             "KERAS_BACKEND": "torch"})  # fmt: skip
    assert json.loads(out.read_text()) == shipped
    # nothing that runs code or reads files is on it
    refs = set(shipped["public"]) | set(shipped["internal"])
    for bad in (
        "keras.layers.Lambda",
        "keras.layers.TorchModuleWrapper",
        "keras.utils.get_file",
        "keras.config.enable_unsafe_deserialization",
        "keras.saving.load_model",
    ):
        assert bad not in refs


def test_a_file_that_crashes_the_hdf5_library_is_unsupported() -> None:
    # found by mutating a real h5py file: libhdf5 dies with SIGSEGV on it; the library
    # runs in a child process, so the scan reports it instead of dying
    vector = Path(__file__).parent / "data" / "hdf5_segfaults_libhdf5.h5"
    report = scan_file(vector)
    assert report.status.value == "unsupported" and rules(report) == {"MLV301"}


def test_the_hdf5_probe_runs_alone_as_a_script(samples: list[Sample], tmp_path: Path) -> None:
    # only the standard library and h5py: the format modules next to it (pickle.py, ...)
    # must not shadow the standard library there, whatever the environment
    import os
    import subprocess
    import sys

    import mlverify._internal.scan.formats as formats

    s = next(s for s in samples if s.name == "model_config_lambda")
    script = Path(formats.__file__).with_name("_h5probe.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, str(script), str(s.path), "0", str(s.path.stat().st_size)],
        capture_output=True, text=True, check=True, cwd=script.parent, env=env,
    )  # fmt: skip
    facts = json.loads(out.stdout)
    assert "error" not in facts and set(facts["configs"]) == {"model_config"}
