"""7z member names and symlinks that escape the extraction directory: judged as for zip
and tar (MLV206), whatever py7zr itself would refuse (7-Zip and p7zip extract them), and
independent of what the directory mlverify runs in holds."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tests.scan.conftest import Scan, rules

py7zr = pytest.importorskip("py7zr")


def make_7z(
    members: list[tuple[str, bytes]],
    links: dict[str, str] | None = None,
    tmp: Path | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> bytes:
    """A 7z archive written by py7zr, its own name checks off (test only: the names are
    the hostile part), symlinks written from real links under ``tmp``."""
    if monkeypatch is not None:
        import py7zr.py7zr as impl

        monkeypatch.setattr(impl, "check_archive_path", lambda name: True)
    import py7zr.py7zr as impl

    real = impl.Worker._find_link_target
    impl.Worker._find_link_target = lambda self, target: os.readlink(target)  # the raw target
    out = io.BytesIO()
    try:
        _write(out, members, links, tmp)
    finally:
        impl.Worker._find_link_target = real
    return out.getvalue()


def _write(out: io.BytesIO, members: list[tuple[str, bytes]], links: dict[str, str] | None,
           tmp: Path | None) -> None:  # fmt: skip
    with py7zr.SevenZipFile(out, "w") as z:
        for name, data in members:
            z.writestr(data, name)
        for name, target in (links or {}).items():
            assert tmp is not None
            link = tmp / f"link{len(name)}"
            os.symlink(target, link)
            z.write(link, name)


@pytest.mark.parametrize(
    "name", ["../evil.py", "a/../../evil.py", "/etc/cron.d/evil", "C:/evil.py", "a\\..\\..\\x"]
)
def test_escaping_names(scan_bytes: Scan, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_7z([(name, b"harmless text\n"), ("ok.txt", b"fine\n")], monkeypatch=monkeypatch)
    report = scan_bytes(data, "model.7z")
    assert "MLV206" in rules(report), report.findings


@pytest.mark.parametrize("target", ["/etc/cron.d", "../../../home/u/.ssh"])
def test_symlinks_pointing_outside(scan_bytes: Scan, tmp_path: Path, target: str) -> None:
    data = make_7z([("ok.txt", b"fine\n")], {"link": target}, tmp_path)
    report = scan_bytes(data, "model.7z")
    assert "MLV206" in rules(report), report.findings


def test_plain_names_and_inner_links_are_clean(scan_bytes: Scan, tmp_path: Path) -> None:
    data = make_7z([("weights/a.txt", b"fine\n"), ("b.txt", b"ok\n")], {"weights/c": "a.txt"},
                   tmp_path)  # fmt: skip
    report = scan_bytes(data, "model.7z")
    assert "MLV206" not in rules(report) and report.status.value == "clean", report.findings


def test_the_verdict_does_not_depend_on_the_current_directory(
    scan_bytes: Scan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """py7zr checks names against the directory it extracts to; with the current one, a
    symlink there named like a member made a clean archive "cannot be read"."""
    data = make_7z([("weights.txt", b"fine\n")])
    here = tmp_path / "cwd"
    here.mkdir()
    os.symlink("/etc", here / "weights.txt")
    monkeypatch.chdir(here)
    report = scan_bytes(data, "model.7z")
    assert report.status.value == "clean", report.findings
