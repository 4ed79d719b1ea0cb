"""The pickle-scanner corpus by weakness class (issue 10): malicious samples built from opcode
bytes with a harmless payload (never loaded), and benign files written by the real libraries.

Used by bench/scan_bench.py, which runs every scanner over it in one run and prints detection
and false positives per class. The samples are ours (the same hands as the scanner): the table
shows what each class costs each tool, not how a corpus we never saw will come out.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from tests.scan.builders import EVIL0, EVIL4, binbytes, call0, call4, g0, s0, sg, u
from tests.scan.test_pickle_exact import (
    ARRAY3,
    F8,
    OPERANDS,
    _dtype,
    _joblib,
    _npy,
    _state,
    _wrapper,
)

PAYLOAD0 = call0("os", "system", "true")
PAYLOAD4 = call4("os", "system", "true")


def _torch_zip(pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


def malicious() -> dict[str, dict[str, bytes]]:
    """class -> {file name: bytes}."""
    c: dict[str, dict[str, bytes]] = {}
    c["1 parser differentials"] = {
        f"op{i}_{h}.pkl": hdr + op + PAYLOAD0 + b"."
        for i, op in enumerate(OPERANDS)
        for h, hdr in (("p0", b""), ("p2", b"\x80\x02"))
    }
    c["1 parser differentials"]["frame_straddle.pkl"] = (
        b"\x80\x04\x95" + struct.pack("<Q", 3) + u("os") + u("system") + b"\x93" + u("true")
        + b"\x85R."
    )  # fmt: skip
    c["1 parser differentials"]["in_torch_zip.pt"] = _torch_zip(
        b"\x80\x02I0x1\n0L0x1L\n0" + PAYLOAD0 + b"."
    )
    i4 = b"K\x03\x85"
    c["2 fail-open stops"] = {
        "list_shape.joblib": _joblib(_state(b"]K\x03a", F8), ARRAY3),
        "dict_none.joblib": _joblib(_state(i4, F8, style="dict-none"), ARRAY3),
        "slotstate.joblib": _joblib(_state(i4, F8, style="slots"), ARRAY3),
        "scalar_type.joblib": _joblib(_state(i4, sg("numpy", "float64")), ARRAY3),
        "dtype_of_type.joblib": _joblib(_state(i4, _dtype(sg("numpy", "float64"))), ARRAY3),
        "spelling.joblib": _joblib(_state(i4, _dtype(u("float64"))), ARRAY3),
        "no_align.joblib": _joblib(_state(i4, F8, align=False), b"\x00" * 24),
        "unsizeable.joblib": _joblib(_state(i4, _dtype(u("i4,f8"))), ARRAY3),
        "truncated_then_payload.pkl": b"\x80\x02I0x\n0" + PAYLOAD0 + b".",
    }
    hidden_state = _state(b"K" + bytes([len(PAYLOAD4)]) + b"\x85", _dtype(u("u1")), align=False)
    c["3 loader assumptions"] = {
        "array_bytes_as_opcodes.joblib": b"\x80\x04" + _wrapper(hidden_state) + PAYLOAD4 + b".",
        "objects_inline.joblib": b"\x80\x04"
        + _wrapper(_state(b"K\x01\x85", _dtype(u("O8"))))
        + b"\x80\x05"
        + PAYLOAD4
        + b"..",
    }
    c["4 allowlist by shape"] = {
        f"{m}.{n}.pkl": b"\x80\x04" + sg(m, n) + b")R."
        for m, n in (
            ("torch.nn.modules.linear", "Evil"),
            ("sklearn.utils", "Popen"),
            ("numpy", "Anything"),
            ("collections", "OrderedDictX"),
            ("pandas.io.pickle", "read_pickle"),
            ("torch.serialization", "_load"),
        )
    }
    computed = sg("collections", "OrderedDict") + b")R"
    c["5 call-through"] = {
        "reconstructor_computed.pkl": b"\x80\x04" + sg("copyreg", "_reconstructor") + b"("
        + computed + sg("builtins", "object") + b"NtR.",
        "partial_computed.pkl": b"\x80\x04" + sg("functools", "partial") + b"(" + computed
        + b"tR)R.",
        "getattr_not_a_method.pkl": b"\x80\x04" + sg("builtins", "getattr") + b"("
        + sg("collections", "OrderedDict") + u("fromkeys") + b"tR)R.",
        "partial_state_func.pkl": b"\x80\x04" + sg("functools", "partial") + b"("
        + sg("collections", "OrderedDict") + b"tR(" + computed + b")}Ntb.",
    }  # fmt: skip
    inner = b"N0" + PAYLOAD4 + b"."
    c["6 nested payloads"] = {
        "load_from_bytes_odd_start.pkl": b"\x80\x04" + sg("torch.storage", "_load_from_bytes")
        + b"(" + binbytes(inner) + b"tR.",
        "load_from_bytes_zip.pkl": b"\x80\x04" + sg("torch.storage", "_load_from_bytes") + b"("
        + binbytes(_torch_zip(EVIL4)) + b"tR.",
    }  # fmt: skip
    benign = pickle.dumps({"ok": 1}, protocol=2)
    comp: dict[str, bytes] = {
        "second_gzip_member.pkl.gz": gzip.compress(benign) + gzip.compress(EVIL0),
        "second_bz2_stream.pkl.bz2": bz2.compress(benign) + bz2.compress(EVIL0),
        "second_xz_stream.pkl.xz": lzma.compress(benign) + lzma.compress(EVIL0),
        # joblib < 0.10: "ZF", hex(length) left-justified to 19 bytes, one zlib stream
        "zf_container.pkl": b"ZF" + hex(len(EVIL0)).encode().ljust(19) + zlib.compress(EVIL0),
    }  # fmt: skip
    for name, pack in _codecs().items():
        comp[f"codec_{name}.pkl"] = pack(EVIL4)
    c["7 compression"] = comp
    c["8 npy headers"] = {
        f"npy_{i}.npy": _npy(d, EVIL4)
        for i, d in enumerate(["object", "|O", "O8", "object_", "<O", "not-a-spelling"])
    }
    c["8 npy headers"]["npy_struct.npy"] = _npy([("a", "<f8"), ("b", "object")], EVIL4)
    ndw = g0("joblib.numpy_pickle_compat", "NDArrayWrapper") + b")\x81(dp0\n"
    c["9 other"] = {
        "ndarraywrapper_traversal.pkl": b"\x80\x02" + ndw + s0("filename")
        + s0("../../x.npy") + b"sb.",
        "ext_code.pkl": b"\x80\x02\x82\x07)R.",
        "eof_global.pkl": b"\x80\x02cos\nsystem",
    }  # fmt: skip
    return c


def _codecs() -> dict[str, Callable[[bytes], bytes]]:
    out: dict[str, Callable[[bytes], bytes]] = {}
    try:
        import zstandard

        out["zstd"] = lambda d: zstandard.ZstdCompressor().compress(d)
    except ImportError:
        pass
    try:
        import lz4.frame

        out["lz4"] = lambda d: lz4.frame.compress(d)
    except ImportError:
        pass
    return out


def benign(out: Path) -> dict[str, list[Path]]:
    """class -> files written by the real libraries (those importable here)."""
    out.mkdir(parents=True, exist_ok=True)
    c: dict[str, list[Path]] = {}

    def put(cls: str, name: str, write: Callable[[Path], object]) -> None:
        p = out / name
        try:
            if not p.exists():
                write(p)
        except Exception:  # a library missing or failing here: fewer benign files
            return
        c.setdefault(cls, []).append(p)

    import datetime
    import decimal
    import fractions

    plain = {
        "a": [1, 2.5, "x", b"y", (1, 2), None, True],
        "d": datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc),
        "dec": decimal.Decimal("1.5"),
        "frac": fractions.Fraction(1, 3),
        "set": {1, 2},
        "big": 2**100,
    }
    for proto in range(6):
        put("stdlib", f"plain_p{proto}.pkl", lambda p, pr=proto: p.write_bytes(
            pickle.dumps(plain, protocol=pr)))  # fmt: skip
    try:
        import numpy as np
    except ImportError:
        return c
    try:
        import joblib

        arrays = {
            "f8": np.arange(10.0),
            "i4": np.arange(6, dtype="i4").reshape(2, 3),
            "u1": np.zeros(7, dtype="u1"),
            "U5": np.array(["ab", "cde"]),
            "c16": np.ones(3, dtype=complex),
            "struct": np.zeros(2, dtype=[("a", "f8"), ("b", "i2")]),
            "fortran": np.asfortranarray(np.ones((3, 4))),
            "obj": np.array([1, "x", None], dtype=object),
            "dt": np.array(["2024-01-01"], dtype="M8[ns]"),
            "empty": np.zeros((0, 3)),
            "scalar": np.float32(1.5),
        }
        for name, arr in arrays.items():
            put("joblib arrays", f"arr_{name}.joblib", lambda p, a=arr: joblib.dump(a, p))
        for comp in ("zlib", "gzip", "bz2", "xz", "lzma"):
            put("compressed", f"arrays.{comp}.joblib", lambda p, cm=comp: joblib.dump(
                arrays, p, compress=(cm, 3)))  # fmt: skip
        try:
            import lz4  # noqa: F401

            put("compressed", "arrays.lz4.joblib", lambda p: joblib.dump(arrays, p, compress="lz4"))
        except ImportError:
            pass
        data = Path(joblib.__file__).parent / "test" / "data"
        for f in sorted(data.glob("joblib_*")) if data.is_dir() else []:
            c.setdefault("joblib 0.8-0.11 test data", []).append(f)
    except ImportError:
        pass
    for name, arr in {"f8": np.arange(4.0), "obj_free_struct": np.zeros(2, "i4,f8")}.items():
        put("npy", f"{name}.npy", lambda p, a=arr: np.save(p, a))
    try:
        import pandas as pd

        df = pd.DataFrame(
            {
                "i": [1, 2, 3],
                "f": [0.5, 1.5, 2.5],
                "s": ["a", "b", "c"],
                "c": pd.Categorical(["x", "y", "x"]),
                "t": pd.date_range("2024-01-01", periods=3, tz="UTC"),
                "n": pd.array([1, None, 3], dtype="Int64"),
                "p": pd.period_range("2024-01", periods=3, freq="M"),
            }
        )
        for proto in (2, 4, 5):
            put("pandas", f"frame_p{proto}.pkl", lambda p, pr=proto: df.to_pickle(p, protocol=pr))
        for freq in ("h", "D", "W", "ME", "QE", "YE", "B"):
            s = pd.Series(range(3), index=pd.date_range("2024-01-01", periods=3, freq=freq))
            put("pandas", f"series_{freq}.pkl", lambda p, x=s: x.to_pickle(p))
    except ImportError:
        pass
    try:
        import joblib
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X = np.random.default_rng(0).random((20, 3))
        y = (X[:, 0] > 0.5).astype(int)
        models = {
            "logreg": LogisticRegression().fit(X, y),
            "forest": RandomForestClassifier(n_estimators=3).fit(X, y),
            "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
        }
        for name, m in models.items():
            put("scikit-learn", f"{name}.joblib", lambda p, mm=m: joblib.dump(mm, p))
            put("scikit-learn", f"{name}.pkl", lambda p, mm=m: p.write_bytes(pickle.dumps(mm)))
    except ImportError:
        pass
    try:
        import torch

        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.LayerNorm(4))
        opt = torch.optim.AdamW(model.parameters())
        ckpt = {"model": model.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state()}
        put("torch", "state_dict.pt", lambda p: torch.save(model.state_dict(), p))
        put("torch", "checkpoint.ckpt", lambda p: torch.save(ckpt, p))
        put("torch", "module.pt", lambda p: torch.save(model, p))
        put(
            "torch",
            "legacy.pt",
            lambda p: torch.save(ckpt, p, _use_new_zipfile_serialization=False),
        )
        put("torch", "tensor_plain.pkl", lambda p: p.write_bytes(pickle.dumps(torch.ones(3))))
    except ImportError:
        pass
    return c
