"""Attestations beside a model are found from one sorted listing of its directory,
reused only while the directory is unchanged (and settled): a file added or removed
beside a model is seen by the next check."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mlverify._internal.attest import intoto
from mlverify._internal.attest.intoto import discover_attestations


def _settle(d: Path) -> None:
    """Set the directory's times back, as if it had last changed a minute ago."""
    old = time.time_ns() - 60_000_000_000
    os.utime(d, ns=(old, old))


def test_siblings_added_and_removed_are_seen(tmp_path: Path) -> None:
    for i in range(50):
        (tmp_path / f"m{i:02d}").mkdir()
    model = tmp_path / "m07"
    _settle(tmp_path)
    assert list(discover_attestations(model)) == []
    assert str(tmp_path) in intoto._LISTED  # settled: kept
    att = tmp_path / "m07.slsa.intoto.jsonl"
    att.write_text("{}")
    (tmp_path / "m070.intoto.jsonl").write_text("{}")  # another model's: not m07's
    _settle(tmp_path)  # even with its times set back: the change time moved
    assert list(discover_attestations(model)) == [att]
    att.unlink()
    assert list(discover_attestations(model)) == []


def test_a_listing_of_a_directory_that_just_changed_is_not_kept(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    intoto._LISTED.pop(str(tmp_path), None)
    assert list(discover_attestations(tmp_path / "m")) == []
    assert str(tmp_path) not in intoto._LISTED  # changed within the clock's tick: racy


def test_the_kept_listings_are_bounded(tmp_path: Path) -> None:
    for i in range(intoto._LISTED_MAX + 5):
        d = tmp_path / f"d{i}"
        (d / "m").mkdir(parents=True)
        _settle(d)
        list(discover_attestations(d / "m"))
    assert len(intoto._LISTED) <= intoto._LISTED_MAX


@pytest.mark.parametrize("name", ["m.sig", "m.sigstore.json", "m.sigstore", "m.x.intoto.jsonl"])
def test_every_suffix_beside_a_model_file(tmp_path: Path, name: str) -> None:
    (tmp_path / "m").write_bytes(b"x")
    (tmp_path / name).write_text("{}")
    (tmp_path / "m.txt").write_text("not one")
    _settle(tmp_path)
    assert list(discover_attestations(tmp_path / "m")) == [tmp_path / name]
