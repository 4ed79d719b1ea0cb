"""Labelled samples of every non-pickle code carrier, shared by the tests and the benchmark.

Attack samples are built from bytes (payloads harmless, never loaded); benign samples are
written by the real libraries (keras, h5py, onnx, jinja2 templates from real models) when
they are installed. Each sample names the rule a scanner must report (None: benign).
"""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.scan.builders import EVIL4

os.environ.setdefault("KERAS_BACKEND", "torch")


@dataclass(frozen=True)
class Sample:
    fmt: str
    name: str
    path: Path
    rule: str | None  # the rule that must be reported; None for a benign file

    @property
    def malicious(self) -> bool:
        return self.rule is not None


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


# -- Keras ---------------------------------------------------------------------------
def _layer(class_name: str, config: dict[str, Any], module: str | None = "keras.layers",
           **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"module": module, "class_name": class_name, "config": config,
            "registered_name": None, **extra}  # fmt: skip


def _sequential(*layers: dict[str, Any]) -> dict[str, Any]:
    inp = _layer("InputLayer", {"batch_shape": [None, 4], "dtype": "float32", "name": "in"})
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "sequential", "trainable": True, "layers": [inp, *layers]},
        "registered_name": None,
        "build_config": {"input_shape": [None, 4]},
        "compile_config": None,
    }


def _fn(module: str, name: str) -> dict[str, Any]:
    return {"module": module, "class_name": "function", "config": name, "registered_name": name}


def _dense(**cfg: Any) -> dict[str, Any]:
    return _layer("Dense", {"name": "d", "units": 2, **cfg})


#: the shapes of the published Keras safe-mode bypasses and code carriers
KERAS_ATTACKS: dict[str, tuple[dict[str, Any], str]] = {
    "lambda_layer": (
        _sequential(
            _layer(
                "Lambda",
                {
                    "name": "l",
                    "function": {
                        "class_name": "__lambda__",
                        "config": {"code": "4wEAAAAA", "defaults": None, "closure": None},
                    },
                },
            )
        ),
        "MLV501",
    ),
    "lambda_function_as_activation": (
        _sequential(_dense(activation={"class_name": "__lambda__", "config": {"code": "4w=="}})),
        "MLV501",
    ),
    "tfoplambda_keras2": (
        {
            "class_name": "Functional",
            "config": {
                "layers": [
                    {"class_name": "TFOpLambda", "config": {"name": "tf.math.add", "function": "x"}}
                ]
            },
        },
        "MLV501",
    ),
    "builtins_exec": (_sequential(_dense(activation=_fn("builtins", "exec"))), "MLV503"),
    "os_system_module": (_sequential(_dense(activation=_fn("os", "system"))), "MLV503"),
    "foreign_module_class": (
        _sequential(_layer("Evil", {"name": "e"}, module="evilpkg.layers")),
        "MLV502",
    ),
    "keras_utils_get_file": (
        _sequential(_dense(activation=_fn("keras.utils", "get_file"))),
        "MLV503",
    ),
    "enable_unsafe_deserialization": (
        _sequential(_dense(activation=_fn("keras.config", "enable_unsafe_deserialization"))),
        "MLV503",
    ),
    "internal_load_model": (
        _sequential(_dense(activation=_fn("keras.src.saving.saving_lib", "load_model"))),
        "MLV503",
    ),
    "tfsm_layer": (
        _sequential(_layer("TFSMLayer", {"name": "t", "filepath": "/tmp/sm"})),
        "MLV503",
    ),
    "registered_custom_object": (
        _sequential(_layer("Dense", {"name": "x", "units": 1}, registered_name="evil>Dense")),
        "MLV502",
    ),
    "vocabulary_host_path": (
        _sequential(_layer("StringLookup", {"name": "s", "vocabulary": "/etc/passwd"})),
        "MLV505",
    ),
    "vocabulary_url": (
        _sequential(_layer("StringLookup", {"name": "s", "vocabulary": "https://x.invalid/v"})),
        "MLV505",
    ),
    "initializer_traversal": (
        _sequential(
            _dense(
                kernel_initializer={
                    "class_name": "Constant",
                    "module": "keras.initializers",
                    "config": {"value": "../../secret.npy"},
                }
            )
        ),
        "MLV505",
    ),
    "torch_module_wrapper": (
        _sequential(
            _layer("TorchModuleWrapper", {"name": "t", "module": base64.b64encode(EVIL4).decode()})
        ),
        "MLV101",  # the nested pickle's os.system import
    ),
    "typespec_foreign": (
        _sequential(
            _dense(
                kernel_initializer={
                    "class_name": "__typespec__",
                    "spec_name": "system",
                    "module": "os",
                    "config": [],
                }
            )
        ),
        "MLV503",
    ),
}


def _escaped_lambda() -> bytes:
    """``"class_name": "\\u004cambda"``, spaced out: decoded JSON is what counts."""
    text = json.dumps(KERAS_ATTACKS["lambda_layer"][0], indent=7)
    return text.replace('"Lambda"', '"\\u004c\\u0061mbda"').encode()


def keras_samples(out: Path) -> list[Sample]:
    out.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    weights = b""
    if _importable("keras"):
        samples += _real_keras(out)
        weights = zipfile.ZipFile(out / "real_sequential.keras").read("model.weights.h5")
    for name, (cfg, rule) in KERAS_ATTACKS.items():
        p = out / f"{name}.keras"
        p.write_bytes(_zip({"metadata.json": b"{}", "config.json": json.dumps(cfg).encode(),
                            "model.weights.h5": weights}))  # fmt: skip
        samples.append(Sample("keras", name, p, rule))
    p = out / "escaped_lambda.keras"
    p.write_bytes(_zip({"config.json": _escaped_lambda(), "model.weights.h5": weights}))
    samples.append(Sample("keras", "escaped_lambda", p, "MLV501"))
    p = out / "bare_config.json"
    p.write_text(json.dumps(KERAS_ATTACKS["keras_utils_get_file"][0]))
    samples.append(Sample("keras", "bare_config_json", p, "MLV503"))
    return samples


def _real_keras(out: Path) -> list[Sample]:
    import keras

    samples = []
    seq = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01)),
        keras.layers.BatchNormalization(),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(1, activation=keras.activations.sigmoid),
    ])  # fmt: skip
    seq.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC()],
    )
    inp = keras.Input((8, 3))
    x = keras.layers.Conv1D(4, 3, padding="same")(inp)
    x = keras.layers.LayerNormalization()(x)
    y = keras.layers.MultiHeadAttention(2, 4)(x, x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.LSTM(5)(x)
    x = keras.layers.Dense(3, activation="softmax", kernel_initializer="he_normal")(x)
    functional = keras.Model(inp, x)
    functional.compile(optimizer=keras.optimizers.SGD(momentum=0.9),
                       loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))  # fmt: skip
    ids = keras.Input((6,), dtype="int32")
    emb = keras.layers.Embedding(50, 4, mask_zero=True)(ids)
    gru = keras.layers.Bidirectional(keras.layers.GRU(3))(emb)
    lookup_model = keras.Model(ids, keras.layers.Dense(2)(gru))
    for name, model in (("sequential", seq), ("functional", functional),
                        ("embedding", lookup_model)):  # fmt: skip
        p = out / f"real_{name}.keras"
        model.save(p)
        samples.append(Sample("keras", f"real_{name}", p, None))
    seq.save_weights(out / "real_seq.weights.h5")
    samples.append(Sample("hdf5", "real_weights_h5", out / "real_seq.weights.h5", None))
    seq.save(out / "real_legacy.h5")
    samples.append(Sample("hdf5", "real_legacy_h5_model", out / "real_legacy.h5", None))
    lam = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    lam.save(out / "real_lambda.keras")
    samples.append(Sample("keras", "real_lambda_written_by_keras", out / "real_lambda.keras",
                          "MLV501"))  # fmt: skip
    return samples


# -- HDF5 ----------------------------------------------------------------------------
def hdf5_samples(out: Path) -> list[Sample]:
    if not _importable("h5py"):
        return []
    import h5py
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    samples = []

    def h5(name: str, build: Callable[[Any], None], rule: str | None) -> None:
        p = out / f"{name}.h5"
        with h5py.File(p, "w") as f:
            build(f)
        samples.append(Sample("hdf5", name, p, rule))

    def data(f: Any) -> None:
        f.create_dataset("x", data=np.arange(10.0))
        f.create_group("g").create_dataset("y", data=np.zeros((2, 3), dtype="f4"))
        f.attrs["note"] = "plain data"

    h5("plain_data", data, None)
    lam = json.dumps(KERAS_ATTACKS["tfoplambda_keras2"][0])
    h5("model_config_lambda", lambda f: f.attrs.__setitem__("model_config", lam), "MLV501")
    spaced = _escaped_lambda()
    h5("model_config_escaped", lambda f: f.attrs.__setitem__("model_config", spaced), "MLV501")
    cfg = json.dumps(KERAS_ATTACKS["os_system_module"][0]).encode()
    h5("model_config_bytes", lambda f: f.attrs.__setitem__("model_config", np.void(cfg)),
       "MLV503")  # fmt: skip
    train = json.dumps({"loss": _fn("builtins", "eval"), "metrics": None}).encode()
    h5("training_config_eval", lambda f: f.attrs.__setitem__("training_config", train),
       "MLV503")  # fmt: skip

    def ext_link(f: Any) -> None:
        f["w"] = h5py.ExternalLink("/etc/passwd", "/")

    h5("external_link", ext_link, "MLV506")

    def ext_storage(f: Any) -> None:
        f.create_dataset("w", shape=(4,), dtype="u1", external=[("/etc/hostname", 0, 4)])

    h5("external_storage", ext_storage, "MLV506")

    def virtual(f: Any) -> None:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
        layout[:] = h5py.VirtualSource("/tmp/other.h5", "x", shape=(4,))
        f.create_virtual_dataset("v", layout)

    h5("virtual_dataset", virtual, "MLV506")
    return samples
