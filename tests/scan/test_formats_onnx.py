"""ONNX: parsed with onnx's schema in any field order; external data checked everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlverify._internal.scan import Severity, scan_file
from tests.scan.conftest import rules
from tests.scan.format_samples import Sample, onnx_samples

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    return onnx_samples(tmp_path_factory.mktemp("onnx"))


def test_every_attack_is_caught_and_every_real_file_passes(samples: list[Sample]) -> None:
    assert sum(s.malicious for s in samples) >= 15
    missed, flagged = [], []
    for s in samples:
        report = scan_file(s.path)
        assert {"onnx", "zip"} & set(report.formats), s.name
        if s.malicious and s.rule not in rules(report):
            missed.append((s.name, sorted(rules(report))))
        if not s.malicious and report.findings:
            flagged.append((s.name, [f.message for f in report.findings]))
    assert missed == [] and flagged == []


def test_traversal_is_critical(samples: list[Sample]) -> None:
    s = next(s for s in samples if s.name == "ext_subgraph_initializer")
    assert scan_file(s.path).max_severity == Severity.CRITICAL


def test_truncated_model_is_unsupported(samples: list[Sample], tmp_path: Path) -> None:
    s = next(s for s in samples if s.name == "ext_training_info")
    data = s.path.read_bytes()
    cut = tmp_path / "cut.onnx"
    # cut inside the training info: the top level no longer parses, nor does it detect;
    # then a damaged nested message inside an intact top level
    cut.write_bytes(data[:-3])
    assert scan_file(cut).status.value in ("data", "unsupported")
    idx = data.index(b"../../../etc/passwd")
    broken = bytearray(data)
    broken[idx - 30 : idx - 20] = b"\xff" * 10
    cut.write_bytes(bytes(broken))
    report = scan_file(cut)
    assert report.status.value in ("unsupported", "findings"), report


def test_without_onnx_the_model_is_unsupported(
    samples: list[Sample], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from mlverify._internal.scan.formats import onnx as onnx_format

    onnx_format.schema.cache_clear()
    monkeypatch.setitem(sys.modules, "onnx", None)
    try:
        report = scan_file(samples[0].path)
    finally:
        onnx_format.schema.cache_clear()
    assert report.status.value == "unsupported" and "MLV301" in rules(report)


def test_sentencepiece_like_protobuf_is_not_onnx(tmp_path: Path) -> None:
    from tests.scan.test_containers import _field

    p = tmp_path / "spiece.model"
    piece = _field(1, "\u2581the".encode()) + _field(3, 1)
    p.write_bytes(_field(1, piece) * 5 + _field(2, _field(1, b"m")) + _field(3, _field(1, b"n")))
    assert "onnx" not in scan_file(p).formats
