"""ONNX models, walked with the ``onnx`` package's own schema (its message descriptors).

Every message is reached by type, not by a list of places: a ``TensorProto`` is judged
wherever it sits (graph initializers, node attributes ``t`` / ``tensors``, sparse tensors'
values and indices, functions, subgraphs at any depth, training info). External data
``location`` values that are absolute, contain ``..`` or are longer than any path can
be make the runtime read a file outside the model directory: critical. Operator domains
that are neither standard nor defined by the model's own functions need a native
library registered with the runtime: reported.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.formats import _protobuf as pb
from mlverify._internal.scan.formats.savedmodel import looks_like_savedmodel
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import RESOURCE_LIMIT, UNSUPPORTED, Rule
from mlverify._internal.scan.source import FileSource, Source, materialize

ONNX_EXTERNAL_PATH = Rule(
    "MLV701",
    "onnx-external-path",
    Severity.CRITICAL,
    "An ONNX tensor's external data location escapes the model directory.",
    "Absolute paths, drive letters, UNC paths or '..' make the runtime read arbitrary files "
    "of the loading host.",
)
ONNX_CUSTOM_DOMAIN = Rule(
    "MLV702",
    "onnx-custom-domain",
    Severity.LOW,
    "An ONNX model uses a custom operator domain.",
    "Custom operators need a native library registered with the runtime; review it.",
)
RULES = (ONNX_EXTERNAL_PATH, ONNX_CUSTOM_DOMAIN)

#: domains whose operators ship with the ONNX spec or with onnxruntime itself
STANDARD_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "ai.onnx.training",
     "ai.onnx.preview", "com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental",
     "com.ms.internal.nhwc"}
)  # fmt: skip
MAX_LOCATION = 4096  # PATH_MAX: a longer location is no file name a runtime opens
_DRIVE = re.compile(r"^[A-Za-z]:")
#: ModelProto: 1 ir_version (varint), 7 graph (message); other fields may be anything
_MODEL_GRAPH = 7


@cache
def schema() -> pb.Schema:
    """The message graph of ``onnx.ModelProto`` from the installed onnx package."""
    from google.protobuf.descriptor import FieldDescriptor
    from onnx import onnx_ml_pb2

    out: pb.Schema = {}
    todo: list[Any] = [onnx_ml_pb2.ModelProto.DESCRIPTOR]
    while todo:
        d = todo.pop()
        if d.full_name in out:
            continue
        fields: dict[int, str] = {}
        out[d.full_name] = fields
        for f in d.fields:
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                fields[f.number] = f.message_type.full_name
                todo.append(f.message_type)
            elif f.type == FieldDescriptor.TYPE_STRING:
                fields[f.number] = "string"
            elif f.type == FieldDescriptor.TYPE_ENUM or f.type in (
                FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64,
            ):  # fmt: skip
                fields[f.number] = "varint"
    return out


def looks_like_onnx(src: Source) -> bool:
    if not isinstance(src, FileSource) or not src.size:
        return False
    seen = pb.top_level(src)
    if seen is None or 2 not in seen.get(_MODEL_GRAPH, set()):
        return False
    # the runtime needs an ir_version varint; other wire types of a field are unknown
    # fields to protobuf, skipped (so they cannot hide the file)
    return 0 in seen.get(1, {0})


#: TensorFlow's fingerprint.pb (FingerprintDef, TF >= 2.12, beside every saved_model.pb):
#: five uint64 hashes (fields 1-5), a VersionDef (6) and a uuid string (7)
_FINGERPRINT = {1: {0}, 2: {0}, 3: {0}, 4: {0}, 5: {0}, 6: {2}, 7: {2}}


def _tf_fingerprint(src: FileSource) -> bool:
    """A small message of exactly FingerprintDef's fields (called only once the bytes have
    failed to parse as an ONNX model, which a runtime would refuse as well)."""
    if (src.size or 0) > 1024:
        return False
    seen = pb.top_level(src)
    if not seen:
        return False
    return all(_FINGERPRINT.get(num) == wts for num, wts in seen.items())


class OnnxScanner:
    name = "onnx"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        key = pb.first_key(head)
        if len(head) < 4 or key is None or key[1] not in (0, 2):
            return False
        # a whole message with a graph; or the opening exporters write (ir_version, then
        # a string or the graph), whose damage below is then reported, not passed; a
        # compressed archive member is judged by that opening and read to its end
        opening = head[0] == 0x08 and 1 <= head[1] <= 20 and head[2] in (0x12, 0x1A, 0x22, 0x3A)
        if not isinstance(src, FileSource):
            return opening and head[:3] != b"\x08\x01\x12"
        return looks_like_onnx(src) or (opening and not looks_like_savedmodel(src))

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        src = materialize(src, ctx.limits.max_decompressed)
        ctx.format("onnx")
        try:
            sch = schema()
        except ImportError:
            msg = "ONNX model: the onnx package is not installed, not verified (pip install onnx)"
            ctx.add(UNSUPPORTED, src.label, None, "onnx", msg)
            return
        judge = _Judge(ctx, src.label)
        try:
            pb.walk(src, sch, "onnx.ModelProto", judge.visit)
        except pb.Malformed as e:
            if _tf_fingerprint(src):
                return  # TensorFlow's fingerprint.pb: no ONNX loader can parse it
            ctx.add(UNSUPPORTED, src.label, None, "onnx", f"ONNX protobuf is malformed: {e}")
        except pb.DepthExceeded as e:
            ctx.add(RESOURCE_LIMIT, src.label, None, "onnx", str(e))
        judge.report_domains()


class _Judge:
    def __init__(self, ctx: ScanContext, label: str) -> None:
        self.ctx = ctx
        self.label = label
        self.domains: dict[str, int] = {}  # domain -> first offset it is used at
        self.local: set[str] = set()  # domains of the model's own functions

    def visit(self, typ: str, s: dict[int, list[str]], off: int, parent: str, pfield: int) -> None:
        if typ == "onnx.StringStringEntryProto" and parent == "onnx.TensorProto" and pfield == 13:
            if s.get(1, [""])[-1] == "location":
                for value in s.get(2, [""]):
                    self._location(value, off)
        elif typ == "onnx.OperatorSetIdProto":
            for d in s.get(1, [""]):
                self.domains.setdefault(d, off)
        elif typ == "onnx.NodeProto":
            for d in s.get(7, [""]):
                self.domains.setdefault(d, off)
        elif typ == "onnx.FunctionProto":
            self.local.update(s.get(10, [""]))

    def _location(self, value: str, off: int) -> None:
        norm = value.replace("\\", "/")
        why = None
        if len(value) >= MAX_LOCATION:
            why = f"is {len(value)}+ characters long"
        elif norm.startswith("/") or _DRIVE.match(norm):
            why = "is absolute"
        elif ".." in norm.split("/"):
            why = "climbs out with '..'"
        elif "\0" in value or ":" in norm:
            why = "holds a NUL or a drive/stream separator"
        if why:
            self.ctx.add(
                ONNX_EXTERNAL_PATH,
                self.label,
                off,
                value[:200],
                f"tensor external data location {value[:200]!r} {why}: it escapes the model "
                "directory",
            )

    def report_domains(self) -> None:
        for domain, off in sorted(self.domains.items()):
            if domain not in STANDARD_DOMAINS and domain not in self.local:
                self.ctx.add(
                    ONNX_CUSTOM_DOMAIN,
                    self.label,
                    off,
                    domain[:200],
                    f"uses operators of the custom domain {domain[:200]!r}",
                )
