"""HDF5 (Keras .h5)."""

from __future__ import annotations

import re

from mlverify.scan.context import ScanContext
from mlverify.scan.formats.keras import KERAS_LAMBDA
from mlverify.scan.rules import UNSUPPORTED, Rule
from mlverify.scan.source import Source

RULES: tuple[Rule, ...] = ()

_H5_LAMBDA = re.compile(rb'"class_name":\s*"(Lambda|TFOpLambda)"')
_H5_CONFIG = re.compile(rb'"class_name":\s*"')


class Hdf5Scanner:
    name = "hdf5"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head[:8] == b"\x89HDF\r\n\x1a\n"

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        ctx.format("hdf5")
        stream = src.open()
        seen_config = False
        tail = b""
        read = 0
        while read < 512 * 1024 * 1024:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            window = tail + chunk
            m = _H5_LAMBDA.search(window)
            if m:
                ctx.add(
                    KERAS_LAMBDA,
                    src.label,
                    read - len(tail) + m.start(),
                    "Lambda",
                    "HDF5 Keras model_config declares a Lambda layer (marshalled Python code)",
                )
                return
            seen_config = seen_config or bool(_H5_CONFIG.search(window))
            tail = window[-64:]
            read += len(chunk)
        if not seen_config:
            ctx.add(
                UNSUPPORTED,
                src.label,
                0,
                "hdf5",
                "HDF5 file without a readable Keras model_config: contents not verified",
            )
