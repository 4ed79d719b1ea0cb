"""ONNX models, walked with the ``onnx`` package's own schema (its message descriptors).

Every message is reached by type, not by a list of places: a ``TensorProto`` is judged
wherever it sits (graph initializers, node attributes ``t`` / ``tensors``, sparse tensors'
values and indices, functions, subgraphs at any depth, training info). External data
``location`` values that are absolute, contain ``..`` or are longer than any path can
be make the runtime read a file outside the model directory: critical. An operator of a
custom domain is reported unless the model's own functions define exactly that
(domain, op_type, overload): it runs native or Python code (onnxruntime-extensions' PyOp)
that the loader registered, which the scanner cannot see.
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
    Severity.MEDIUM,
    "An ONNX model calls an operator of a custom domain that no local function defines.",
    "Custom operators run code registered with the runtime (native libraries, or Python "
    "functions through onnxruntime-extensions' PyOp) that the model selects and the "
    "scanner cannot see; review it, allow it per artifact.",
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
        self.imports: dict[str, int] = {}  # opset-imported domain -> first offset
        #: (domain, op_type, overload) of every node -> first offset it is used at
        self.calls: dict[tuple[str, str, str], int] = {}
        #: (domain, name, overload) of the model's own functions: what a node resolves to
        self.local: set[tuple[str, str, str]] = set()

    def visit(self, typ: str, s: dict[int, list[str]], off: int, parent: str, pfield: int) -> None:
        if typ == "onnx.StringStringEntryProto" and parent == "onnx.TensorProto" and pfield == 13:
            if s.get(1, [""])[-1] == "location":
                for value in s.get(2, [""]):
                    self._location(value, off)
        elif typ == "onnx.OperatorSetIdProto":
            for d in s.get(1, [""]):
                self.imports.setdefault(d, off)
        elif typ == "onnx.NodeProto":
            # the runtime takes a repeated scalar's last value; every one is judged
            for d in s.get(7, [""]):
                for op in s.get(4, [""]):
                    for ov in s.get(8, [""]):
                        self.calls.setdefault((d, op, ov), off)
        elif typ == "onnx.FunctionProto":
            last = [s.get(n, [""])[-1] for n in (10, 1, 13)]
            self.local.add((last[0], last[1], last[2]))

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
        """A node of a custom domain must resolve to a local function by its exact
        (domain, op_type, overload): a function of the same domain under another name
        defines nothing for it. An opset import of a custom domain that no local
        function lives in names a library the loader must register."""
        reported: set[str] = set()
        for (domain, op, ov), off in sorted(self.calls.items()):
            if domain in STANDARD_DOMAINS or (domain, op, ov) in self.local:
                continue
            reported.add(domain)
            name = f"{domain}::{op}" + (f"[{ov}]" if ov else "")
            self.ctx.add(
                ONNX_CUSTOM_DOMAIN,
                self.label,
                off,
                domain[:200],
                f"calls the operator {name[:200]!r} of a custom domain, which no local "
                "function defines",
            )
        local_domains = {d for d, _, _ in self.local}
        for domain, off in sorted(self.imports.items()):
            if domain in STANDARD_DOMAINS or domain in local_domains or domain in reported:
                continue
            self.ctx.add(
                ONNX_CUSTOM_DOMAIN,
                self.label,
                off,
                domain[:200],
                f"imports the custom operator domain {domain[:200]!r}, which no local "
                "function lives in",
            )
