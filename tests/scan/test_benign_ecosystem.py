"""Benign files from LightGBM, XGBoost and transformers scan clean.

Every file is written the normal way with the real library (each test skips without it) and
then only scanned: nothing here loads a pickle, a checkpoint or a model file. "Clean" means no
finding above info; native non-pickle formats (XGBoost JSON/UBJ, LightGBM text, JSON configs,
tokenizer files) must come back as data.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlverify._internal.scan import Severity, Status, scan_file
from tests.core.helpers import run

PROTOCOLS = (2, 4, 5)
JOBLIB_COMPRESS: tuple[Any, ...] = (0, ("zlib", 3), ("xz", 3))


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing here may reach a hub: every file is made from local objects.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


def assert_clean(path: Path, status: Status = Status.CLEAN) -> None:
    report = scan_file(path)
    above_info = [f.to_dict() for f in report.findings if f.severity > Severity.INFO]
    assert above_info == [], path.name
    assert report.status == status, (path.name, report.status, report.formats)


def dump_all(directory: Path, name: str, obj: object) -> Iterator[Path]:
    """``obj`` pickled with each protocol and joblib-dumped with each compression."""
    joblib = pytest.importorskip("joblib")
    for proto in PROTOCOLS:
        p = directory / f"{name}.p{proto}.pkl"
        p.write_bytes(pickle.dumps(obj, protocol=proto))
        yield p
    for compress in JOBLIB_COMPRESS:
        p = directory / f"{name}.{compress[0] if compress else 'raw'}.joblib"
        joblib.dump(obj, p, compress=compress)
        yield p


def _frame() -> Any:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    return pd.DataFrame(
        {"x": rng.rand(80), "y": rng.rand(80), "c": pd.Categorical(rng.choice(list("abc"), 80))}
    )


# --- LightGBM -------------------------------------------------------------------------------


def test_lightgbm_models(tmp_path: Path) -> None:
    lgb = pytest.importorskip("lightgbm")
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    df = _frame()
    X, y = df[["x", "y"]].to_numpy(), (df["x"] > 0.5).astype(int).to_numpy()
    small = {"n_estimators": 5, "num_leaves": 4, "min_child_samples": 5, "verbose": -1}
    train, valid = lgb.Dataset(X[:60], y[:60]), lgb.Dataset(X[60:], y[60:])
    models = {
        "clf": lgb.LGBMClassifier(**small).fit(X, y),
        # pandas input with a categorical column and string labels (LabelEncoder inside)
        "clf_pandas": lgb.LGBMClassifier(**small).fit(df, np.where(y, "yes", "no")),
        "reg": lgb.LGBMRegressor(**small).fit(df, df["x"] * 2),
        "rank": lgb.LGBMRanker(**small).fit(X, (df["x"] * 4).astype(int), group=[40, 40]),
        "pipe": make_pipeline(StandardScaler(), lgb.LGBMClassifier(**small)).fit(X, y),
        "booster": lgb.train(
            {"objective": "binary", "num_leaves": 4, "verbose": -1}, train, num_boost_round=5,
            valid_sets=[valid], callbacks=[lgb.early_stopping(2, verbose=False)],
        ),
    }  # fmt: skip
    for name, model in models.items():
        for p in dump_all(tmp_path, name, model):
            assert_clean(p)
    # native formats are text: data, not findings
    booster = models["clf"].booster_
    booster.save_model(tmp_path / "model.txt")
    (tmp_path / "model.json").write_text(json.dumps(booster.dump_model()))
    for name in ("model.txt", "model.json"):
        assert_clean(tmp_path / name, Status.DATA)


# --- XGBoost --------------------------------------------------------------------------------


def test_xgboost_models(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    pytest.importorskip("sklearn")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    df = _frame()
    X, y = df[["x", "y"]].to_numpy(), (df["x"] > 0.5).astype(int).to_numpy()
    small = {"n_estimators": 5, "max_depth": 2, "n_jobs": 1}
    pipe = make_pipeline(
        StandardScaler(),
        xgb.XGBClassifier(**small, callbacks=[xgb.callback.EarlyStopping(rounds=2)]),
    )
    pipe.fit(X, y, xgbclassifier__eval_set=[(X, y)], xgbclassifier__verbose=False)
    models = {
        "clf": xgb.XGBClassifier(**small).fit(X, y),
        # pandas categorical input, early stopping on an eval set
        "clf_pandas": xgb.XGBClassifier(
            **small, enable_categorical=True, early_stopping_rounds=2
        ).fit(df, y, eval_set=[(df, y)], verbose=False),
        "reg": xgb.XGBRegressor(**small).fit(X, df["x"] * 2),
        "rf": xgb.XGBRFClassifier(**small).fit(X, y),
        "rank": xgb.XGBRanker(**small).fit(X, (df["x"] * 4).astype(int), qid=[0] * 40 + [1] * 40),
        "pipe": pipe,
        "booster": xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=y), num_boost_round=5),
    }
    for name, model in models.items():
        for p in dump_all(tmp_path, name, model):
            assert_clean(p)
    # native JSON / UBJSON saves are data, not findings
    for name, model in (("clf", models["clf"]), ("booster", models["booster"])):
        for ext in ("json", "ubj"):
            p = tmp_path / f"{name}.{ext}"
            model.save_model(p)
            assert_clean(p, Status.DATA)
            assert scan_file(p).findings == ()


# --- transformers ---------------------------------------------------------------------------

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "good", "bad", "##s"]


def _tiny_config(transformers: Any, **kw: Any) -> Any:
    return transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        vocab_size=len(VOCAB), **kw,
    )  # fmt: skip


def _tokenizer(transformers: Any, directory: Path) -> Any:
    """A BERT tokenizer from a vocab file written here (read locally, never downloaded)."""
    directory.mkdir()
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tok = transformers.BertTokenizer.from_pretrained(str(directory))
    assert tok("hello worlds")["input_ids"][1] == VOCAB.index("hello")
    return tok


def _scan_dir(directory: Path) -> set[str]:
    """Every file is clean (weights, pickles) or data (JSON, text); returns the names."""
    names = set()
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            weights = p.suffix in (".safetensors", ".bin", ".pt", ".pth")
            assert_clean(p, Status.CLEAN if weights else Status.DATA)
            names.add(p.name)
    return names


def test_transformers_save_pretrained(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.BertModel(_tiny_config(transformers))

    model.save_pretrained(tmp_path / "st")
    assert {"config.json", "model.safetensors"} <= _scan_dir(tmp_path / "st")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert any(n.endswith(".index.json") for n in _scan_dir(tmp_path / "sharded"))

    bin_dir = tmp_path / "bin"
    model.save_pretrained(bin_dir, safe_serialization=False)
    if not (bin_dir / "pytorch_model.bin").exists():
        # transformers >= 5 writes safetensors only; 4.x wrote the state dict with torch.save
        torch.save(dict(model.state_dict()), bin_dir / "pytorch_model.bin")
    # older hub checkpoints use torch's legacy (pre-zip) format
    torch.save(model.state_dict(), bin_dir / "legacy.bin", _use_new_zipfile_serialization=False)
    assert {"config.json", "pytorch_model.bin", "legacy.bin"} <= _scan_dir(bin_dir)
    assert "pytorch-zip" in scan_file(bin_dir / "pytorch_model.bin").formats
    assert "torch-legacy" in scan_file(bin_dir / "legacy.bin").formats

    # a hand-rolled checkpoint keeping the config objects next to the weights
    ckpt = tmp_path / "checkpoint.ckpt"
    gen = transformers.GenerationConfig(max_new_tokens=4)
    torch.save({"config": model.config, "generation": gen, "state_dict": model.state_dict()}, ckpt)
    assert_clean(ckpt)

    # a whole module pickled (not only its weights): imports every layer class and the
    # activation function it stores (torch._C._nn.gelu), all benign
    whole = tmp_path / "whole-model.pt"
    torch.save(model, whole)
    assert_clean(whole)


def test_transformers_tokenizer_files(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tok = _tokenizer(transformers, tmp_path / "vocab")
    tok.save_pretrained(tmp_path / "saved")
    assert "tokenizer_config.json" in _scan_dir(tmp_path / "saved")
    for proto in PROTOCOLS:  # tokenizers get pickled by data pipelines (multiprocessing, caches)
        p = tmp_path / f"tokenizer.p{proto}.pkl"
        p.write_bytes(pickle.dumps(tok, protocol=proto))
        assert_clean(p)


def test_transformers_trainer_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # TrainingArguments needs it with torch
    tok = _tokenizer(transformers, tmp_path / "vocab")
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(_tiny_config(transformers, num_labels=2))
    texts = ["hello world good", "bad world", "good good hello", "bad hellos"]
    data = [dict(tok(t), labels=i % 2) for i, t in enumerate(texts)]
    out = tmp_path / "run"
    args = transformers.TrainingArguments(
        output_dir=str(out), report_to="none", use_cpu=True, per_device_train_batch_size=2,
        max_steps=2, save_steps=2, logging_strategy="no", disable_tqdm=True, seed=0,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data, processing_class=tok,
        data_collator=transformers.DataCollatorWithPadding(tok),
    )  # fmt: skip
    trainer.train()
    trainer.save_model(str(out / "final"))

    names = _scan_dir(out)
    expected = {"training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth"}
    assert expected | {"model.safetensors", "trainer_state.json"} <= names
    # the same through the CLI, failing on anything at all
    res = run(capsys, "scan", out, "--format", "json", "--fail-on", "low")
    assert res.code == 0, res.out
    files = json.loads(res.out)["files"]
    assert {Path(f["path"]).name for f in files} == names
    assert all(f["findings"] == [] for f in files)
