"""Paths the system refuses as too long (ENAMETOOLONG) in a tree given to ``scan``,
``hash`` or ``check``: one line naming the path (escaped, shortened), what is too long and
what to do, exit 2; never an internal error, never a pass.

The trees are built below the test's directory by directory descriptors (``dir_fd=``):
their full paths are longer than any system call takes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlverify._internal.errors import InputError
from mlverify._internal.files import NAME_MAX, PATH_MAX, too_long
from mlverify._internal.scan import workers
from mlverify._internal.scan.engine import scan_file, scan_paths
from tests.core.helpers import run

SYSTEM_PICKLE = b"cos\nsystem\n(S'true'\ntR."
#: a directory name of NAME_MAX bytes, with a terminal escape in it (shown escaped)
LONG_DIR = "d\x1b[2K" + "x" * (NAME_MAX - 5)


def _deep(root: Path, *, file_name: str = "deep.pkl") -> Path:
    """``root``/ok.txt, and a chain of directories whose file's path passes PATH_MAX."""
    root.mkdir()
    (root / "ok.txt").write_text("hi\n")
    fd = os.open(root, os.O_RDONLY)
    depth = 0
    try:
        while len(os.fsencode(root)) + depth * (NAME_MAX + 1) < PATH_MAX + 300:
            name = f"{depth:02d}{LONG_DIR}"[:NAME_MAX]
            os.mkdir(name, dir_fd=fd)
            sub = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = sub
            depth += 1
        f = os.open(file_name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(f, SYSTEM_PICKLE)  # a finding, were it read: never a pass either way
        os.close(f)
    finally:
        os.close(fd)
    return root


def _one_clear_line(text: str) -> str:
    """The line (check: its report's deny line and its error line, the same) saying so."""
    lines = [line for line in text.splitlines() if "path too long to open" in line]
    assert 1 <= len(lines) <= 2, text[:2000]
    assert "internal error" not in text and "Traceback" not in text
    assert "\x1b" not in text  # the escape in the name is shown escaped
    for line in lines:
        assert len(line) < 1200  # a 4 KiB path shortened: its start and its end
        assert "shorten or flatten" in line
    return lines[0]


@pytest.mark.parametrize("command", ["scan", "hash", "check"])
def test_a_path_past_path_max_in_the_tree_is_one_clear_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    model = _deep(tmp_path / "m")
    r = run(capsys, command, model)
    assert r.code == 2, r.out + r.err
    line = _one_clear_line(r.out + r.err)
    assert f"a path may have at most {PATH_MAX - 1}" in line and "\\x1b" in line
    assert "allowed" not in r.out.replace("0 allowed", "")


def test_many_files_checked_by_workers_refuse_it_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "PROCESS_MIN_FILES", 0)
    model = _deep(tmp_path / "m")
    for i in range(20):
        (model / f"f{i}.txt").write_text("x\n")
    r = run(capsys, "check", model)
    assert r.code == 2
    _one_clear_line(r.out + r.err)


def test_a_file_name_past_path_max_in_a_directory_within_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The directory can be listed, its file cannot be opened (its path is too long)."""
    model = tmp_path / "m"
    _deep(model)
    # the deepest directory's path fits; its file's does not (the directory is listed)
    for command in ("scan", "hash", "check"):
        r = run(capsys, command, model)
        assert r.code == 2, (command, r.out + r.err)
        _one_clear_line(r.out + r.err)


def test_a_symlink_that_leads_to_a_name_past_name_max(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "ok.txt").write_text("hi\n")
    os.symlink("a" * (NAME_MAX + 100), model / "weights.bin")  # a name no file can have
    r = run(capsys, "scan", model)
    assert r.code == 2, r.out + r.err
    assert "weights.bin" in _one_clear_line(r.err) and "a symlink on it leads" in r.err
    r = run(capsys, "hash", model, "--allow-symlinks")
    assert r.code == 2, r.out + r.err
    assert "weights.bin" in _one_clear_line(r.out + r.err)
    for command in ("hash", "check"):
        r = run(capsys, command, model)  # refused as a link, its target shown shortened
        assert r.code == 2 and "symlinks are refused" in r.out + r.err
        assert "a" * (NAME_MAX + 100) not in r.out + r.err


def test_a_name_past_name_max_given_as_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = tmp_path / ("n" * (NAME_MAX + 1))
    r = run(capsys, "hash", long)
    assert r.code == 2
    assert f"a name in it has {NAME_MAX + 1} bytes" in _one_clear_line(r.err)
    with pytest.raises(InputError, match="path too long to open"):
        scan_paths([long])
    with pytest.raises(InputError, match="path too long to open"):
        scan_file(long)


def test_a_deep_tree_opened_by_a_short_relative_path_is_scanned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is refused is the path as given: the same tree, reached by a path that fits
    (a relative one from inside it), is read and judged."""
    deep = _deep(tmp_path / "m", file_name="x.txt")
    fd = os.open(deep, os.O_RDONLY)
    while True:  # down to the last directory, by descriptors
        subs = [n for n in os.listdir(fd) if stat.S_ISDIR(os.stat(n, dir_fd=fd).st_mode)]
        if not subs:
            break
        sub = os.open(subs[0], os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.mkdir("model", dir_fd=fd)
    f = os.open("model/evil.pkl", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(f, SYSTEM_PICKLE)
    os.close(f)
    monkeypatch.chdir(tmp_path)  # the directory to come back to after the test
    os.fchdir(fd)
    os.close(fd)
    r = run(capsys, "check", "model")
    assert r.code == 1 and "MLV101" in r.out, r.out + r.err  # judged: denied, not refused


def test_the_message_says_what_is_too_long() -> None:
    assert "a name in it has 300 bytes" in str(too_long("/a/" + "b" * 300))
    assert f"it has {PATH_MAX + 9} bytes" in str(too_long("/" + "c/" * ((PATH_MAX + 8) // 2)))
    assert "a symlink on it leads" in str(too_long("/short/link"))
    shown_line = str(too_long("/x\n\x1b/" + "d" * 5000))
    assert "\\x1b" in shown_line and "\\x0a" in shown_line and "characters)..." in shown_line


def test_a_digest_cache_path_too_long_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "ok.txt").write_text("hi\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ("c" * (NAME_MAX + 100))))
    r = run(capsys, "hash", model, "--cache")
    assert r.code == 2 and "cannot open the digest cache (File name too long)" in r.err
    assert "internal error" not in r.err and r.err.count("c" * (NAME_MAX + 100)) == 0


def test_check_of_a_name_past_name_max_is_refused_as_too_long(tmp_path: Path) -> None:
    """``check_artifact`` is what every front end (CLI, service, distributed) calls."""
    from mlverify._internal.check import check_artifact

    with pytest.raises(InputError, match=f"a name in it has {NAME_MAX + 1} bytes"):
        check_artifact(tmp_path / ("n" * (NAME_MAX + 1)), [])
