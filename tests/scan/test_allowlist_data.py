"""The shipped pickle allowlist is exact, well formed and covers what real libraries write.

(a) schema: exact names only, alias targets are entries, methods keys are class entries,
    argument indices are ints, nothing is both allowed and a reviewed finding;
(b) a re-harvest with the installed libraries (scripts/harvest_pickle_globals.py, run in a
    subprocess so that a library crash or its global state cannot touch the test process)
    fails on any global that is neither an entry, an alias nor a reviewed finding;
(c) the same for the old pickles joblib ships under joblib/test/data, decoded by name only.

Nothing here unpickles: the harvester pickles our own objects and decodes bytes with
pickletools.genops; names are imported only from our own data file or our own live objects.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "harvest_pickle_globals.py"
DATA = ROOT / "mlverify" / "_internal" / "scan" / "data" / "pickle_allowlist.json"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("harvest_pickle_globals", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["harvest_pickle_globals"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def harvester() -> ModuleType:
    return load_script()


@pytest.fixture(scope="module")
def allow() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    return data


# ---------------------------------------------------------------------------------------------
# (a) schema


def test_top_level_schema(allow: dict[str, Any]) -> None:
    assert set(allow) == {
        "schema",
        "version",
        "harvested_with",
        "entries",
        "aliases",
        "methods",
        "reviewed_findings",
    }
    assert allow["schema"] == "mlverify-pickle-allowlist/2"
    assert re.fullmatch(r"\d{4}\.\d{2}\.\d{2}\.\d+", allow["version"])
    versions = allow["harvested_with"]
    for lib in ("python", "numpy", "scipy", "scikit-learn", "pandas", "torch", "joblib"):
        assert isinstance(versions.get(lib), str) and versions[lib], lib


def test_entries_are_exact_and_typed(allow: dict[str, Any]) -> None:
    assert len(allow["entries"]) > 300
    for name, entry in allow["entries"].items():
        assert NAME.fullmatch(name), f"not an exact dotted name: {name!r}"
        keys = {"kind", "calls", "result_calls", "loads", "state_calls", "new_only", "note"}
        assert set(entry) <= keys, name
        assert entry["kind"] in ("class", "function"), name
        assert entry.get("new_only", False) in (True, False), name
        assert all(isinstance(k, (int, str)) for k in entry.get("state_calls", [])), name
        for key in ("calls", "result_calls", "loads"):
            indices = entry.get(key, [])
            assert isinstance(indices, list), (name, key)
            assert all(type(i) is int and 0 <= i < 16 for i in indices), (name, key)
            assert indices == sorted(set(indices)), (name, key)
        assert isinstance(entry["note"], str) and len(entry["note"]) > 10, name


def test_aliases_methods_findings(allow: dict[str, Any]) -> None:
    entries, aliases = allow["entries"], allow["aliases"]
    findings = allow["reviewed_findings"]
    for written, target in aliases.items():
        assert NAME.fullmatch(written) and NAME.fullmatch(target), written
        assert target in entries, f"alias {written} -> {target}: target is not an entry"
        assert written not in entries and written != target, written
    for cls, names in allow["methods"].items():
        assert entries.get(cls, {}).get("kind") == "class", f"methods key {cls} is no class entry"
        assert names and all(IDENT.fullmatch(n) for n in names), cls
        assert names == sorted(set(names)), cls
    for name, why in findings.items():
        assert NAME.fullmatch(name), name
        assert isinstance(why, str) and len(why) > 20, name
        assert name not in entries and name not in aliases, f"{name} both allowed and a finding"


def test_known_gadgets_are_findings_not_entries(allow: dict[str, Any]) -> None:
    # Reviewed by reading the library source: each of these evaluates code, loads a nested
    # pickle or reaches arbitrary attributes, although real libraries pickle them.
    findings = allow["reviewed_findings"]
    for name in (
        "builtins.getattr",
        "scipy.stats._continuous_distns.norm_gen",
    ):
        assert name in findings, name
    calls = {n: e.get("calls", []) for n, e in allow["entries"].items()}
    assert calls["copyreg._reconstructor"] == [0, 1]
    assert calls["torch._tensor._rebuild_from_type_v2"] == [0, 1]
    assert calls["numpy._core.multiarray._reconstruct"] == [0]
    assert allow["entries"]["functools.partial"]["result_calls"] == [0]
    # allowed only because the scanner reads what it unpickles as a nested file
    assert allow["entries"]["torch.storage._load_from_bytes"]["loads"] == [0]
    assert allow["entries"]["lightgbm.basic.Booster"]["new_only"] is True


def _resolve(dotted: str) -> Any:
    import _compat_pickle

    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        mod, qual = ".".join(parts[:split]), parts[split:]
        mod, first = _compat_pickle.NAME_MAPPING.get((mod, qual[0]), (mod, qual[0]))
        mod = _compat_pickle.IMPORT_MAPPING.get(mod, mod)
        try:
            obj: Any = importlib.import_module(mod)
        except ImportError:
            continue
        try:
            for attr in [first, *qual[1:]]:
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        return obj
    raise LookupError(dotted)


def _top_installed(name: str) -> bool:
    top = name.split(".")[0]
    if top == "__builtin__":
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def test_entries_are_defining_names_and_aliases_the_same_object(allow: dict[str, Any]) -> None:
    """Every entry resolves to an object defined under that name; every alias to its target.

    The names come from our own data file (never from a pickle).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checked = 0
        for name, entry in allow["entries"].items():
            if not _top_installed(name):
                continue
            obj = _resolve(name)
            if entry["kind"] == "class":
                assert isinstance(obj, type), name
            qual, mod = getattr(obj, "__qualname__", None), getattr(obj, "__module__", None)
            if isinstance(qual, str) and isinstance(mod, str) and callable(obj):
                assert f"{mod}.{qual}" == name, f"{name} is defined as {mod}.{qual}"
            checked += 1
        assert checked > 300
        for written, target in allow["aliases"].items():
            if not (_top_installed(target) and _top_installed(written)):
                continue
            try:
                obj = _resolve(written)
            except LookupError:
                # another Python's module layout (pathlib._local in 3.13): the harvest
                # verified the identity in that interpreter (other_python_aliases)
                continue
            assert obj is _resolve(target), written


# ---------------------------------------------------------------------------------------------
# The harvester itself records what it should (so the re-harvest below can fail)


def test_recorder_sees_globals_reduce_and_getattr(harvester: ModuleType) -> None:
    import datetime as dt
    import functools
    import zoneinfo

    h = harvester.Harvest()
    harvester.HARVEST = h
    obj = [functools.partial(int, base=2), dt.datetime(2024, 1, 1), zoneinfo.ZoneInfo("UTC")]
    for proto in (0, 2, 4):
        harvester.RecordingPickler(io.BytesIO(), protocol=proto).dump(obj)
    h.finish()
    assert {
        "functools.partial",
        "builtins.int",
        "datetime.datetime",
        "builtins.getattr",
        "__builtin__.getattr",
        "__builtin__.long",
    } <= set(h.globals)
    assert h.globals["__builtin__.long"].defining == "builtins.int"
    assert "cls:_unpickle" in h.getattrs["zoneinfo.ZoneInfo"]
    assert "global:builtins.int" in h.arguments["functools.partial"][0]


def test_decoder_follows_joblib_inline_arrays(harvester: ModuleType, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    joblib = pytest.importorskip("joblib")
    value = [np.arange(7, dtype="<i4"), np.array([{"k": 1}], dtype=object), np.float64]
    path = tmp_path / "x.joblib"
    joblib.dump(value, path)
    names, problems = harvester.decode_file(path.read_bytes())
    assert problems == []
    assert {"joblib.numpy_pickle.NumpyArrayWrapper", "numpy.float64"} <= set(names)
    # the object array's inner pickle was walked too
    assert "numpy._core.multiarray._reconstruct" in names or (
        "numpy.core.multiarray._reconstruct" in names
    )


def test_joblib_archive_reader_matches_the_folder(harvester: ModuleType, tmp_path: Path) -> None:
    folder = harvester.joblib_test_data()
    if folder is None:
        pytest.skip("the installed joblib ships no test/data folder")
    wheel = tmp_path / "joblib-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                zf.write(path, f"joblib/test/data/{path.name}")
    expected = harvester.joblib_old_globals(folder)
    assert harvester.joblib_archive_globals(wheel) == expected
    sdist = tmp_path / "joblib-0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                tf.add(path, f"joblib-0/joblib/test/data/{path.name}")
    assert harvester.joblib_archive_globals(sdist) == expected


def test_screen_finds_the_reviewed_gadgets(harvester: ModuleType) -> None:
    """The review aid (--screen) reports what made these reviewed findings, and nothing for
    an ordinary estimator."""
    pytest.importorskip("scipy")
    pytest.importorskip("sklearn")
    warnings.simplefilter("ignore")
    norm = harvester.screen("scipy.stats._continuous_distns.norm_gen")
    assert any("exec(self._parse_arg_template" in line for line in norm), norm
    assert harvester.screen("sklearn.preprocessing._data.StandardScaler") == []
    if importlib.util.find_spec("torch") is not None:
        loads = harvester.screen("torch.storage._load_from_bytes")
        assert any("torch.load(" in line for line in loads), loads
        cyclic = harvester.screen("torch.optim.lr_scheduler.CyclicLR")
        assert any("'scale_fn' (positional index 7)" in line for line in cyclic), cyclic


# ---------------------------------------------------------------------------------------------
# (b) re-harvest with the real libraries


@pytest.fixture(scope="module")
def harvest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("numpy")
    out = tmp_path_factory.mktemp("harvest") / "harvest.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    return data


@pytest.mark.slow
def test_reharvest_has_no_unexplained_global(
    harvest: dict[str, Any], allow: dict[str, Any], harvester: ModuleType
) -> None:
    skipped = harvest["failures"].get("skipped", [])
    names = {
        n
        for n in set(harvest["globals"]) | set(harvest["unmapped"])
        if n.partition(".")[0] not in harvester.OWN_MODULES
    }
    assert len(names) > 100, "the harvest pickled almost nothing"
    bad = harvester.unexplained(names, allow)
    assert bad == [], (
        f"globals written by real libraries that the allowlist does not explain: {bad} "
        f"(review them and add entries, aliases or reviewed_findings; skipped: {skipped})"
    )


@pytest.mark.slow
def test_reharvest_pickled_every_installed_library(harvest: dict[str, Any]) -> None:
    for lib, module in (
        ("numpy", "numpy"),
        ("scikit-learn", "sklearn"),
        ("pandas", "pandas"),
        ("torch", "torch"),
        ("scipy", "scipy"),
    ):
        if importlib.util.find_spec(module) is None:
            continue
        assert harvest["objects"].get(lib, 0) >= 5, lib
    if importlib.util.find_spec("sklearn") is not None:
        assert harvest["objects"]["scikit-learn"] >= 150  # every estimator that fits
    # the full harvest stays under two minutes of CPU (wall time depends on other load)
    assert harvest["cpu_seconds"] < 120


@pytest.mark.slow
def test_reharvest_aliases_agree_with_live_objects(
    harvest: dict[str, Any], allow: dict[str, Any]
) -> None:
    # A written name that differs from its defining name must be an alias to exactly that
    # defining name (or a reviewed finding), as resolved from the live object pickled.
    for written, seen in harvest["globals"].items():
        if written in allow["reviewed_findings"] or written == seen["defining"]:
            continue
        if seen["defining"] in allow["reviewed_findings"]:
            continue
        assert allow["aliases"].get(written) == seen["defining"], written


# ---------------------------------------------------------------------------------------------
# (c) joblib's shipped old pickles


def test_joblib_old_pickles_are_explained(harvester: ModuleType, allow: dict[str, Any]) -> None:
    folder = harvester.joblib_test_data()
    if folder is None:
        pytest.skip("the installed joblib ships no test/data folder")
    files = harvester.joblib_old_globals(folder)
    with_names = {f: v for f, v in files.items() if v["globals"]}
    assert len(with_names) >= 40, sorted(files)
    # nine ZF containers: six pickles and three sidecars of raw array bytes
    zf = [f for f in files if (folder / f).read_bytes()[:4] == b"ZF0x"]
    assert len(zf) >= 9 and len([f for f in zf if f in with_names]) >= 6, zf
    for name, v in files.items():
        # every problem is a sidecar of raw array bytes (no pickle inside), nothing else
        assert all(p == "no pickle (raw data)" for p in v["problems"]), (name, v["problems"])
    names = {n for v in files.values() for n in v["globals"]}
    assert "numpy.matrixlib.defmatrix.matrix" in names
    assert harvester.unexplained(names, allow) == []
