"""Damaged samples of every non-pickle format: a report, never a traceback or a hang."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from mlverify._internal.scan import scan_file
from tests.scan.format_samples import Sample, all_samples


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    return all_samples(tmp_path_factory.mktemp("mut"))


def _mutants(data: bytes, rng: random.Random) -> list[bytes]:
    out = [data[: rng.randrange(1, len(data))] for _ in range(3)]  # truncations
    for _ in range(5):  # byte flips, some in the header region where structure lives
        b = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            i = rng.randrange(min(len(b), 4096)) if rng.random() < 0.7 else rng.randrange(len(b))
            b[i] = rng.randrange(256)
        out.append(bytes(b))
    return out


@pytest.mark.slow
def test_damaged_samples_give_reports(samples: list[Sample], tmp_path: Path) -> None:
    rng = random.Random(11)
    by_fmt: dict[str, list[Sample]] = {}
    for s in samples:
        by_fmt.setdefault(s.fmt, []).append(s)
    chosen = [s for group in by_fmt.values() for s in rng.sample(group, min(6, len(group)))]
    slowest = 0.0
    for s in chosen:
        for k, data in enumerate(_mutants(s.path.read_bytes(), rng)):
            p = tmp_path / f"{s.name}-{k}{s.path.suffix}"
            p.write_bytes(data)
            t0 = time.perf_counter()
            report = scan_file(p)  # must not raise
            slowest = max(slowest, time.perf_counter() - t0)
            assert report.status.value in ("clean", "data", "findings", "unsupported")
    assert slowest < 10, slowest
