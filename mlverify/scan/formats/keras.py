"""Keras model configs (``.keras`` config.json, HDF5 ``model_config``)."""

from __future__ import annotations

import json
from typing import Any

from mlverify.scan.context import ScanContext
from mlverify.scan.model import Severity
from mlverify.scan.rules import Rule
from mlverify.scan.source import Source

KERAS_LAMBDA = Rule(
    "MLV501",
    "keras-lambda",
    Severity.CRITICAL,
    "A Keras model contains a Lambda layer (marshalled Python bytecode).",
    "Lambda layers run arbitrary Python when the model is loaded or called.",
)
RULES = (KERAS_LAMBDA,)


def _walk_json(v: Any, depth: int = 0) -> Any:
    if depth > 200:
        return
    yield v
    if isinstance(v, dict):
        for x in v.values():
            yield from _walk_json(x, depth + 1)
    elif isinstance(v, list):
        for x in v:
            yield from _walk_json(x, depth + 1)


class KerasConfigScanner:
    name = "keras-config"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head.lstrip()[:1] == b"{" and b'"class_name"' in head

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        text = src.open().read(16 * 1024 * 1024 + 1)
        if len(text) > 16 * 1024 * 1024:
            return
        try:
            cfg = json.loads(text)
        except (ValueError, RecursionError):
            return
        label = src.label
        for node in _walk_json(cfg):
            if isinstance(node, dict) and node.get("class_name") in ("Lambda", "TFOpLambda"):
                name = (
                    node.get("config", {}).get("name", "?")
                    if isinstance(node.get("config"), dict)
                    else "?"
                )
                ctx.add(
                    KERAS_LAMBDA,
                    label,
                    None,
                    f"Lambda layer {name}",
                    f"Keras config declares a Lambda layer {name!r} (marshalled Python code)",
                )
