"""TorchScript code judged op by op; configs that name code (Hydra, Hugging Face)."""

from __future__ import annotations

import pytest

from mlverify._internal.scan import Severity, scan_file
from tests.scan.conftest import rules
from tests.scan.format_samples import Sample, config_samples, torchscript_samples


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    out = tmp_path_factory.mktemp("tscfg")
    return torchscript_samples(out / "ts") + config_samples(out / "cfg")


def test_every_attack_is_caught_and_every_real_file_passes(samples: list[Sample]) -> None:
    assert sum(s.malicious for s in samples) >= 10
    missed, flagged = [], []
    for s in samples:
        report = scan_file(s.path)
        if s.malicious and s.rule not in rules(report):
            missed.append((s.name, sorted(rules(report))))
        if not s.malicious and (report.max_severity or Severity.INFO) > Severity.INFO:
            flagged.append((s.name, [f.message for f in report.findings]))
    assert missed == [] and flagged == []


def test_a_scripted_module_is_reported_as_code(samples: list[Sample]) -> None:
    pytest.importorskip("torch")
    report = scan_file(next(s for s in samples if s.name == "real_scripted").path)
    assert [(f.rule_id, f.severity) for f in report.findings] == [("MLV803", Severity.INFO)]
    assert report.status.value == "clean" and "torchscript" in report.formats


def test_setstate_file_read_names_the_method(samples: list[Sample]) -> None:
    pytest.importorskip("torch")
    report = scan_file(next(s for s in samples if s.name == "setstate_from_file").path)
    found = [f for f in report.findings if f.rule_id == "MLV801"]
    assert found and "__setstate__" in found[0].message and found[0].severity == Severity.HIGH


def test_remote_auto_map_names_the_other_repository(samples: list[Sample]) -> None:
    report = scan_file(next(s for s in samples if s.name == "hf_auto_map_remote").path)
    assert any("evil-org/evil-repo" in f.message and "modeling.py" in f.message
               for f in report.findings)  # fmt: skip


def test_hydra_dangerous_target_is_critical(samples: list[Sample]) -> None:
    report = scan_file(next(s for s in samples if s.name == "hydra_os_system").path)
    assert report.max_severity == Severity.CRITICAL


def test_a_project_allowlist_allows_its_own_targets(samples: list[Sample]) -> None:
    from mlverify._internal.scan import Limits

    s = next(s for s in samples if s.name == "hydra_unknown_target")
    assert "MLV1001" in rules(scan_file(s.path))
    allowed = scan_file(s.path, Limits(extra_allow=frozenset({"evilpkg.Callback"})))
    assert allowed.findings == ()
    # the denylist still wins over a project's allowlist
    s = next(s for s in samples if s.name == "hydra_os_system")
    assert "MLV1001" in rules(scan_file(s.path, Limits(extra_allow=frozenset({"os.system"}))))
