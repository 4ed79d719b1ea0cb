"""Keras model configs: ``.keras`` ``config.json``, HDF5 ``model_config``, a bare config.json.

The config is JSON-decoded (so whitespace and ``\\u`` escapes change nothing) and every
nested object is judged the way Keras's own loader resolves it
(``keras.src.saving.serialization_lib``): an object with a ``class_name`` names a class
or function by ``module`` + ``class_name`` (or ``config`` for ``"function"``), and a
``registered_name`` takes precedence over both. Each reference must be on the allowlist
harvested from the installed Keras (``data/keras_allowlist.json``,
``scripts/harvest_keras_allowlist.py``); what is not is a finding, graded by what the
loader would do with it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import RESOURCE_LIMIT, Rule
from mlverify._internal.scan.source import bytes_source

KERAS_LAMBDA = Rule(
    "MLV501",
    "keras-lambda",
    Severity.CRITICAL,
    "A Keras model contains a Lambda layer or __lambda__ function (marshalled Python code).",
    "Lambda layers and __lambda__ objects carry Python bytecode that runs when the model "
    "is loaded with safe mode off or called.",
)
KERAS_EXTERNAL_REFERENCE = Rule(
    "MLV502",
    "keras-external-reference",
    Severity.HIGH,
    "A Keras config references a class or function outside the Keras allowlist.",
    "The loader imports the module or resolves a registered custom object: code that is "
    "not Keras's runs. High for modules outside Keras (older loaders import any module), "
    "medium for registered custom objects and unknown Keras-internal names.",
)
KERAS_UNSAFE_FUNCTION = Rule(
    "MLV503",
    "keras-unsafe-function",
    Severity.CRITICAL,
    "A Keras config references a function or layer that fetches files, loads other "
    "models, runs foreign code or switches safe mode off.",
    "The published Keras safe-mode bypasses name such functions (keras.utils.get_file, "
    "keras.config.enable_unsafe_deserialization, load_model, TFSMLayer, ...).",
)
KERAS_TORCH_MODULE = Rule(
    "MLV504",
    "keras-torch-module",
    Severity.HIGH,
    "A Keras config holds a TorchModuleWrapper: a torch.save pickle loaded with torch.load.",
    "The base64 module is decoded and scanned as a nested torch file; loading it runs "
    "torch.load(weights_only=False).",
)
KERAS_HOST_REFERENCE = Rule(
    "MLV505",
    "keras-host-reference",
    Severity.MEDIUM,
    "A Keras layer config holds a host path or URL (vocabulary file, initialiser file, ...).",
    "Loading the model reads or fetches that file from the loading host.",
)
RULES = (
    KERAS_LAMBDA,
    KERAS_EXTERNAL_REFERENCE,
    KERAS_UNSAFE_FUNCTION,
    KERAS_TORCH_MODULE,
    KERAS_HOST_REFERENCE,
)

MAX_CONFIG = 64 * 1024 * 1024  # bytes of JSON decoded
MAX_NODES = 2_000_000  # objects + lists + values walked per config
_KERAS_PACKAGES = frozenset({"keras", "keras_hub", "keras_cv", "keras_nlp", "tf_keras"})
#: libraries of Keras models (not harvested here): the loader accepts only their
#: KerasSaveable classes, so their references are low, not medium
_KERAS_LIBRARIES = frozenset({"keras_hub", "keras_cv", "keras_nlp"})
#: pure-data objects of the serialization format (no class is resolved for them)
_DATA_OBJECTS = frozenset(
    {"__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__", "__keras_tensor__"}
)
_LAMBDAS = frozenset({"Lambda", "TFOpLambda", "__lambda__", "SlicingOpLambda"})
#: layers that load files, call foreign functions or unpickle, by class name
_UNSAFE_LAYERS = frozenset({"TFSMLayer", "JaxLayer", "FlaxLayer"})
_TORCH_WRAPPER = "TorchModuleWrapper"
#: parts of the Keras API that are not modelling: files, downloads, saving, global state
_UNSAFE_SEGMENTS = frozenset(
    {"utils", "config", "saving", "datasets", "applications", "callbacks", "export",
     "preprocessing", "visualization", "distribution", "legacy", "_legacy", "wrappers",
     "file_utils", "io_utils", "saving_lib", "saving_api", "legacy_h5_format"}
)  # fmt: skip
_UNSAFE_NAME = re.compile(
    r"(?i)(get_file|download|load|save|unsafe|open|read|write|exec|eval|system|popen|spawn"
    r"|import|remove|unlink|rmtree|rename|copy|move|mkdir|glob|listdir|walk)"
)
#: config keys whose string value Keras layers open as a file (lookup vocabularies, ...)
_FILE_KEYS = frozenset(
    {"vocabulary", "idf_weights", "filepath", "file_path", "filename", "vocabulary_file",
     "vocab_file", "path", "weights_path", "saved_model_dir"}
)  # fmt: skip
_HOST = re.compile(
    r"^\s*(?:[/\\~]|[A-Za-z]:[\\/]|file:|[A-Za-z][A-Za-z0-9+.-]*://)|(?:^|[\\/])\.\.(?:[\\/]|$)"
)


@cache
def allowlist() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(allowed ``module.Name`` references, allowed class names, builtin function names)."""
    data = _data()
    refs = frozenset(data["public"]) | frozenset(data["internal"])
    names = frozenset(r.rpartition(".")[2] for r in refs) | frozenset(data.get("keras2_names", []))
    return refs, names, frozenset(data["builtin_functions"])


@cache
def non_modeling() -> frozenset[str]:
    """Names Keras's loader refuses as non-modelling APIs (their last part)."""
    return frozenset(n.rpartition(".")[2] for n in _data().get("non_modeling", []))


@cache
def _data() -> dict[str, Any]:
    text = (
        resources.files("mlverify._internal.scan").joinpath("data/keras_allowlist.json").read_text()
    )
    data: dict[str, Any] = json.loads(text)
    return data


def is_keras_config(doc: Any) -> bool:
    """Is a decoded JSON document a Keras object config (model, layer, ...)?"""
    return isinstance(doc, dict) and "class_name" in doc and ("config" in doc or "module" in doc)


def judge_text(raw: bytes, ctx: ScanContext, label: str, depth: int, what: str) -> bool:
    """Decode ``raw`` as JSON and judge every object in it as Keras; False if not JSON."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    judge(doc, ctx, label, depth, what)
    return True


def judge(doc: Any, ctx: ScanContext, label: str, depth: int, what: str = "config") -> None:
    """Judge every object of a decoded Keras config."""
    for walked, (node, key) in enumerate(_walk(doc)):
        if walked > MAX_NODES:
            ctx.add(RESOURCE_LIMIT, label, None, what, f"Keras {what} has over {MAX_NODES} nodes")
            return
        if isinstance(node, dict):
            if "class_name" in node:
                _judge_object(node, ctx, label, depth, what)
        elif isinstance(node, str) and key not in (None, "code", "module"):
            if key in _FILE_KEYS and node:
                why = "a file the loader reads"
            elif len(node) <= 4096 and _HOST.search(node):
                why = "a host path or URL"
            else:
                continue
            ctx.add(
                KERAS_HOST_REFERENCE,
                label,
                None,
                node[:200],
                f"Keras {what} sets {key!r} to {node[:200]!r}: {why}",
            )


def _walk(v: Any) -> Iterator[tuple[Any, str | None]]:
    """Every value of a JSON document with the dict key it sits under (None in lists)."""
    stack: list[tuple[Any, str | None]] = [(v, None)]
    while stack:
        node, key = stack.pop()
        yield node, key
        if isinstance(node, dict):
            stack.extend((x, str(k)) for k, x in node.items())
        elif isinstance(node, list):
            stack.extend((x, None) for x in node)


def _judge_object(
    node: dict[str, Any], ctx: ScanContext, label: str, depth: int, what: str
) -> None:
    refs, names, functions = allowlist()
    class_name = node.get("class_name")
    module = node.get("module")
    registered = node.get("registered_name")
    inner = node.get("config")
    if not isinstance(class_name, str):
        _external(ctx, label, repr(class_name)[:120], "a class_name that is not a string", what)
        return
    if class_name in _DATA_OBJECTS:
        return
    short = re.split(r"[>.]", class_name)[-1]  # "pkg>Name", "keras.layers.Name"
    if short in _LAMBDAS:
        name = inner.get("name", "?") if isinstance(inner, dict) else "?"
        ctx.add(
            KERAS_LAMBDA,
            label,
            None,
            f"{class_name} {name}",
            f"Keras {what} declares a {class_name} object {str(name)[:80]!r} "
            "(marshalled Python code)",
        )
        return
    if short == _TORCH_WRAPPER:
        _torch_wrapper(inner, ctx, label, depth, what)
        return
    if short in _UNSAFE_LAYERS:
        _unsafe(ctx, label, class_name, f"the {class_name} layer loads or calls foreign code", what)
        return
    package = module.split(".")[0] if isinstance(module, str) else ""
    if (
        isinstance(registered, str)
        and registered not in (class_name, "function")
        and not (package in _KERAS_LIBRARIES and registered.startswith(package + ">"))
    ):
        _external(ctx, label, registered[:200], "a registered custom object", what, Severity.MEDIUM)
    if class_name == "__typespec__":
        class_name = str(node.get("spec_name", ""))
    elif class_name == "function":
        if not isinstance(inner, str):
            return  # the loader rejects a function without a name
        if module == "builtins":
            if inner not in functions:
                verdict = ctx.policy.is_dangerous_target(f"builtins.{inner}")
                if verdict.kind == "deny":
                    _unsafe(ctx, label, f"builtins.{inner}", "a Python builtin", what)
                else:  # resolved among Keras's functions, then registered custom ones
                    why = "a registered custom function"
                    _external(ctx, label, inner[:200], why, what, Severity.MEDIUM)
            return
        class_name = inner
    if module is None:
        if class_name.startswith("Custom>"):  # tf.keras 2.11+ names of its own optimizers
            class_name = class_name[len("Custom>") :]
        if class_name not in names:  # Keras 2 style: resolved by name among Keras objects
            _external(ctx, label, class_name[:200], "a class Keras does not define", what,
                      Severity.MEDIUM)  # fmt: skip
        return
    if not isinstance(module, str):
        _external(ctx, label, repr(module)[:120], "a module that is not a string", what)
        return
    ref = f"{module}.{class_name}"
    if ref in refs:
        return
    parts = module.split(".")
    if parts[0] in _KERAS_PACKAGES:
        if (
            _UNSAFE_SEGMENTS.intersection(parts)
            or _UNSAFE_NAME.search(class_name)
            or class_name in non_modeling()
        ):
            _unsafe(ctx, label, ref[:200], "a non-modelling Keras API", what)
        elif parts[0] == "keras" and class_name in names:
            pass  # a Keras modelling class or function saved under another version's path
        elif parts[0] in _KERAS_LIBRARIES:
            _external(ctx, label, ref[:200], f"a {parts[0]} class (a Keras library)", what,
                      Severity.LOW)  # fmt: skip
        else:
            _external(ctx, label, ref[:200], "a Keras name not on the allowlist", what,
                      Severity.MEDIUM)  # fmt: skip
        return
    verdict = ctx.policy.is_dangerous_target(ref)
    if verdict.kind == "deny":
        _unsafe(ctx, label, ref[:200], f"a dangerous callable ({verdict.reason})", what)
    else:
        _external(ctx, label, ref[:200], "a module outside Keras", what)


def _external(
    ctx: ScanContext,
    label: str,
    subject: str,
    why: str,
    what: str,
    severity: Severity | None = None,
) -> None:
    ctx.add(
        KERAS_EXTERNAL_REFERENCE,
        label,
        None,
        subject,
        f"Keras {what} references {subject!r}: {why}",
        severity=severity,
    )


def _unsafe(ctx: ScanContext, label: str, subject: str, why: str, what: str) -> None:
    ctx.add(
        KERAS_UNSAFE_FUNCTION, label, None, subject, f"Keras {what} references {subject!r}: {why}"
    )


def _torch_wrapper(inner: Any, ctx: ScanContext, label: str, depth: int, what: str) -> None:
    blob = inner.get("module") if isinstance(inner, dict) else None
    msg = f"Keras {what} holds a TorchModuleWrapper (torch.load of a pickled module)"
    if not isinstance(blob, str):
        ctx.add(KERAS_TORCH_MODULE, label, None, _TORCH_WRAPPER, msg)
        return
    try:
        data = base64.b64decode(blob.encode("ascii"), validate=False)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        ctx.add(KERAS_TORCH_MODULE, label, None, _TORCH_WRAPPER, msg + "; its base64 is invalid")
        return
    sub = f"{label}!TorchModuleWrapper" if label else "TorchModuleWrapper"
    ctx.add(
        KERAS_TORCH_MODULE,
        label,
        None,
        _TORCH_WRAPPER,
        msg + f"; its {len(data)}-byte module was scanned as {sub}",
    )
    ctx.scan(bytes_source(data, sub), depth + 1)
