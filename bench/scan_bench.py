"""Benchmark `mlverify scan` against picklescan, modelscan, fickling and ModelAudit (not a test).

Generates a labelled corpus (malicious samples built from raw pickle opcodes,
never loaded; benign files written with torch / scikit-learn / joblib / numpy /
pandas / safetensors when importable) and three throughput files, then runs
every importable tool in its own child process (so peak RSS is per tool) and
prints a Markdown table.

    .venv/bin/python bench/scan_bench.py --blob-mb 200 --dense-mb 10 --torch-mb 1024
    .venv/bin/python bench/scan_bench.py --sections pickle --repeat 3 --alternate 5
    .venv/bin/python bench/scan_bench.py --sections formats   # per-format detection only

Peers are optional and live in their own venv (their pins must not move ours):
`python3 -m venv .venv-peers && .venv-peers/bin/pip install picklescan modelscan fickling
modelaudit` (``--peer-python`` names another). A second table gives detection and false
positives per weakness class of the pickle scanner (bench/pickle_corpus.py), and a third the
speed of an opcode-dense pickle beside CPython's C unpickler loading the same benign bytes.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
if os.environ.get("SCAN_BENCH_PEERS"):
    sys.path.append(os.environ["SCAN_BENCH_PEERS"])

from tests.scan.builders import (  # noqa: E402
    EVIL0,
    EVIL4,
    binbytes,
    binbytes8_header,
    call0,
    call4,
    g0,
    p0,
    p4,
    s0,
    sg,
    u,
)

TOOLS = ["mlverify", "picklescan", "modelscan", "fickling", "modelaudit"]
PEER_PYTHON = ROOT / ".venv-peers" / "bin" / "python"

BYPASS = [
    ("pip", "main"), ("runpy", "_run_code"), ("pydoc", "locate"), ("pkgutil", "resolve_name"),
    ("importlib", "import_module"), ("code", "InteractiveInterpreter"), ("bdb", "Bdb.run"),
    ("timeit", "timeit"), ("cProfile", "run"), ("profile", "run"), ("trace", "Trace"),
    ("pty", "spawn"), ("_posixsubprocess", "fork_exec"), ("asyncio", "create_subprocess_shell"),
    ("ctypes", "CDLL"), ("webbrowser", "open"), ("uuid", "_get_command_stdout"),
    ("imaplib", "IMAP4_stream"), ("distutils.spawn", "spawn"), ("doctest", "debug_script"),
    ("numpy.testing._private.utils", "runstring"), ("torch.jit", "load"), ("torch", "load"),
    ("torch.utils.collect_env", "run"), ("logging.config", "listen"), ("marshal", "loads"),
    ("types", "FunctionType"), ("operator", "methodcaller"),
    ("builtins", "eval"), ("builtins", "exec"), ("os", "system"), ("posix", "system"),
    ("subprocess", "Popen"), ("os.path", "os.system"), ("torch", "os.system"),
    ("platform", "popen"), ("shutil", "rmtree"),
]  # fmt: skip


# -- corpus -------------------------------------------------------------------
def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _patch(data: bytes, sig: bytes, off: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    i = out.find(sig)
    while i >= 0:
        struct.pack_into(fmt, out, i + off, value)
        i = out.find(sig, i + 4)
    return bytes(out)


def malicious_samples() -> dict[str, bytes]:
    s: dict[str, bytes] = {}
    for mod, name in BYPASS:
        s[f"bypass_{mod}.{name}_p0.pkl"] = p0(call0(mod, name, "true"))
        s[f"bypass_{mod}.{name}_p4.bin"] = p4(call4(mod, name, "true"))
    torchlike = {"archive/data.pkl": EVIL4, "archive/version": b"3\n"}
    memo = u("os") + b"r" + struct.pack("<I", 7) + b"0" + u("system") + b"\x94" + b"0"
    memo += b"h\x07h\x01\x93(" + u("true") + b"tR"
    getattr_chain = g0("builtins", "getattr") + b"(" + call0("importlib", "import_module", "os")
    getattr_chain += s0("system") + b"tR(" + s0("true") + b"tR"
    npy_hdr = repr({"descr": "|O", "fortran_order": False, "shape": (1,)}).encode()
    npy_hdr += b" " * (63 - (10 + len(npy_hdr)) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(npy_hdr)) + npy_hdr + EVIL4
    blob = 4 * 1024 * 1024
    after_blob = b"\x80\x04" + binbytes8_header(blob) + b"\0" * blob + b"0"
    after_blob += call4("os", "system", "x") + b"."
    flag_local = _patch(_zip(torchlike), b"PK\x03\x04", 6, "<H", 1)
    s.update(
        {
            "torch_zip.pt": _zip(torchlike),
            "torch_zip_deflate.pt": _zip(torchlike, zipfile.ZIP_DEFLATED),
            "torch_zip_flagbit.pt": _patch(flag_local, b"PK\x01\x02", 8, "<H", 1),
            "torch_zip_badcrc.pt": _patch(_zip(torchlike), b"PK\x01\x02", 16, "<I", 0xDEADBEEF),
            "torch_zip_prefix.pt": b"\0" * 512 + _zip(torchlike),
            "torch_zip_hidden_member.pt": _zip({"archive/data.pkl": p4(b"N"), "a/data/0": EVIL0}),
            "polyglot_pickle_zip.pt": EVIL0 + _zip({"archive/data.pkl": p4(b"N")}),
            "stacked.pkl": p4(u("ok")) + EVIL4,
            "broken_after_payload.pkl": b"\x80\x02" + call0("os", "system", "true") + b"\xff\xfe",
            "memo_trick.pkl": p4(memo),
            "getattr_chain.pkl": p0(getattr_chain),
            "inst.pkl": p0(b"(" + s0("true") + b"ios\nsystem\n"),
            "obj.pkl": p0(b"(" + g0("subprocess", "Popen") + s0("true") + b"o"),
            "newobj.pkl": p4(sg("subprocess", "Popen") + b"(" + u("true") + b"t\x81"),
            "ext1.pkl": p4(b"\x82\x01(" + u("x") + b"tR"),
            "nested_loads.pkl": p4(sg("pickle", "loads") + b"(" + binbytes(EVIL4) + b"tR"),
            "payload_after_blob.pkl": after_blob,
            "object.npy": npy,
            "npz_object.npz": _zip({"a.npy": npy}),
            "joblib_zlib.joblib": zlib.compress(EVIL4),
            "joblib_gzip.joblib": gzip.compress(EVIL4),
            "joblib_bz2.joblib": bz2.compress(EVIL4),
            "joblib_xz.joblib": lzma.compress(EVIL4),
            "joblib_lzma.joblib": lzma.compress(EVIL4, format=lzma.FORMAT_ALONE),
            "seven_zip.pt": b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\0" * 64,
            "keras_lambda.keras": _zip({"config.json": b'{"class_name": "Lambda", "config": {}}'}),
            "model.safetensors": EVIL0,
            "dunder_chain.pkl": p0(g0("collections", "OrderedDict.__init__.__globals__") + b"0N"),
            "ufunc_helper.pkl": p0(call0("numpy.core", "_ufunc_reconstruct", "os", "system")),
        }
    )  # fmt: skip
    return s


def benign_samples(out: Path) -> list[Path]:
    made: list[Path] = []

    def w(name: str, data: bytes) -> None:
        p = out / name
        p.write_bytes(data)
        made.append(p)

    import collections
    import datetime

    w("plain_dict.pkl", pickle.dumps({"a": [1, 2.5, "x"], "od": collections.OrderedDict(b=2)}))
    w("datetime.pkl", pickle.dumps(datetime.datetime(2024, 1, 1), protocol=2))
    try:
        import numpy as np

        np.save(out / "array.npy", np.arange(1000.0))
        np.save(out / "objects.npy", np.array([1, "a", None], dtype=object), allow_pickle=True)
        np.savez_compressed(out / "arrays.npz", a=np.arange(10), b=np.ones((3, 3)))
        made += [out / "array.npy", out / "objects.npy", out / "arrays.npz"]
        w(
            "numpy_arrays.pkl",
            pickle.dumps({"x": np.ones((10, 10)), "rs": np.random.RandomState(0)}),
        )
    except ImportError:
        pass
    try:
        import torch

        m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(8, 4))  # fmt: skip
        opt = torch.optim.Adam(m.parameters())
        for name, obj in {
            "state_dict.pt": m.state_dict(),
            "full_module.pth": m,
            "checkpoint.ckpt": {"model": m.state_dict(), "opt": opt.state_dict(), "epoch": 1},
            "pytorch_model.bin": {f"layer.{i}.weight": torch.randn(16, 16) for i in range(4)},
        }.items():
            torch.save(obj, out / name)
            torch.save(obj, out / f"legacy_{name}", _use_new_zipfile_serialization=False)
            made += [out / name, out / f"legacy_{name}"]
        try:
            from safetensors.torch import save_file

            save_file({"w": torch.ones(4, 4)}, out / "model.safetensors")
            made.append(out / "model.safetensors")
        except ImportError:
            pass
    except ImportError:
        pass
    try:
        import joblib
        import numpy as np
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        X = np.random.RandomState(0).rand(50, 4)
        y = (X[:, 0] > 0.5).astype(int)
        pipe = Pipeline([("s", StandardScaler()), ("lr", LogisticRegression())]).fit(X, y)
        rf = RandomForestClassifier(n_estimators=5).fit(X, y)
        w("sk_pipeline.pkl", pickle.dumps(pipe))
        w("sk_forest.pkl", pickle.dumps(rf, protocol=5))
        for comp in (0, "zlib", "gzip", "bz2", "xz", "lzma"):
            p = out / f"sk_pipeline_{comp}.joblib"
            joblib.dump(pipe, p, compress=(comp, 3) if comp else 0)
            made.append(p)
    except ImportError:
        pass
    try:
        import pandas as pd

        w("frame.pkl", pickle.dumps(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})))
    except ImportError:
        pass
    return made


def throughput_files(out: Path, blob_mb: int, dense_mb: int, torch_mb: int) -> dict[str, Path]:
    files: dict[str, Path] = {}
    blob = out / f"a_blob_{blob_mb}MB.pkl"
    if not blob.exists():
        n = blob_mb * 1024 * 1024
        with open(blob, "wb") as f:
            f.write(b"\x80\x04" + binbytes8_header(n))
            chunk = b"\x11" * (1 << 20)
            for _ in range(blob_mb):
                f.write(chunk)
            f.write(b".")
    files["(a) blob pickle"] = blob
    dense = out / f"b_dicts_{dense_mb}MB.pkl"
    if not dense.exists():

        def items(n: int) -> list[object]:
            # the issue's shape: small dicts of ints, floats and short strings
            return [{"id": i, "score": i / 7, "name": f"n{i % 1000}", "k": 3 * i} for i in range(n)]

        per = len(pickle.dumps(items(10000), protocol=4)) / 10000
        dense.write_bytes(pickle.dumps(items(int(dense_mb * 1024 * 1024 / per)), protocol=4))
    files["(b) opcode-dense pickle"] = dense
    big = out / f"c_torch_{torch_mb}MB.pt"
    if not big.exists():
        try:
            import torch

            per = 64
            sd = {
                f"w{i}": torch.zeros(per * 1024 * 1024 // 4) for i in range(max(1, torch_mb // per))
            }
            torch.save(sd, big)
        except ImportError:
            pass
    if big.exists():
        files["(c) torch zip"] = big
    return files


# -- workers --------------------------------------------------------------------
def _scan_one(tool: str, path: str) -> tuple[bool, bool, list[str]]:
    """(flagged, error, rule ids reported: mlverify only) for one file."""
    if tool == "mlverify":
        from mlverify._internal.scan import Severity, scan_file

        r = scan_file(Path(path))
        ids = sorted({f.rule_id for f in r.findings if f.severity > Severity.INFO})
        return any(f.severity >= Severity.MEDIUM for f in r.findings), False, ids
    if tool == "picklescan":
        from picklescan.scanner import scan_file_path

        res = scan_file_path(path)
        return res.issues_count > 0 or res.infected_files > 0, bool(res.scan_err), []
    if tool == "modelscan":
        from modelscan.modelscan import ModelScan

        out = ModelScan().scan(path)
        return bool(out.get("issues")), bool(out.get("errors")), []
    if tool == "fickling":
        import fickling

        res = fickling.scan_file(path, graceful=True)
        return not res.is_safe, bool(res.errors), []
    if tool == "modelaudit":
        from modelaudit.core import scan_model_directory_or_file

        out = scan_model_directory_or_file(path).model_dump()
        sev = {"critical", "high", "warning", "medium"}
        flagged = any(str(i.get("severity", "")).lower() in sev for i in out.get("issues", []))
        return flagged, bool(out.get("has_errors")), []
    raise ValueError(tool)


def worker(tool: str, list_file: str, result_file: str) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    paths = json.loads(Path(list_file).read_text())
    results = []
    for p in paths:
        t0 = time.perf_counter()
        ids: list[str] = []
        try:
            flagged, err, ids = _scan_one(tool, p)
        except Exception as e:  # a peer's crash is an error, not the end of the run
            flagged, err = False, True
            print(f"{tool}: {p}: {type(e).__name__}: {e}"[:200], file=sys.stderr)
        results.append({"path": p, "flagged": flagged, "error": err, "rules": ids,
                        "s": time.perf_counter() - t0})  # fmt: skip
    Path(result_file).write_text(json.dumps({"results": results, "peak_rss_mb": _peak_rss_mb()}))


def _peak_rss_mb() -> float:
    """VmHWM of this process image (ru_maxrss would include the forking parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(
    tool: str, paths: list[Path], tmp: Path, timeout: float
) -> tuple[list[dict[str, Any]], float, float, str]:
    lst = tmp / f"{tool}.list.json"
    res = tmp / f"{tool}.result.json"
    lst.write_text(json.dumps([str(p) for p in paths]))
    if res.exists():
        res.unlink()
    t0 = time.perf_counter()
    python = sys.executable if tool == "mlverify" else str(_peer_python())
    env = {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1"}  # ModelAudit: no telemetry
    proc = subprocess.Popen(
        [python, __file__, "--worker", tool, "--list", str(lst), "--result", str(res)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    status = "ok"
    deadline = t0 + timeout
    try:
        proc.wait(timeout=max(deadline - time.perf_counter(), 0.1))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        status = "timeout"
    wall = time.perf_counter() - t0
    doc = json.loads(res.read_text()) if res.exists() else {"results": [], "peak_rss_mb": 0.0}
    return doc["results"], wall, float(doc["peak_rss_mb"]), status


_PEER: list[Path] = []


def _peer_python() -> Path:
    return _PEER[0] if _PEER else PEER_PYTHON


def available(tool: str) -> bool:
    mod = {"mlverify": "mlverify._internal.scan", "picklescan": "picklescan",
           "modelscan": "modelscan", "fickling": "fickling",
           "modelaudit": "modelaudit.core"}[tool]  # fmt: skip
    python = sys.executable if tool == "mlverify" else str(_peer_python())
    if not Path(python).exists():
        return False
    probe = subprocess.run([python, "-c", f"import {mod}"], capture_output=True, check=False)
    return probe.returncode == 0


def startup(tool: str, sample: Path) -> float | None:
    cmd = {
        "mlverify": [str(Path(sys.executable).parent / "mlverify"), "scan", str(sample)],
        "picklescan": [str(_peer_python().parent / "picklescan"), "-p", str(sample)],
    }.get(tool)
    if cmd is None or not Path(cmd[0]).exists():
        return None
    times = []
    for _ in range(11):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]  # median


def c_unpickler_seconds(path: Path, runs: int) -> float:
    """The physical reference: pickle.loads of a benign file this benchmark wrote itself
    (ints, floats, strings and dicts only: no import can run), median of ``runs``, in a
    child."""
    code = (
        "import pickle,sys,time; d=open(sys.argv[1],'rb').read(); t=[]\n"
        f"for _ in range({max(runs, 1)}):\n s=time.perf_counter(); pickle.loads(d); "
        "t.append(time.perf_counter()-s)\nprint(sorted(t)[len(t)//2])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    return float(out.stdout.strip() or "nan")


_TIMED = (
    "import json, sys, time\n{setup}\n"
    "w, c = time.perf_counter(), time.process_time()\n{run}\n"
    "w, c = time.perf_counter() - w, time.process_time() - c\n"
    "hwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM')][0].split()[1]\n"
    "print(json.dumps([w, c, int(hwm) / 1024]))"
)


def alternate(path: Path, runs: int) -> None:
    """mlverify, picklescan and the C unpickler on ``path`` in turn, ``runs`` times, each
    run a fresh process (so the three share whatever load the machine has): medians of wall
    and CPU time, and the ratios."""
    cmds = {
        "mlverify": (sys.executable, "from pathlib import Path\n"
                     "from mlverify._internal.scan import scan_file",
                     "scan_file(Path(sys.argv[1]))"),
        "picklescan": (str(_peer_python()), "from picklescan.scanner import scan_file_path",
                       "scan_file_path(sys.argv[1])"),
        "C unpickler": (sys.executable, "import pickle; d = open(sys.argv[1], 'rb').read()",
                        "pickle.loads(d)"),
    }  # fmt: skip
    got: dict[str, list[list[float]]] = {k: [] for k in cmds}
    for _ in range(runs):
        for name, (python, setup, run) in cmds.items():
            code = _TIMED.format(setup=setup, run=run)
            out = subprocess.run([python, "-c", code, str(path)], capture_output=True, text=True)
            if out.returncode == 0:
                got[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med: dict[str, tuple[float, float]] = {}
    print(f"\n| (b), alternating, {runs} runs each | wall (median) | CPU (median) | peak RSS |")
    print("|---|---|---|---|")
    for name, rows in got.items():
        if not rows:
            print(f"| {name} | not run | | |")
            continue
        w = sorted(r[0] for r in rows)[len(rows) // 2]
        c = sorted(r[1] for r in rows)[len(rows) // 2]
        med[name] = (w, c)
        rss = "" if name == "C unpickler" else f"{max(r[2] for r in rows):.0f} MiB"
        print(f"| {name} | {w:.3f} s | {c:.3f} s | {rss} |")
    if "mlverify" in med and "C unpickler" in med:
        (mw, mc), (cw, cc) = med["mlverify"], med["C unpickler"]
        print(f"mlverify / C unpickler: {mc / cc:.1f}x CPU, {mw / cw:.1f}x wall", end="")
        if "picklescan" in med:
            pw, pc = med["picklescan"]
            print(f"; picklescan / mlverify: {pc / mc:.1f}x CPU, {pw / mw:.1f}x wall", end="")
        print()


def per_class(tools: list[str], out: Path, tmp: Path, timeout: float) -> None:
    """Detection and false positives per weakness class of the pickle scanner."""
    import pickle_corpus

    mal: dict[str, list[Path]] = {}
    for cls, items in pickle_corpus.malicious().items():
        d = out / "malicious" / cls.split()[0]
        d.mkdir(parents=True, exist_ok=True)
        for name, data in items.items():
            (d / name).write_bytes(data)
            mal.setdefault(cls, []).append(d / name)
    ben = pickle_corpus.benign(out / "benign")
    files = [p for ps in mal.values() for p in ps] + [p for ps in ben.values() for p in ps]
    flagged: dict[str, dict[str, bool]] = {}
    for tool in tools:
        res, _, _, _ = run_worker(tool, files, tmp, timeout)
        flagged[tool] = {r["path"]: bool(r["flagged"]) for r in res}
    print("\n| pickle class (malicious caught) | files | " + " | ".join(tools) + " |")
    print("|---|---|" + "---|" * len(tools))
    for label, group, want in [(c, ps, True) for c, ps in mal.items()] + [
        (f"benign: {c}", ps, False) for c, ps in ben.items()
    ]:
        cells = []
        for tool in tools:
            hit = sum(1 for p in group if flagged[tool].get(str(p), False) == want)
            cells.append(f"{hit}/{len(group)}" if want else f"{len(group) - hit} flagged")
        print(f"| {label} | {len(group)} | " + " | ".join(cells) + " |")


def format_section(out: Path, tools: list[str], tmp: Path, timeout: float) -> None:
    """Detection and false positives per non-pickle format, beside the peers.

    mlverify counts a malicious sample as caught when it reports the rule the sample is
    built for (tests/scan/format_samples.py), a peer when it flags the file at all; a
    benign file is a false positive when flagged at medium or above (what the default
    policy denies), and "noted" when it has any finding above info.
    """
    from tests.scan.format_samples import all_samples

    samples = all_samples(out / "formats")
    by_fmt: dict[str, list[Any]] = {}
    for s in samples:
        by_fmt.setdefault(s.fmt, []).append(s)
    results = {}
    for tool in tools:
        res, _wall, _rss, status = run_worker(tool, [s.path for s in samples], tmp, timeout)
        results[tool] = ({r["path"]: r for r in res}, status)
    print("\n| format | malicious | benign | " + " | ".join(
        f"{t} caught | {t} benign flagged" for t in tools) + " |")  # fmt: skip
    print("|---|---|---|" + "---|---|" * len(tools))
    for fmt, group in by_fmt.items():
        mal = [s for s in group if s.malicious]
        ben = [s for s in group if not s.malicious]
        cells = []
        for tool in tools:
            by, _status = results[tool]
            if tool == "mlverify":
                caught = sum(1 for s in mal if s.rule in by.get(str(s.path), {}).get("rules", []))
                noted = sum(1 for s in ben if by.get(str(s.path), {}).get("rules"))
            else:
                caught = sum(1 for s in mal if by.get(str(s.path), {}).get("flagged"))
                noted = 0
            flagged = sum(1 for s in ben if by.get(str(s.path), {}).get("flagged"))
            extra = f" (noted {noted})" if noted else ""
            cells.append(f"{caught}/{len(mal)} | {flagged}/{len(ben)}{extra}")
        print(f"| {fmt} | {len(mal)} | {len(ben)} | " + " | ".join(cells) + " |")
    missed = [s.name for s in samples if s.malicious
              and s.rule not in results.get("mlverify", ({}, ""))[0].get(str(s.path), {}).get(
                  "rules", [])]  # fmt: skip
    if missed:
        print(f"\nmlverify missed: {', '.join(missed)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    ap.add_argument("--blob-mb", type=int, default=200)
    ap.add_argument("--dense-mb", type=int, default=10)
    ap.add_argument("--torch-mb", type=int, default=1024)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--alternate", type=int, default=0,
                    help="also time the dense pickle with mlverify, picklescan and the C "
                    "unpickler in turn, this many times each")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per throughput file and tool (the median is shown)")  # fmt: skip
    ap.add_argument("--peer-python", default=str(PEER_PYTHON))
    ap.add_argument("--sections", default="pickle,formats",
                    help="pickle (corpus, throughput, start-up) and/or formats")  # fmt: skip
    ap.add_argument("--worker")
    ap.add_argument("--list")
    ap.add_argument("--result")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.list, args.result)
        return
    _PEER.append(Path(args.peer_python))
    out = Path(args.out)
    mal_dir, ben_dir, thr_dir, tmp = (out / d for d in ("malicious", "benign", "throughput", "tmp"))
    for d in (mal_dir, ben_dir, thr_dir, tmp):
        d.mkdir(parents=True, exist_ok=True)
    sections = set(args.sections.split(","))
    if "pickle" in sections:
        pickle_section(args, out, mal_dir, ben_dir, thr_dir, tmp)
    if "formats" in sections:
        tools = [t for t in args.tools.split(",") if available(t)]
        print(f"\nnon-pickle formats; tools: {', '.join(tools)}")
        format_section(out, tools, tmp, args.timeout)


def pickle_section(
    args: argparse.Namespace, out: Path, mal_dir: Path, ben_dir: Path, thr_dir: Path, tmp: Path
) -> None:
    malicious = []
    for name, data in malicious_samples().items():
        p = mal_dir / name
        p.write_bytes(data)
        malicious.append(p)
    benign = benign_samples(ben_dir)
    thr = throughput_files(thr_dir, args.blob_mb, args.dense_mb, args.torch_mb)
    tools = [t for t in args.tools.split(",") if available(t)]
    print(f"corpus: {len(malicious)} malicious, {len(benign)} benign; tools: {', '.join(tools)}\n")
    rows = []
    for tool in tools:
        res, wall, rss, status = run_worker(tool, malicious + benign, tmp, args.timeout)
        by = {r["path"]: r for r in res}
        det = sum(1 for p in malicious if by.get(str(p), {}).get("flagged"))
        fp = sum(1 for p in benign if by.get(str(p), {}).get("flagged"))
        errs = sum(1 for r in res if r["error"])
        scan_s = sum(r["s"] for r in res)
        rows.append((tool, det, fp, errs, wall, scan_s, rss, status))
    print("| tool | malicious caught | benign flagged | errors | wall (process) | scan time "
          "| per file | peak RSS |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    n = len(malicious) + len(benign)
    for tool, det, fp, errs, wall, scan_s, rss, status in rows:
        print(
            f"| {tool}{'' if status == 'ok' else ' (' + status + ')'} | {det}/{len(malicious)} "
            f"({100 * det / len(malicious):.0f} %) | {fp}/{len(benign)} "
            f"({100 * fp / max(len(benign), 1):.0f} %) | {errs} | {wall:.2f} s | {scan_s:.2f} s "
            f"| {1000 * scan_s / n:.1f} ms | {rss:.0f} MB |"
        )
    print("\n| throughput file | size | " + " | ".join(tools) + " |")
    print("|---|---|" + "---|" * len(tools))
    dense: dict[str, float] = {}
    ref = float("nan")
    for label, path in thr.items():
        size = path.stat().st_size
        cells = []
        for tool in tools:
            runs, rss, status, error = [], 0.0, "ok", False
            for _ in range(max(args.repeat, 1)):  # one child process per run
                res, wall, peak, status = run_worker(tool, [path], tmp, args.timeout)
                if status != "ok" or not res:
                    break
                runs.append(res[0]["s"])
                rss, error = max(rss, peak), error or res[0]["error"]
            if not runs:
                cells.append(status)
                continue
            s = sorted(runs)[len(runs) // 2]
            if label.startswith("(b)"):
                dense[tool] = s
                if tool == "mlverify":  # the reference right after, under the same load
                    ref = c_unpickler_seconds(path, args.repeat)
            rate = size / s / 1e9 if s else float("inf")
            cells.append(f"{s:.3f} s ({rate:.2f} GB/s, {rss:.0f} MB{', error' if error else ''})")
        print(f"| {label} | {size / 1e6:.0f} MB | " + " | ".join(cells) + " |")
    if ref != ref:  # nan: mlverify did not run
        ref = c_unpickler_seconds(thr["(b) opcode-dense pickle"], args.repeat)
    print(f"\n(times: median of {max(args.repeat, 1)} runs, each in a fresh process)")
    print(f"(b) with CPython's C unpickler loading the same benign bytes: {ref:.3f} s")
    if "mlverify" in dense:
        me = dense["mlverify"]
        print(f"(b) mlverify: {me / ref:.1f}x the C unpickler's time", end="")
        if "picklescan" in dense:
            print(f", {dense['picklescan'] / me:.1f}x faster than picklescan", end="")
        print(" (same run)")
    if args.alternate:
        alternate(thr["(b) opcode-dense pickle"], args.alternate)
    per_class(tools, out / "classes", tmp, args.timeout)
    # a pip install compiles bytecode; an editable checkout under PYTHONDONTWRITEBYTECODE
    # would not, and start-up would then measure the compiler
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "mlverify")], check=False,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    small = ben_dir / "plain_dict.pkl"
    print("\n| CLI start-up + scan of one small file (median of 11) | time |")
    print("|---|---|")
    for tool in ("mlverify", "picklescan"):
        t = startup(tool, small)
        if t is not None:
            print(f"| {tool} | {t * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
