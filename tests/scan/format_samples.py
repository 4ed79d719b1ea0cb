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
    "model_from_json": (
        _sequential(_dense(activation=_fn("keras.models", "model_from_json"))),
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
    p = out / "utf16_config.keras"
    utf16 = json.dumps(KERAS_ATTACKS["lambda_layer"][0]).encode("utf-16")  # json.loads reads it
    p.write_bytes(_zip({"config.json": utf16, "model.weights.h5": weights}))
    samples.append(Sample("keras", "utf16_config", p, "MLV501"))
    p = out / "vocabulary_relative_file.keras"
    cfg = _sequential(_layer("StringLookup", {"name": "s", "vocabulary": "vocab.txt"}))
    p.write_bytes(_zip({"config.json": json.dumps(cfg).encode(), "model.weights.h5": weights}))
    samples.append(Sample("keras", "vocabulary_relative_file", p, "MLV505"))
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
    layers = keras.layers
    img = keras.Input((16, 16, 3))
    y = layers.Rescaling(1 / 255.0)(img)
    y = layers.RandomFlip("horizontal")(y)
    y = layers.Resizing(8, 8)(y)
    y = layers.Normalization(mean=0.5, variance=0.25)(y)
    y = layers.Conv2D(4, 3, padding="same", activation="swish",
                      kernel_constraint=keras.constraints.MaxNorm(2))(y)  # fmt: skip
    y = layers.SeparableConv2D(4, 3, padding="same")(y)
    y = layers.GroupNormalization(2)(y)
    y = layers.MaxPooling2D()(y)
    y = layers.Conv2DTranspose(4, 3, strides=2, padding="same")(y)
    y = layers.Reshape((64, 4))(y)
    y = layers.GRU(4, return_sequences=True)(y)
    y = layers.UnitNormalization()(y)
    y = layers.Dense(4, activation=keras.activations.gelu,
                     kernel_regularizer=keras.regularizers.L1L2(0.01, 0.01))(y)  # fmt: skip
    y = layers.GlobalAveragePooling1D()(y)
    y = layers.PReLU()(y)
    y = layers.Dense(3, activation="softmax", kernel_initializer=keras.initializers.Orthogonal(),
                     bias_initializer=keras.initializers.Constant(0.1))(y)  # fmt: skip
    many = keras.Model(img, y)
    many.compile(
        optimizer=keras.optimizers.RMSprop(keras.optimizers.schedules.CosineDecay(0.01, 100)),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseTopKCategoricalAccuracy(2)],
    )
    for name, model in (("many_layers", many), ("sequential", seq), ("functional", functional),
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

    def cycle(f: Any) -> None:  # a hard-link cycle: walked once, not forever
        g = f.create_group("a/b")
        g["x"] = np.zeros(3)
        g["up"] = f["/"]

    h5("hard_link_cycle", cycle, None)
    # what tf.keras 2 writes (no "module" keys; TF 2.11+ optimizer names), as data
    keras2 = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {
                        "batch_input_shape": [None, 4],
                        "dtype": "float32",
                        "name": "input_1",
                    },
                },
                {
                    "class_name": "Dense",
                    "config": {
                        "name": "dense",
                        "units": 2,
                        "activation": "relu",
                        "dtype": {"class_name": "Policy", "config": {"name": "mixed_float16"}},
                        "kernel_initializer": {
                            "class_name": "GlorotUniform",
                            "config": {"seed": None},
                        },
                        "bias_initializer": {"class_name": "Zeros", "config": {}},
                    },
                },
            ],
        },
    }
    train = {"loss": "binary_crossentropy", "metrics": [[{"class_name": "MeanMetricWrapper",
             "config": {"name": "accuracy", "dtype": "float32", "fn": "binary_accuracy"}}]],
             "optimizer_config": {"class_name": "Custom>Adam", "config": {"name": "Adam",
                                  "learning_rate": 0.001}}}  # fmt: skip

    def keras2_file(f: Any) -> None:
        f.attrs["keras_version"] = "2.12.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(keras2)
        f.attrs["training_config"] = json.dumps(train)
        g = f.create_group("model_weights/dense/dense")
        g.create_dataset("kernel:0", data=np.zeros((4, 2), dtype="f4"))

    h5("keras2_style_model", keras2_file, None)
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

    p = out / "userblock_lambda.h5"
    with h5py.File(p, "w", userblock_size=512) as f:
        f.attrs["model_config"] = lam
    with open(p, "r+b") as fh:  # what precedes the superblock is free for anything
        fh.write(b"#!/bin/sh\n# not HDF5 at byte 0\n")
    samples.append(Sample("hdf5", "userblock_lambda", p, "MLV501"))

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


# -- ONNX ----------------------------------------------------------------------------
def _varint(n: int, pad: int = 0) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n or pad:
            out.append(b | 0x80)
        else:
            out.append(b)
            break
        if not n:
            pad -= 1
            if pad == 0:
                out.append(0)
                break
    return bytes(out)


def reorder_fields(data: bytes, pad: int = 3) -> bytes:
    """The same message with its top-level fields reversed and every key and length
    varint padded to a non-minimal encoding (what a parser must still accept)."""
    fields = []
    off = 0

    def read_varint(o: int) -> tuple[int, int]:
        v = s = 0
        while True:
            b = data[o]
            o += 1
            v |= (b & 0x7F) << s
            s += 7
            if not b & 0x80:
                return v, o

    while off < len(data):
        key, off = read_varint(off)
        wt = key & 7
        if wt == 0:
            val, off = read_varint(off)
            fields.append(_varint(key, pad) + _varint(val, pad))
        elif wt == 2:
            ln, off = read_varint(off)
            fields.append(_varint(key, pad) + _varint(ln, pad) + data[off : off + ln])
            off += ln
        else:
            raise ValueError(wt)
    return b"".join(reversed(fields))


def onnx_samples(out: Path) -> list[Sample]:
    if not _importable("onnx"):
        return []
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []

    def tensor(name: str, shape: tuple[int, ...] = (2, 2)) -> Any:
        return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)

    def external(t: Any, location: str) -> Any:
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("raw_data")
        for k, v in (("location", location), ("offset", "0"), ("length", "16")):
            e = t.external_data.add()
            e.key, e.value = k, v
        return t

    def model(nodes: list[Any], inits: list[Any], **kw: Any) -> Any:
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], inits,
        )  # fmt: skip
        return helper.make_model(graph, opset_imports=kw.pop("opsets", None)
                                 or [helper.make_opsetid("", 17)], **kw)  # fmt: skip

    def save(name: str, m: Any, rule: str | None, raw: bytes | None = None) -> None:
        p = out / f"{name}.onnx"
        p.write_bytes(raw if raw is not None else m.SerializeToString())
        samples.append(Sample("onnx", name, p, rule))

    add = helper.make_node("Add", ["x", "w"], ["y"])
    plain = model([add], [tensor("w")])
    onnx.checker.check_model(plain)
    save("real_add", plain, None)
    # a real model with external data written by onnx itself (relative location)
    ext_dir = out / "external"
    ext_dir.mkdir(exist_ok=True)
    big = model([add], [numpy_helper.from_array(np.ones((64, 64), np.float32), "w")])
    onnx.save_model(
        big,
        ext_dir / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx_data",
        size_threshold=0,
    )
    samples.append(Sample("onnx", "real_external_data", ext_dir / "model.onnx", None))
    # subgraph (If) and a model-local function in its own domain: benign
    then_g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "then",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
    )
    cond = helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=then_g)
    with_if = model([helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
        "c", TensorProto.BOOL, [], [True])), cond], [])  # fmt: skip
    save("real_if_subgraph", with_if, None)
    fn = helper.make_function("local.fns", "Twice", ["a"], ["b"],
                              [helper.make_node("Add", ["a", "a"], ["b"])],
                              [helper.make_opsetid("", 17)])  # fmt: skip
    with_fn = model([helper.make_node("Twice", ["x"], ["y"], domain="local.fns")], [],
                    opsets=[helper.make_opsetid("", 17), helper.make_opsetid("local.fns", 1)],
                    functions=[fn])  # fmt: skip
    save("real_local_function", with_fn, None)
    save("real_reordered_fields", plain, None, reorder_fields(plain.SerializeToString()))
    if _importable("torch"):  # what torch.onnx.export writes (TorchScript-based exporter)
        import warnings

        import torch

        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                  torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (torch.ones(1, 3, 8, 8),),
                str(out / "real_torch_export.onnx"),
                dynamo=False,
                input_names=["x"],
                dynamic_axes={"x": {0: "b"}},
            )
        samples.append(Sample("onnx", "real_torch_export", out / "real_torch_export.onnx", None))
    # attacks: a traversing location in every place a TensorProto sits
    for loc_name, loc in (("dotdot", "../../../etc/passwd"), ("absolute", "/etc/shadow"),
                          ("windows", "C:\\Windows\\win.ini"), ("inner", "a/../../x"),
                          ("unc", "\\\\host\\share\\w.bin")):  # fmt: skip
        save(f"ext_initializer_{loc_name}", model([add], [external(tensor("w"), loc)]), "MLV701")
    loc = "../../../etc/passwd"
    const = helper.make_node("Constant", [], ["w"], value=external(tensor("w"), loc))
    save("ext_attribute_t", model([const, add], []), "MLV701")
    attr_tensors = helper.make_node("Add", ["x", "x"], ["y"])
    a = attr_tensors.attribute.add()
    a.name, a.type = "extra", onnx.AttributeProto.TENSORS
    a.tensors.append(tensor("ok"))
    a.tensors.append(external(tensor("t2"), loc))
    save("ext_attribute_tensors", model([attr_tensors], []), "MLV701")
    sparse = helper.make_sparse_tensor(external(tensor("v", (2,)), loc),
                                       numpy_helper.from_array(np.array([0, 3], np.int64), "i"),
                                       [2, 2])  # fmt: skip
    m = model([add], [tensor("w")])
    m.graph.sparse_initializer.append(sparse)
    save("ext_sparse_values", m, "MLV701")
    sparse2 = helper.make_sparse_tensor(tensor("v", (2,)), external(numpy_helper.from_array(
        np.array([0, 3], np.int64), "i"), loc), [2, 2])  # fmt: skip
    m = model([add], [tensor("w")])
    m.graph.sparse_initializer.append(sparse2)
    save("ext_sparse_indices", m, "MLV701")
    evil_then = helper.make_graph([helper.make_node("Identity", ["k"], ["y"])], "then", [],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
                                  [external(tensor("k"), loc)])  # fmt: skip
    deep_if = helper.make_node("If", ["c"], ["y"], then_branch=evil_then, else_branch=then_g)
    save("ext_subgraph_initializer", model([deep_if], []), "MLV701")
    evil_fn = helper.make_function("local.fns", "Twice", ["a"], ["b"],
                                   [helper.make_node("Constant", [], ["b"],
                                                     value=external(tensor("k"), loc))],
                                   [helper.make_opsetid("", 17)])  # fmt: skip
    save("ext_function_constant",
         model([helper.make_node("Twice", ["x"], ["y"], domain="local.fns")], [],
               opsets=[helper.make_opsetid("", 17), helper.make_opsetid("local.fns", 1)],
               functions=[evil_fn]), "MLV701")  # fmt: skip
    ti = model([add], [tensor("w")])
    info = ti.training_info.add()
    info.initialization.CopyFrom(helper.make_graph([], "init", [], [],
                                                   [external(tensor("z"), loc)]))  # fmt: skip
    save("ext_training_info", ti, "MLV701")
    evil = model([add], [external(tensor("w"), loc)])
    save("ext_reordered_nonminimal", evil, "MLV701", reorder_fields(evil.SerializeToString()))
    dup = model([add], [external(tensor("w"), "weights.bin")])
    e = dup.graph.initializer[0].external_data.add()
    e.key, e.value = "location", loc  # the last entry wins in the runtime
    save("ext_duplicate_location", dup, "MLV701")
    # fields of another wire type are unknown fields to protobuf: they must not hide a model
    raw = evil.SerializeToString()
    save("ext_ir_version_also_bytes", evil, "MLV701", raw + _pf(1, b"x"))
    save("ext_graph_also_varint", evil, "MLV701", raw + _pf(7, 5))
    p = out / "ext_in_deflated_zip.zip"
    p.write_bytes(_zip({"model/model.onnx": evil.SerializeToString()}))
    samples.append(Sample("onnx", "ext_in_deflated_zip", p, "MLV701"))
    custom = model(
        [helper.make_node("Evil", ["x"], ["y"], domain="evil.custom")],
        [],
        opsets=[helper.make_opsetid("", 17), helper.make_opsetid("evil.custom", 1)],
    )
    save("custom_domain", custom, "MLV702")
    return samples


# -- TensorFlow SavedModel (TF is not a test dependency: messages encoded per its schema) ----
def _pf(num: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(num << 3) + _varint(payload)
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _node(name: str, op: str, *inputs: str, **attrs: bytes) -> bytes:
    body = _pf(1, name.encode()) + _pf(2, op.encode())
    body += b"".join(_pf(3, i.encode()) for i in inputs)
    for key, value in attrs.items():
        body += _pf(5, _pf(1, key.encode()) + _pf(2, value))
    return body


def tf_const(*values: bytes) -> bytes:
    """A Const's ``value`` attribute: a TensorProto of strings."""
    return _pf(8, b"".join(_pf(8, v) for v in values))


def tf_func(name: str) -> bytes:
    """An ``f`` attribute naming a library function."""
    return _pf(10, _pf(1, name.encode()))


def saved_model(graph_nodes: list[bytes], functions: dict[str, list[bytes]],
                assets: tuple[str, ...] = (), saver: str = "",
                args: dict[str, list[str]] | None = None) -> bytes:  # fmt: skip
    library = b""
    for fname, nodes in functions.items():
        sig = _pf(1, fname.encode()) + b"".join(
            _pf(2, _pf(1, a.encode())) for a in (args or {}).get(fname, [])
        )
        library += _pf(1, _pf(1, sig) + b"".join(_pf(3, n) for n in nodes))
    graph = b"".join(_pf(1, n) for n in graph_nodes) + _pf(2, library)
    meta = _pf(1, _pf(4, b"serve")) + _pf(2, graph)
    if saver:
        meta += _pf(3, _pf(1, saver.encode()))
    for a in assets:
        meta += _pf(6, _pf(2, a.encode()))
    return _pf(1, 1) + _pf(2, meta)


SAVE_FN, RESTORE_FN = "__inference__traced_save_7", "__inference__traced_restore_8"


def tf2_saver_functions() -> dict[str, list[bytes]]:
    """The V2 saver's functions as tf.saved_model.save writes them (TF 2.x)."""
    save = [
        _node("StaticRegexFullMatch", "StaticRegexFullMatch", "file_prefix"),
        _node("Const", "Const", value=tf_const(b".part")),
        _node("Const_1", "Const", value=tf_const(b"_temp/part")),
        _node("Select", "Select", "StaticRegexFullMatch:output:0", "Const:output:0",
              "Const_1:output:0"),
        _node("StringJoin", "StringJoin", "file_prefix", "Select:output:0"),
        _node("num_shards", "Const"),
        _node("ShardedFilename/shard", "Const"),
        _node("ShardedFilename", "ShardedFilename", "StringJoin:output:0",
              "ShardedFilename/shard:output:0", "num_shards:output:0"),
        _node("SaveV2/tensor_names", "Const", value=tf_const(b"v/.ATTRIBUTES/VARIABLE_VALUE")),
        _node("SaveV2/shape_and_slices", "Const", value=tf_const(b"")),
        _node("SaveV2", "SaveV2", "ShardedFilename:filename:0",
              "SaveV2/tensor_names:output:0", "SaveV2/shape_and_slices:output:0",
              "savev2_v_read_readvariableop"),
        _node("MergeV2Checkpoints/checkpoint_prefixes", "Pack", "ShardedFilename:filename:0",
              "^SaveV2"),
        _node("MergeV2Checkpoints", "MergeV2Checkpoints",
              "MergeV2Checkpoints/checkpoint_prefixes:output:0", "file_prefix"),
        _node("Identity", "Identity", "file_prefix", "^MergeV2Checkpoints"),
    ]  # fmt: skip
    restore = [
        _node("RestoreV2/tensor_names", "Const", value=tf_const(b"v")),
        _node("RestoreV2/shape_and_slices", "Const", value=tf_const(b"")),
        _node("RestoreV2", "RestoreV2", "file_prefix", "RestoreV2/tensor_names:output:0",
              "RestoreV2/shape_and_slices:output:0"),
        _node("AssignVariableOp", "AssignVariableOp", "resource", "RestoreV2:tensors:0"),
    ]  # fmt: skip
    return {SAVE_FN: save, RESTORE_FN: restore}


TF2_SAVER_ARGS = {SAVE_FN: ["file_prefix", "savev2_v_read_readvariableop"],
                  RESTORE_FN: ["file_prefix", "resource"]}  # fmt: skip


def _tf2_shape(extra: list[bytes], graph_extra: tuple[bytes, ...] = ()) -> bytes:
    """The shape TF2 writes: a serving graph calling functions that do the work, and the
    saver's filename placeholder fed to its save and restore functions."""
    graph = [
        _node("serving_default_x", "Placeholder"),
        _node("StatefulPartitionedCall", "StatefulPartitionedCall", "serving_default_x",
              f=tf_func("__inference_serve_42")),
        _node("saver_filename", "Placeholder"),
        _node("StatefulPartitionedCall_1", "StatefulPartitionedCall", "saver_filename",
              "Const", f=tf_func(SAVE_FN)),
        _node("StatefulPartitionedCall_2", "StatefulPartitionedCall", "saver_filename",
              "v", f=tf_func(RESTORE_FN)),
        _node("Const", "Const"),
        _node("NoOp", "NoOp"),
        *graph_extra,
    ]  # fmt: skip
    serve = [_node(n, op) for n, op in (("x", "_Arg"), ("r", "ReadVariableOp"), ("m", "MatMul"),
             ("b", "BiasAdd"), ("a", "Relu"), ("s", "Softmax"), ("i", "Identity"),
             ("o", "_Retval"))] + extra  # fmt: skip
    functions = {"__inference_serve_42": serve, **tf2_saver_functions()}
    return saved_model(graph, functions, assets=("vocab.txt",), saver="saver_filename:0",
                       args={**TF2_SAVER_ARGS, "__inference_serve_42": ["x"]})  # fmt: skip


SAVEDMODEL_ATTACKS: dict[str, tuple[list[bytes], str]] = {
    "readfile": ([_node("rf", "ReadFile")], "MLV901"),
    "writefile": ([_node("wf", "WriteFile")], "MLV901"),
    "matchingfiles": ([_node("mf", "MatchingFiles")], "MLV901"),
    "pyfunc": ([_node("p", "PyFunc", token=_pf(2, b"pyfunc_0"))], "MLV901"),
    "eagerpyfunc": ([_node("p", "EagerPyFunc")], "MLV901"),
    "immutableconst": (
        [_node("c", "ImmutableConst", memory_region_name=_pf(2, b"/etc/passwd"))],
        "MLV901",
    ),
    "summary_writer": (
        [_node("w", "CreateSummaryFileWriter"), _node("s", "WriteSummary")],
        "MLV901",
    ),
    "dataset_to_tfrecord": ([_node("d", "DatasetToTFRecord")], "MLV901"),
    "tfrecord_dataset": ([_node("d", "TFRecordDatasetV2")], "MLV901"),
    "debug_identity_url": (
        [_node("d", "DebugIdentityV2", debug_urls=_pf(1, _pf(2, b"file:///tmp/dump")))],
        "MLV901",
    ),
    "printv2_to_file": (
        [_node("p", "PrintV2", output_stream=_pf(2, b"file:///etc/cron.d/x"))],
        "MLV901",
    ),
    "custom_op": ([_node("c", "MyCustomKernelOp")], "MLV902"),
    "init_table_from_file": ([_node("t", "InitializeTableFromTextFileV2")], "MLV901"),
}


def savedmodel_samples(out: Path) -> list[Sample]:
    out.mkdir(parents=True, exist_ok=True)
    samples = []

    def save(name: str, data: bytes, rule: str | None) -> None:
        d = out / name
        d.mkdir(exist_ok=True)
        (d / "saved_model.pb").write_bytes(data)
        samples.append(Sample("savedmodel", name, d / "saved_model.pb", rule))

    save("tf2_shape", _tf2_shape([]), None)
    save("tf2_shape_print_to_stderr",
         _tf2_shape([_node("p", "PrintV2", output_stream=_pf(2, b"stderr"))]), None)  # fmt: skip
    save("tf2_shape_reordered", reorder_fields(_tf2_shape([])), None)
    for name, (nodes, rule) in SAVEDMODEL_ATTACKS.items():
        save(name, _tf2_shape(nodes), rule)
    save("readfile_reordered_nonminimal", reorder_fields(_tf2_shape([_node("r", "ReadFile")])),
         "MLV901")  # fmt: skip
    save("readfile_in_top_graph", saved_model([_node("r", "ReadFile")], {}), "MLV901")
    # TF parses unknown fields and does not need the schema version: neither hides the graph
    evil = _tf2_shape([_node("r", "ReadFile")])
    save("readfile_unknown_field", evil + _pf(99, b"padding"), "MLV901")
    save("readfile_no_version", evil[len(_pf(1, 1)) :], "MLV901")
    save("readfile_onnx_graph_field", evil + _pf(7, b"\x0a\x00"), "MLV901")
    save("asset_traversal", saved_model([], {}, assets=("../../../etc/passwd",)), "MLV903")
    pbtxt = (
        'saved_model_schema_version: 1\nmeta_graphs {\n  meta_info_def { tags: "serve" }\n'
        '  graph_def {\n    node { name: "x" op: "Placeholder" }\n'
        '    library { function { signature { name: "f" }\n'
        '      node_def { name: "m" op: "MatMul" }\n      node_def { name: "r" op: %s } } }\n'
        "  }\n}\n"
    )
    for name, op, rule in (("text_format_plain", '"Identity"', None),
                           ("text_format_readfile", "'Read' \"File\"", "MLV901")):  # fmt: skip
        d = out / name
        d.mkdir(exist_ok=True)
        (d / "saved_model.pbtxt").write_text(pbtxt % op)
        samples.append(Sample("savedmodel", name, d / "saved_model.pbtxt", rule))
    p = out / "readfile_in_deflated_zip.zip"
    p.write_bytes(_zip({"m/saved_model.pb": _tf2_shape([_node("r", "ReadFile")])}))
    samples.append(Sample("savedmodel", "readfile_in_deflated_zip", p, "MLV901"))

    def metadata(layers: list[dict[str, Any]]) -> bytes:
        nodes = b""
        for i, layer in enumerate(layers):
            nodes += _pf(
                1,
                _pf(2, i)
                + _pf(3, f"root.layer-{i}".encode())
                + _pf(4, b"_tf_keras_layer")
                + _pf(5, json.dumps(layer).encode()),
            )
        return nodes

    dense = {"name": "dense", "class_name": "Dense", "config": {"units": 2}, "trainable": True}
    lam = {"name": "lambda", "class_name": "Lambda",
           "config": {"function": ["4wEAAAAA", None, None], "function_type": "lambda"}}  # fmt: skip
    obj_graph = _pf(1, _pf(4, _pf(1, b"_tf_keras_layer") + _pf(3, json.dumps(lam).encode())))
    sm = _pf(1, 1) + _pf(2, _pf(1, _pf(4, b"serve")) + _pf(7, obj_graph))
    save("object_graph_keras_lambda", sm, "MLV501")
    for name, layers, rule in (("keras_metadata_plain", [dense], None),
                               ("keras_metadata_lambda", [dense, lam], "MLV501")):  # fmt: skip
        d = out / name
        d.mkdir(exist_ok=True)
        (d / "keras_metadata.pb").write_bytes(metadata(layers))
        samples.append(Sample("savedmodel", name, d / "keras_metadata.pb", rule))
    return samples


# -- GGUF chat templates ----------------------------------------------------------------
def gguf_bytes(templates: dict[str, str], version: int = 3) -> bytes:
    import struct

    def s(x: str) -> bytes:
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    kv = s("general.architecture") + struct.pack("<I", 8) + s("llama")
    kv += s("general.name") + struct.pack("<I", 8) + s("tiny")
    kv += s("llama.context_length") + struct.pack("<II", 4, 4096)
    kv += s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + s("a") + s("b") + s("c")
    kv += s("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<3f", 0, 0, 0)
    for key, template in templates.items():
        kv += s(key) + struct.pack("<I", 8) + s(template)
    n_kv = 5 + len(templates)
    tensor_info = s("token_embd.weight") + struct.pack("<IQQIQ", 2, 4, 3, 0, 0)
    header = b"GGUF" + struct.pack("<IQQ", version, 1, n_kv) + kv + tensor_info
    pad = (-len(header)) % 32
    return header + b"\0" * pad + b"\0" * 48


def _write_gguf(path: Path, templates: dict[str, str]) -> None:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_context_length(128)
    w.add_block_count(1)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<s>", "</s>", "a"])
    w.add_token_scores([0.0, 0.0, 0.0])
    w.add_chat_template(templates["default"])
    named = [{"name": k, "template": v} for k, v in templates.items() if k != "default"]
    if named:  # written as tokenizer.chat_template.<name> plus the tokenizer.chat_templates list
        w.add_chat_template([*named, {"name": "default", "template": templates["default"]}])
    w.add_tensor("token_embd.weight", np.zeros((3, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_samples(out: Path) -> list[Sample]:
    from tests.scan.chat_templates import ATTACKS, BENIGN

    out.mkdir(parents=True, exist_ok=True)
    samples = []
    for name, tmpl in BENIGN.items():
        p = out / f"real_{name}.gguf"
        p.write_bytes(gguf_bytes({"tokenizer.chat_template": tmpl}))
        samples.append(Sample("gguf", f"real_{name}", p, None))
    p = out / "real_named_templates.gguf"
    p.write_bytes(
        gguf_bytes(
            {
                "tokenizer.chat_template": BENIGN["chatml"],
                "tokenizer.chat_template.tool_use": BENIGN["qwen2.5-tools"],
            }
        )
    )
    samples.append(Sample("gguf", "real_named_templates", p, None))
    for name, tmpl in ATTACKS.items():
        p = out / f"{name}.gguf"
        p.write_bytes(gguf_bytes({"tokenizer.chat_template": tmpl}))
        samples.append(Sample("gguf", name, p, "MLV601"))
    if _importable("gguf"):  # files written by llama.cpp's own gguf writer
        for name, templates, rule in (
            ("real_gguf_writer", {"default": BENIGN["llama-3.1-tools"],
                                  "tool_use": BENIGN["qwen2.5-tools"]}, None),
            ("gguf_writer_named_payload", {"default": BENIGN["gemma"],
                                           "rag": ATTACKS["lipsum_globals"]}, "MLV601"),
        ):  # fmt: skip
            p = out / f"{name}.gguf"
            _write_gguf(p, templates)
            samples.append(Sample("gguf", name, p, rule))
    # the payload hidden in a named template behind a benign default one
    p = out / "named_template_payload.gguf"
    p.write_bytes(
        gguf_bytes(
            {
                "tokenizer.chat_template": BENIGN["chatml"],
                "tokenizer.chat_template.rag": ATTACKS["cycler_globals"],
            }
        )
    )
    samples.append(Sample("gguf", "named_template_payload", p, "MLV601"))
    # the same checks on a Hugging Face tokenizer_config.json
    p = out / "tokenizer_config.json"
    p.write_text(json.dumps({"bos_token": "<s>", "chat_template": [
        {"name": "default", "template": BENIGN["chatml"]},
        {"name": "tool_use", "template": ATTACKS["item_concat"]}]}))  # fmt: skip
    samples.append(Sample("gguf", "hf_tokenizer_config_template", p, "MLV601"))
    for name, tmpl, rule in (("real_chat_template_jinja", BENIGN["llama-3.1-tools"], None),
                             ("chat_template_jinja_payload", ATTACKS["item_concat"] + "\n"
                              + BENIGN["chatml"], "MLV601")):  # fmt: skip
        d = out / name
        d.mkdir(exist_ok=True)
        (d / "chat_template.jinja").write_text(tmpl)
        samples.append(Sample("gguf", name, d / "chat_template.jinja", rule))
    p = out / "real_tokenizer_config.json"
    p.write_text(json.dumps({"bos_token": "<s>", "chat_template": BENIGN["llama-3.1-tools"]}))
    samples.append(Sample("gguf", "real_hf_tokenizer_config", p, None))
    return samples


# -- TorchScript -------------------------------------------------------------------------
TORCHSCRIPT_ATTACKS: dict[str, tuple[str, str]] = {
    "setstate_from_file": (
        "  def __setstate__(self: __torch__.M, state: Tuple[int]) -> None:\n"
        "    _0 = torch.from_file(\"/etc/passwd\", False, 16)\n    return None\n", "MLV801"),
    "aten_save": ("  def leak(self: __torch__.M, x: Tensor) -> None:\n"
                  "    ops.aten.save(x, \"/tmp/x.pt\")\n    return None\n", "MLV801"),
    # an op fetched by getattr from its namespace is that op (red team)
    "getattr_aten_save": ("  def leak2(self: __torch__.M, x: Tensor) -> None:\n"
                          "    getattr(ops.aten, \"save\")(x, \"/tmp/x.pt\")\n    return None\n",
                          "MLV801"),
    "torch_ops_from_file": ("  def m(self: __torch__.M) -> Tensor:\n"
                            "    return torch.ops.aten.from_file(\"/etc/shadow\", False, 8)\n",
                            "MLV801"),
    "custom_op": ("  def m(self: __torch__.M, x: Tensor) -> Tensor:\n"
                  "    return ops.evil_ns.run(x)\n", "MLV802"),
    "custom_class": ("  def m(self: __torch__.M) -> None:\n"
                     "    _0 = torch.classes.evil.Shell()\n    return None\n", "MLV802"),
    "rpc": ("  def m(self: __torch__.M, x: Tensor) -> Tensor:\n"
            "    return torch.distributed.rpc.rpc_sync(\"worker\", torch.add, (x, 1))\n", "MLV801"),
    "c10d_namespace": ("  def m(self: __torch__.M, x: Tensor) -> Tensor:\n"
                       "    return ops.c10d.allreduce_(x)\n", "MLV801"),
    "import_builtin": ("  def m(self: __torch__.M) -> None:\n"
                       "    _0 = __import__(\"os\").system(\"true\")\n    return None\n", "MLV801"),
    "getattr_globals": ("  def m(self: __torch__.M) -> None:\n"
                        "    _0 = getattr(self.forward, \"__globals__\")\n    return None\n",
                        "MLV801"),
}  # fmt: skip


def torchscript_samples(out: Path) -> list[Sample]:
    if not _importable("torch"):
        return []
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    out.mkdir(parents=True, exist_ok=True)
    samples = []
    seq = torch.jit.script(
        torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten())
    )
    torch.jit.save(seq, out / "real_scripted.pt")
    samples.append(Sample("torchscript", "real_scripted", out / "real_scripted.pt", None))
    lstm = torch.jit.script(torch.nn.LSTM(3, 4, batch_first=True))
    torch.jit.save(lstm, out / "real_lstm.pt")
    samples.append(Sample("torchscript", "real_lstm", out / "real_lstm.pt", None))

    class Forked(torch.nn.Module):  # async tasks, an exported method, a module attribute
        def __init__(self) -> None:
            super().__init__()
            self.scale = 2.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            fut = torch.jit.fork(torch.relu, x)
            return torch.jit.wait(fut) * self.scale + self.helper(x)

        @torch.jit.export
        def helper(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.softmax(x.view(-1), dim=0).view(x.shape)

    torch.jit.save(torch.jit.script(Forked()), out / "real_forked.pt")
    samples.append(Sample("torchscript", "real_forked", out / "real_forked.pt", None))
    traced = torch.jit.trace(torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Softmax(-1)),
                             torch.ones(1, 4))  # fmt: skip
    torch.jit.save(traced, out / "real_traced.pt")
    samples.append(Sample("torchscript", "real_traced", out / "real_traced.pt", None))
    try:
        q = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(torch.nn.Linear(4, 4)), {torch.nn.Linear}, dtype=torch.qint8
        )
        torch.jit.save(torch.jit.script(q), out / "real_quantized.pt")
        samples.append(Sample("torchscript", "real_quantized", out / "real_quantized.pt", None))
    except Exception:  # no quantized engine on this CPU
        pass
    base = zipfile.ZipFile(out / "real_scripted.pt")
    names = base.namelist()
    top = next(n for n in names if "/code/__torch__/torch/nn/" in n and n.endswith(".py"))
    for name, (method, rule) in TORCHSCRIPT_ATTACKS.items():
        members = {n: base.read(n) for n in names}
        members[top] = members[top].rstrip(b"\n") + b"\n" + method.encode()
        p = out / f"{name}.pt"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for n, data in members.items():
                z.writestr(n, data)
        p.write_bytes(buf.getvalue())
        samples.append(Sample("torchscript", name, p, rule))
    return samples


# -- configs that name code -----------------------------------------------------------------
CONFIG_ATTACKS: dict[str, tuple[str, str, str]] = {
    "hydra_os_system": ("model_config.yaml",
                        "model:\n  _target_: os.system\n  command: 'true'\n", "MLV1001"),
    "hydra_unknown_target": ("config.yaml",
                             "trainer:\n  callbacks:\n    - _target_: evilpkg.Callback\n",
                             "MLV1001"),
    "hydra_escaped_key": ("config.yaml", "model:\n  \"\\x5ftarget_\": builtins.exec\n",
                          "MLV1001"),
    "hydra_json": ("hparams.json", json.dumps({"net": {"_target_": "subprocess.Popen",
                                                          "args": ["true"]}}), "MLV1001"),
    "hydra_json_escaped": ("hparams.json",
                           '{"net": {"\\u005ftarget_": "subprocess.Popen"}}', "MLV1001"),
    "hf_auto_map_local": ("config.json", json.dumps({"model_type": "x", "auto_map": {
        "AutoModel": "modeling_x.XModel", "AutoConfig": "configuration_x.XConfig"}}),
        "MLV1002"),
    "hf_auto_map_remote": ("config.json", json.dumps({"auto_map": {
        "AutoModelForCausalLM": "evil-org/evil-repo--modeling.Evil"}}), "MLV1002"),
    "hf_tokenizer_auto_map": ("tokenizer_config.json", json.dumps({"auto_map": {
        "AutoTokenizer": ["tokenization_x.XTokenizer", None]}}), "MLV1002"),
    "hf_custom_pipeline": ("config.json", json.dumps({"custom_pipelines": {"text-x": {
        "impl": "pipeline_x.XPipeline", "pt": ["AutoModel"]}}}), "MLV1002"),
    "hydra_yaml_line_continuation": ("config.yaml",
                                     'model:\n  ? "_tar\\\n    get_"\n  : os.system\n', "MLV1001"),
    "lightning_cli_class_path": ("config.yaml", "model:\n  class_path: os.system\n"
                                 "  init_args: {command: 'true'}\n", "MLV1001"),
    "diffusers_custom_component": ("model_index.json", json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "unet": ["my_unet", "MyUNet"], "vae": ["diffusers", "AutoencoderKL"]}), "MLV1002"),
    "trust_remote_code_flag": ("config.json", json.dumps({"trust_remote_code": True}),
                               "MLV1003"),
}  # fmt: skip


def config_samples(out: Path) -> list[Sample]:
    import tarfile

    out.mkdir(parents=True, exist_ok=True)
    samples = []
    for name, (fname, text, rule) in CONFIG_ATTACKS.items():
        d = out / name
        d.mkdir(exist_ok=True)
        (d / fname).write_text(text)
        samples.append(Sample("config", name, d / fname, rule))
    benign = {
        "hf_config": ("config.json", json.dumps({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
            "torch_dtype": "bfloat16", "rope_scaling": None, "_name_or_path": "/home/x/model"})),
        "hydra_torch_targets": ("config.yaml",
                                "optim:\n  _target_: torch.optim.AdamW\n  lr: 0.001\n"
                                "model:\n  _target_: torch.nn.Linear\n  in_features: 3\n"),
        "plain_yaml": ("params.yaml", "lr: 0.1\nlayers: [1, 2, 3]\nname: run_1\n"),
        "diffusers_model_index": ("model_index.json", json.dumps({
            "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "safety_checker": [None, None], "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "unet": ["diffusers", "UNet2DConditionModel"]})),
        "generation_config": ("generation_config.json",
                              json.dumps({"bos_token_id": 1, "do_sample": True})),
    }  # fmt: skip
    for name, (fname, text) in benign.items():
        d = out / name
        d.mkdir(exist_ok=True)
        (d / fname).write_text(text)
        samples.append(Sample("config", name, d / fname, None))
    # a .nemo archive (a tar) whose model_config.yaml instantiates os.system
    nemo = out / "evil.nemo"
    with tarfile.open(nemo, "w") as tar:
        cfg = CONFIG_ATTACKS["hydra_os_system"][1].encode()
        info = tarfile.TarInfo("./model_config.yaml")
        info.size = len(cfg)
        tar.addfile(info, io.BytesIO(cfg))
    samples.append(Sample("config", "nemo_tar_target", nemo, "MLV1001"))
    nemo_gz = out / "evil_gz.nemo"
    with tarfile.open(nemo_gz, "w:gz") as tar:
        tar.add(nemo, arcname="inner.nemo")  # a gzipped tar holding the tar above
        info = tarfile.TarInfo("./model_config.yaml")
        info.size = len(cfg)
        tar.addfile(info, io.BytesIO(cfg))
    samples.append(Sample("config", "nemo_tar_gz_target", nemo_gz, "MLV1001"))
    return samples


def all_samples(out: Path) -> list[Sample]:
    """Every format's samples (those whose writing library is installed)."""
    return (
        keras_samples(out / "keras")
        + hdf5_samples(out / "hdf5")
        + onnx_samples(out / "onnx")
        + savedmodel_samples(out / "savedmodel")
        + gguf_samples(out / "gguf")
        + torchscript_samples(out / "torchscript")
        + config_samples(out / "config")
        + _more(out)
    )


def _more(out: Path) -> list[Sample]:
    """R serialization and skops samples (their builders live beside their tests)."""
    from tests.scan.rds_builders import rds_samples
    from tests.scan.skops_builders import skops_samples

    return rds_samples(out / "rds") + skops_samples(out / "skops")
