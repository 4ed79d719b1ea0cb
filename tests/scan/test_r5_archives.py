"""Red-team review r5: archive names that escape on extraction; directory entries `scan`
does not follow.

Tar and zip members named ``../x``, ``/abs``, ``..\\x`` or ``C:/x``, links pointing outside
the archive, and members written through a symlink member are high (MLV206); a benign twin
with a link that stays inside is not. A symlinked directory, a dangling link or a FIFO in a
scanned directory is a result of its own (high, "not followed"), never nothing.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from mlverify._internal.scan import Severity, scan_file, scan_paths
from mlverify._internal.scan.model import ScanReport, Status
from tests.core.helpers import run

CONFIG = b"name: model\n"


def _tar(members: list[tuple[str, bytes | None, str]]) -> bytes:
    """(name, data, link target); data None: a symlink ("" target: a directory);
    a target starting with "=" is a hard link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data, target in members:
            ti = tarfile.TarInfo(name)
            if data is None and target.startswith("="):
                ti.type, ti.linkname = tarfile.LNKTYPE, target[1:]
            elif data is None:
                ti.type, ti.linkname = tarfile.SYMTYPE, target
            else:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _escapes(report: ScanReport) -> dict[str, Severity]:
    return {f.member: f.severity for f in report.findings if f.rule_id == "MLV206"}


def _scan(tmp: Path, name: str, data: bytes) -> ScanReport:
    p = tmp / name
    p.write_bytes(data)
    return scan_file(p)


@pytest.mark.parametrize(
    ("members", "bad"),
    [
        ([("../../tmp/evil.py", b"x = 1\n", "")], "../../tmp/evil.py"),
        ([("a/../../evil", b"x", "")], "a/../../evil"),
        ([("/etc/cron.d/x", b"x", "")], "/etc/cron.d/x"),
        ([("..\\..\\evil.py", b"x", "")], "..\\..\\evil.py"),
        ([("C:/Windows/x.dll", b"x", "")], "C:/Windows/x.dll"),
        ([("model.ckpt", None, "/etc/passwd")], "model.ckpt"),
        ([("sub/w.bin", None, "../../../home/u/.bashrc")], "sub/w.bin"),
        ([("w.bin", None, "=../outside")], "w.bin"),  # a hard link outside
        ([("w.bin", None, "=/etc/passwd")], "w.bin"),
        ([("sub", None, "inside"), ("sub/authorized_keys", b"k", "")], "sub/authorized_keys"),
        ([("d", None, "."), ("d/../x", b"k", "")], "d/../x"),  # '..' resolved through the link
        ([("Sub", None, "x"), ("sub/k", b"k", "")], "sub/k"),  # a case-insensitive disk
    ],
)
def test_tar_members_that_escape_are_high(
    tmp_path: Path, members: list[tuple[str, bytes | None, str]], bad: str
) -> None:
    report = _scan(tmp_path, "m.nemo", _tar([("model_config.yaml", CONFIG, ""), *members]))
    assert _escapes(report).get(bad) == Severity.HIGH, report.findings


def test_tar_with_inside_links_and_plain_names_is_clean(tmp_path: Path) -> None:
    data = _tar(
        [
            ("model_config.yaml", CONFIG, ""),
            ("./weights/a.bin", b"\0" * 16, ""),
            ("latest.bin", None, "weights/a.bin"),
            ("weights/b.bin", None, "../weights/a.bin"),
            ("copy.bin", None, "=weights/a.bin"),
        ]
    )
    report = _scan(tmp_path, "ok.tar", data)
    assert not _escapes(report), report.findings


def _zip(names: list[str], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n in names:
            z.writestr(n, b"x")
        for n, target in (symlinks or {}).items():
            zi = zipfile.ZipInfo(n)
            zi.create_system = 3
            zi.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(zi, target)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("names", "links", "bad"),
    [
        (["../../../../home/user/.bashrc"], {}, "../../../../home/user/.bashrc"),
        (["/etc/cron.d/x"], {}, "/etc/cron.d/x"),
        (["a\\..\\..\\x"], {}, "a\\..\\..\\x"),
        ([], {"w.bin": "/etc/passwd"}, "w.bin"),
        ([], {"w.bin": "../../x"}, "w.bin"),
        (["sub/key"], {"sub": "somewhere"}, "sub/key"),
    ],
)
def test_zip_members_that_escape_are_high(
    tmp_path: Path, names: list[str], links: dict[str, str], bad: str
) -> None:
    report = _scan(tmp_path, "m.zip", _zip(["config.json", *names], links))
    assert _escapes(report).get(bad) == Severity.HIGH, report.findings


def test_zip_with_inside_link_is_clean(tmp_path: Path) -> None:
    report = _scan(tmp_path, "ok.zip", _zip(["a/w.bin"], {"latest": "a/w.bin"}))
    assert not _escapes(report), report.findings


# -- scan DIR: entries not followed are results ---------------------------------------------
def _model_dir(tmp: Path) -> Path:
    model = tmp / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "evil.pkl").write_bytes(b"cos\nsystem\n(S'true'\ntR.")  # never loaded
    return model


def test_scan_reports_a_symlinked_directory(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    (model / "sub").symlink_to("../outside")
    reports = {Path(r.path).name: r for r in scan_paths([model])}
    link = reports["sub"]
    assert link.status == Status.UNSUPPORTED
    assert link.findings and link.findings[0].severity == Severity.HIGH
    assert "not followed" in link.findings[0].message


def test_scan_reports_dangling_links_and_fifos(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    (model / "gone.bin").symlink_to("nowhere.bin")
    os.mkfifo(model / "pipe")
    (model / "loop").symlink_to(".")  # a loop: not followed, never walked forever
    reports = {Path(r.path).name: r for r in scan_paths([model])}
    for name in ("gone.bin", "pipe", "loop"):
        assert reports[name].status == Status.UNSUPPORTED, name
        assert reports[name].findings[0].severity == Severity.HIGH
    assert reports["config.json"].status in (Status.DATA, Status.CLEAN)


def test_scan_cli_exits_non_zero_on_a_symlinked_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _model_dir(tmp_path)
    assert run(capsys, "scan", model).code == 0
    (model / "sub").symlink_to("../outside")
    res = run(capsys, "scan", model)
    assert res.code == 1
    assert "not followed" in res.out
    assert run(capsys, "scan", "--fail-on", "high", model).code == 1
