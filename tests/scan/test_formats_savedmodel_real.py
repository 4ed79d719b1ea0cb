"""SavedModels written by TensorFlow 2.21 / Keras 3.15 (benign): recognised, nothing flagged.

Made in a separate venv with ``tf.saved_model.save`` / ``keras.Model.export``:
``module_matmul_relu`` (a tf.Module, @tf.function matmul + relu), ``keras_export`` (a
Keras 3 Sequential, ``model.export``), ``static_hash_table`` (a tf.lookup.StaticHashTable
from in-memory tensors), ``optimizer_step`` (variables, an SGD step and its iteration
counter). Each keeps ``saved_model.pb`` and ``variables/`` as TF wrote them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlverify._internal.scan import Severity, scan_file, scan_paths

DATA = Path(__file__).parent / "data" / "savedmodels"
MODELS = ("module_matmul_relu", "keras_export", "static_hash_table", "optimizer_step")


@pytest.mark.parametrize("name", MODELS)
def test_real_savedmodel_is_recognised_and_passes(name: str) -> None:
    report = scan_file(DATA / name / "saved_model.pb")
    assert "tf-savedmodel" in report.formats
    # the V2 saver's checkpoint ops work on the prefix the loader feeds: nothing flagged
    assert report.findings == ()


@pytest.mark.parametrize("name", MODELS)
def test_real_savedmodel_directory_has_nothing_at_medium(name: str) -> None:
    reports = scan_paths([DATA / name])
    assert len(reports) == 3  # saved_model.pb, variables.index, variables.data-*
    flagged = [
        (r.path, [f.message for f in r.findings])
        for r in reports
        if (r.max_severity or Severity.INFO) >= Severity.MEDIUM
    ]
    assert flagged == []


def test_real_fingerprint_is_not_flagged() -> None:
    # TF >= 2.12 writes fingerprint.pb beside every saved_model.pb
    report = scan_file(DATA / "fingerprint.pb")
    assert (report.max_severity or Severity.INFO) < Severity.MEDIUM
