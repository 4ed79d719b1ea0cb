"""SavedModel: ops judged against the compute-op allowlist, in any field order."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlverify._internal.scan import Severity, scan_file
from tests.scan.conftest import rules
from tests.scan.format_samples import Sample, savedmodel_samples


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    return savedmodel_samples(tmp_path_factory.mktemp("sm"))


def test_every_attack_is_caught_and_the_tf2_shape_passes(samples: list[Sample]) -> None:
    assert sum(s.malicious for s in samples) >= 15
    missed, flagged = [], []
    for s in samples:
        report = scan_file(s.path)
        assert {"tf-savedmodel", "keras-metadata", "zip"} & set(report.formats), s.name
        if s.malicious and s.rule not in rules(report):
            missed.append((s.name, sorted(rules(report))))
        if not s.malicious and (report.max_severity or Severity.INFO) > Severity.LOW:
            flagged.append((s.name, [f.message for f in report.findings]))
    assert missed == [] and flagged == []


def test_the_standard_saver_passes(samples: list[Sample]) -> None:
    # its checkpoint ops read and write at the prefix the loader feeds (red-team r5)
    report = scan_file(next(s for s in samples if s.name == "tf2_shape").path)
    assert report.findings == ()


def test_damaged_graph_is_unsupported(samples: list[Sample], tmp_path: Path) -> None:
    data = next(s for s in samples if s.name == "tf2_shape").path.read_bytes()
    i = data.index(b"MatMul")
    p = tmp_path / "saved_model.pb"
    p.write_bytes(data[: i - 6] + b"\x0f" + data[i - 5 :])  # a wire type 7 key inside
    report = scan_file(p)
    assert report.status.value in ("unsupported", "findings") and "MLV301" in rules(report)
