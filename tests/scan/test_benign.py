"""Realistic benign files scan clean (written with the real libraries, only scanned)."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest

from mlverify._internal.scan import Status, scan_file


def assert_clean(path: Path) -> None:
    report = scan_file(path)
    assert report.status == Status.CLEAN, [f.to_dict() for f in report.findings]
    assert report.findings == ()


def test_torch_checkpoints(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.LazyLinear(2) if False else torch.nn.Linear(4, 2),
        torch.nn.Dropout(0.1), torch.nn.LayerNorm(2), torch.nn.Embedding(5, 2),
    )  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 3)
    objs = {
        "state_dict.pt": model.state_dict(),
        "full_module.pt": model,
        "checkpoint.ckpt": {
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "epoch": 3, "args": argparse.Namespace(lr=0.1),
            "rng": torch.get_rng_state(), "half": torch.ones(3, dtype=torch.float16),
            "bf16": torch.zeros(2, dtype=torch.bfloat16), "long": torch.arange(4),
        },
        # transformers-style: pytorch_model.bin is a torch.save'd state dict
        "pytorch_model.bin": {f"encoder.layer.{i}.weight": torch.randn(4, 4) for i in range(3)},
    }  # fmt: skip
    for name, obj in objs.items():
        torch.save(obj, tmp_path / name)
        assert_clean(tmp_path / name)
        legacy = tmp_path / f"legacy_{name}"
        torch.save(obj, legacy, _use_new_zipfile_serialization=False)
        assert_clean(legacy)
    assert "pytorch-zip" in scan_file(tmp_path / "state_dict.pt").formats
    assert "torch-legacy" in scan_file(tmp_path / "legacy_state_dict.pt").formats


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archives(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class Double(torch.nn.Module):  # type: ignore[misc]
        def forward(self, x: object) -> object:
            return x * 2  # type: ignore[operator]

    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()))
    torch.jit.save(scripted, tmp_path / "scripted.pt")
    torch.jit.save(torch.jit.trace(Double(), torch.ones(2)), tmp_path / "traced.pt")
    for name in ("scripted.pt", "traced.pt"):
        report = scan_file(tmp_path / name)
        # a scripted module is code by nature: one info finding says so, nothing else
        assert report.status == Status.CLEAN and "torchscript" in report.formats
        assert [f.rule_id for f in report.findings] == ["MLV803"]


def _sklearn_models() -> list[object]:
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    rng = np.random.RandomState(0)
    X = rng.rand(60, 3)
    y = (X[:, 0] > 0.5).astype(int)
    pipe = Pipeline([("log", FunctionTransformer(np.log1p)), ("s", StandardScaler()),
                     ("lr", LogisticRegression())]).fit(X, y)  # fmt: skip
    cats = np.array([["a"], ["b"], ["a"]] * 20)
    ct = ColumnTransformer([("oh", OneHotEncoder(), [0])]).fit(cats)
    text = Pipeline([("tf", TfidfVectorizer()), ("svc", SVC())]).fit(
        ["alpha beta", "gamma delta", "beta gamma"] * 4, [0, 1, 0] * 4
    )
    return [
        pipe, ct, text,
        RandomForestClassifier(n_estimators=3, random_state=rng).fit(X, y),
        GradientBoostingClassifier(n_estimators=3).fit(X, y),
        KMeans(n_clusters=2, n_init=1).fit(X),
    ]  # fmt: skip


@pytest.mark.parametrize("proto", [2, 4, 5])
def test_sklearn_pickles(tmp_path: Path, proto: int) -> None:
    for i, model in enumerate(_sklearn_models()):
        p = tmp_path / f"m{i}.pkl"
        p.write_bytes(pickle.dumps(model, protocol=proto))
        assert_clean(p)


@pytest.mark.parametrize(
    "compress", [0, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)]
)
def test_sklearn_joblib(tmp_path: Path, compress: object) -> None:
    joblib = pytest.importorskip("joblib")
    for i, model in enumerate(_sklearn_models()):
        p = tmp_path / f"m{i}.joblib"
        joblib.dump(model, p, compress=compress)
        assert_clean(p)


def test_numpy_files(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "a.npy", np.arange(100.0).reshape(10, 10))
    objects = np.array([1, "x", None, {"k": 2}], dtype=object)
    np.save(tmp_path / "o.npy", objects, allow_pickle=True)  # safe: writes, never loads
    np.savez_compressed(tmp_path / "z.npz", a=np.arange(3), b=np.ones((2, 2)))
    np.savez(tmp_path / "zo.npz", o=np.array([1, "y"], dtype=object))
    for name in ("a.npy", "o.npy", "z.npz", "zo.npz"):
        assert_clean(tmp_path / name)
    p = tmp_path / "arrays.pkl"
    obj = {"f": np.float32(1), "i": np.int64(2), "rs": np.random.RandomState(1)}
    obj.update(gen=np.random.default_rng(1), dt=np.dtype("U5"))
    p.write_bytes(pickle.dumps(obj))
    assert_clean(p)


def test_pandas_frames(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    df["c"] = pd.to_datetime(["2024-01-01", "2024-01-02"])
    df["d"] = pd.Categorical(["u", "v"])
    for proto in (2, 4, 5):
        p = tmp_path / f"df{proto}.pkl"
        p.write_bytes(pickle.dumps(df, protocol=proto))
        assert_clean(p)
    p = tmp_path / "series.pkl"
    p.write_bytes(pickle.dumps(pd.Series([1.0, 2.0], index=pd.date_range("2024", periods=2))))
    assert_clean(p)


def test_safetensors_files(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    tensors = {"w": torch.ones(3, 4), "b": torch.zeros(4, dtype=torch.bfloat16)}
    st.save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "pt"})
    assert_clean(tmp_path / "m.safetensors")
    assert scan_file(tmp_path / "m.safetensors").formats == ("safetensors",)


def test_plain_python_pickles(tmp_path: Path) -> None:
    import collections
    import datetime
    import decimal

    obj = {
        "od": collections.OrderedDict(a=1), "dd": collections.defaultdict(list),
        "when": datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc),
        "d": datetime.date(2024, 1, 1), "td": datetime.timedelta(3),
        "dec": decimal.Decimal("1.5"), "set": {1, 2}, "fs": frozenset({3}), "c": 1 + 2j,
        "b": b"\x80\x04bytes", "t": (1, 2.5, None),
    }  # fmt: skip
    for proto in range(6):
        p = tmp_path / f"p{proto}.pkl"
        p.write_bytes(pickle.dumps(obj, protocol=proto))
        assert_clean(p)
