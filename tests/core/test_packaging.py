"""What `pip install mlverify` gets: the wheel holds every data file the code reads."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA_DIRS = ("mlverify/_internal/data", "mlverify/_internal/scan/data")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if build.returncode != 0:
        pytest.fail(f"could not build the wheel: {build.stderr[-2000:]}")
    (path,) = out.glob("mlverify-*.whl")
    return zipfile.ZipFile(path)


def test_every_shipped_data_file_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    expected = [
        p.relative_to(ROOT).as_posix()
        for d in DATA_DIRS
        for p in (ROOT / d).rglob("*")
        if p.is_file() and p.suffix in (".json", ".yaml") and "/tests/" not in p.as_posix()
    ]
    assert expected and not [e for e in expected if e not in names]
    # the built-in policies are real files in the wheel, not links into the repository
    assert "mlverify/_internal/data/policies/strict.yaml" in names
    assert "mlverify/_internal/data/policies/default.yaml" in names


def test_no_test_or_repository_file_is_shipped(wheel: zipfile.ZipFile) -> None:
    assert not [n for n in wheel.namelist() if n.startswith(("tests/", "bench/", "scripts/"))]
