"""TensorFlow SavedModel (``saved_model.pb``), parsed with the SavedModel schema.

The protobuf is walked by message type (``_protobuf.py``, any field order): every
``NodeDef`` of every meta graph and of every library function (where TF2 puts the real
graph) is judged by its op against ``data/tf_ops.json``: compute ops pass, Python ops
(``PyFunc`` family) and ops that read, write, list, map or delete files, write summaries
or reach the network are findings, unknown ops are medium, ``PrintV2`` is a finding when
its ``output_stream`` is a file. Asset file names that escape the model directory are
findings too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.formats import _protobuf as pb
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import RESOURCE_LIMIT, UNSUPPORTED, Rule
from mlverify._internal.scan.source import FileSource, Source, materialize

SAVEDMODEL_DANGEROUS_OP = Rule(
    "MLV901",
    "savedmodel-dangerous-op",
    Severity.HIGH,
    "A TensorFlow SavedModel graph uses an op that runs Python, touches files or the network.",
    "PyFunc-family ops call Python; ReadFile/WriteFile/MatchingFiles, summary writers, "
    "file-reading datasets, debug ops with URLs and checkpoint deletion reach the host.",
)
SAVEDMODEL_UNKNOWN_OP = Rule(
    "MLV902",
    "savedmodel-unknown-op",
    Severity.MEDIUM,
    "A TensorFlow SavedModel graph uses an op outside the compute-op allowlist.",
    "Custom ops need a native library loaded by the runtime; other ops may reach the host. "
    "Review the op; allow it per artifact.",
)
SAVEDMODEL_ASSET_PATH = Rule(
    "MLV903",
    "savedmodel-asset-path",
    Severity.HIGH,
    "A SavedModel asset file name escapes the assets directory.",
    "Absolute paths or '..' make the loader read other files of the host.",
)
RULES = (SAVEDMODEL_DANGEROUS_OP, SAVEDMODEL_UNKNOWN_OP, SAVEDMODEL_ASSET_PATH)

#: keras_metadata.pb (Keras 2 SavedModels): SavedMetadata.nodes -> SavedObject, whose
#: ``metadata`` (5) is the layer's JSON config, what Keras 2 rebuilds the model from
KERAS_METADATA_SCHEMA: pb.Schema = {
    "keras.SavedMetadata": {1: "keras.SavedObject"},
    "keras.SavedObject": {3: "string", 4: "string", 5: "blob"},
}

_ATTRS = {1: "tensorflow.ListValue", 2: "string", 10: "tensorflow.NameAttrList"}
#: the part of the SavedModel schema (tensorflow/core/protobuf/*.proto) that holds ops
SCHEMA: pb.Schema = {
    "tensorflow.SavedModel": {2: "tensorflow.MetaGraphDef"},
    "tensorflow.MetaGraphDef": {
        2: "tensorflow.GraphDef",
        6: "tensorflow.AssetFileDef",
        7: "tensorflow.SavedObjectGraph",
    },
    # Keras 2 kept each layer's JSON config in the object graph too (user_object.metadata)
    "tensorflow.SavedObjectGraph": {1: "tensorflow.SavedObject"},
    "tensorflow.SavedObject": {4: "tensorflow.SavedUserObject"},
    "tensorflow.SavedUserObject": {1: "string", 3: "blob"},
    "tensorflow.AssetFileDef": {2: "string"},
    "tensorflow.GraphDef": {1: "tensorflow.NodeDef", 2: "tensorflow.FunctionDefLibrary"},
    "tensorflow.FunctionDefLibrary": {1: "tensorflow.FunctionDef"},
    "tensorflow.FunctionDef": {3: "tensorflow.NodeDef"},
    "tensorflow.NodeDef": {1: "string", 2: "string", 5: "tensorflow.NodeDef.AttrEntry"},
    "tensorflow.NodeDef.AttrEntry": {1: "string", 2: "tensorflow.AttrValue"},
    "tensorflow.AttrValue": _ATTRS,
    "tensorflow.ListValue": {2: "string"},
    "tensorflow.NameAttrList": {},
}
_DRIVE = re.compile(r"^[A-Za-z]:")


@cache
def ops() -> dict[str, frozenset[str]]:
    text = resources.files("mlverify._internal.scan").joinpath("data/tf_ops.json").read_text()
    data = json.loads(text)
    return {k: frozenset(v) for k, v in data.items() if isinstance(v, list)}


def savedmodel_shape(src: Source) -> str | None:
    """ "strong": what TF writes (schema version varint, meta graphs, no ONNX graph);
    "weak": any message with meta graphs whose first one opens like a MetaGraphDef (TF
    also loads a SavedModel without the version, or with unknown fields); else None."""
    if not isinstance(src, FileSource) or not src.size:
        return None
    seen = pb.top_level(src)
    if seen is None or 2 not in seen.get(2, set()):
        return None
    if 1 in seen and 0 not in seen[1]:
        return None  # field 1 is no varint: another schema (sentencepiece, ...)
    if 0 in seen.get(1, set()) and 7 not in seen:
        return "strong"
    wire = pb.Wire(src, window=4096, max_fields=16_384)
    try:
        for num, wt, off, ln in wire.fields(0, wire.size):
            if num == 2 and wt == 2:
                first = next(wire.fields(off, off + ln), None)
                return "weak" if first is not None and first[:2] in ((1, 2), (2, 2)) else None
    except pb.Malformed:
        return None
    return None


def looks_like_savedmodel(src: Source) -> bool:
    return savedmodel_shape(src) is not None


class _Buffered:
    """A ScanContext that keeps findings until the walk is known to be a SavedModel."""

    def __init__(self, ctx: ScanContext) -> None:
        self.inner = ctx
        self.path, self.limits, self.policy = ctx.path, ctx.limits, ctx.policy
        self.held: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.nodes = 0

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.held.append((args, kwargs))

    def format(self, name: str) -> None:
        self.inner.format(name)

    def scan(self, src: Source, depth: int, *, deep: bool = True) -> bool:
        return self.inner.scan(src, depth, deep=deep)

    def nested(self, parent: Source, depth: int) -> Any:
        return self.inner.nested(parent, depth)

    def flush(self) -> None:
        for args, kwargs in self.held:
            self.inner.add(*args, **kwargs)


class SavedModelScanner:
    name = "savedmodel"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        if not isinstance(src, FileSource):  # a compressed member: the opening TF writes
            return head[:3] == b"\x08\x01\x12"
        return looks_like_savedmodel(src)

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        src = materialize(src, ctx.limits.max_decompressed)
        if savedmodel_shape(src) != "weak":
            ctx.format("tf-savedmodel")
            judge = _Judge(ctx, src.label, depth)
            try:
                pb.walk(src, SCHEMA, "tensorflow.SavedModel", judge.visit)
            except pb.Malformed as e:
                msg = f"SavedModel is malformed: {e}"
                ctx.add(UNSUPPORTED, src.label, None, "savedmodel", msg)
            except pb.DepthExceeded as e:
                ctx.add(RESOURCE_LIMIT, src.label, None, "savedmodel", str(e))
            return
        # weak: judged only if it parses as a SavedModel with nodes (else it is another
        # protobuf, which TF could not load either)
        held = _Buffered(ctx)
        judge = _Judge(held, src.label, depth)
        try:
            pb.walk(src, SCHEMA, "tensorflow.SavedModel", judge.visit)
        except (pb.Malformed, pb.DepthExceeded):
            return
        if judge.nodes:
            ctx.format("tf-savedmodel")
            held.flush()


_PBTXT_TOKEN = re.compile(
    rb"""\s+|\#[^\n]*|(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
    rb"""|(?P<word>[A-Za-z0-9_.+\-\[\]/]+)|(?P<punct>[{}<>:,;])"""
)
_PBTXT_START = re.compile(rb"\A(?:\s|\#[^\n]*\n)*(saved_model_schema_version|meta_graphs)\b")
MAX_PBTXT = 256 * 1024 * 1024


def _unquote(tok: bytes) -> str:
    body = tok[1:-1]
    try:
        return body.decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return body.decode("utf-8", "replace")


def pbtxt_fields(raw: bytes) -> Iterator[tuple[tuple[str, ...], str]]:
    """(path of field names, scalar value) of a protobuf text-format message.

    The grammar text_format reads: ``name: value``, ``name { ... }`` / ``name: < ... >``,
    ``name: [v, v]`` lists, ``#`` comments, adjacent string literals concatenated.
    """
    path: list[str] = []
    pending: str | None = None  # a field name waiting for its value
    value: str | None = None
    for m in _PBTXT_TOKEN.finditer(raw):
        if m.lastgroup is None:
            continue
        tok = m.group(m.lastgroup)
        if m.lastgroup == "str":
            value = (value or "") + _unquote(tok) if pending is not None else None
            continue
        if value is not None and pending is not None:
            yield (*path, pending), value
            value = None
            if tok not in (b",", b"]"):
                pending = None
        if m.lastgroup == "punct":
            if tok in (b"{", b"<"):
                if pending is None:
                    raise ValueError(f"a message without a field name at byte {m.start()}")
                if len(path) >= 100:
                    raise ValueError("text-format messages nest deeper than 100")
                path.append(pending)
                pending = None
            elif tok in (b"}", b">"):
                if not path:
                    raise ValueError(f"unbalanced {tok.decode()} at byte {m.start()}")
                path.pop()
                pending = None
            continue
        word = tok.decode("ascii", "replace")
        if pending is not None and word not in ("[", "]"):
            if word.startswith("["):
                continue  # a list: values follow
            yield (*path, pending), word
            pending = None
        else:
            pending = word.strip("[]") or pending
    if value is not None and pending is not None:
        yield (*path, pending), value
    if path:
        raise ValueError("the text-format message is not closed")


class SavedModelTextScanner:
    """``saved_model.pbtxt``: TF loads the text form when there is no binary one."""

    name = "savedmodel-text"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return bool(_PBTXT_START.match(head))

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        ctx.format("tf-savedmodel")
        raw = src.open().read(MAX_PBTXT + 1)
        if len(raw) > MAX_PBTXT:
            ctx.add(RESOURCE_LIMIT, src.label, None, "savedmodel", f"passes {MAX_PBTXT} bytes")
            return
        judge = _Judge(ctx, src.label)
        try:
            for path, value in pbtxt_fields(raw):
                name = path[-1]
                parent = path[-2] if len(path) > 1 else ""
                if name == "op" and parent in ("node", "node_def"):
                    judge.visit("tensorflow.NodeDef", {2: [value]}, 0, "", 0)
                elif name == "key" and parent == "attr":
                    judge.visit("tensorflow.NodeDef.AttrEntry", {1: [value]}, 0, "", 0)
                elif name == "s" and parent == "value":
                    judge.visit("tensorflow.AttrValue", {2: [value]}, 0, "", 0)
                elif name == "filename" and parent == "asset_file_def":
                    judge.visit("tensorflow.AssetFileDef", {2: [value]}, 0, "", 0)
        except ValueError as e:
            ctx.add(UNSUPPORTED, src.label, None, "savedmodel", f"saved_model.pbtxt: {e}")


def looks_like_keras_metadata(src: Source) -> bool:
    if not isinstance(src, FileSource) or not src.size:
        return False
    seen = pb.top_level(src)
    if seen is None or set(seen) != {1} or seen[1] != {2}:
        return False
    wire = pb.Wire(src, window=4096, max_fields=16_384)
    try:
        _num, _wt, off, ln = next(wire.fields(0, wire.size))
        for num, wt, val, vlen in wire.fields(off, off + ln):
            if num == 4 and wt == 2:
                return wire.text(val, vlen, 64).startswith("_tf_keras")
    except (pb.Malformed, StopIteration):
        return False
    return False


class KerasMetadataScanner:
    """``keras_metadata.pb`` of a Keras 2 SavedModel: every layer config judged as Keras."""

    name = "keras-metadata"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return head[:1] == b"\x0a" and looks_like_keras_metadata(src)

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        from mlverify._internal.scan.formats import keras

        assert isinstance(src, FileSource)
        ctx.format("keras-metadata")

        def visit(typ: str, s: dict[int, list[str]], off: int, parent: str, pf: int) -> None:
            if typ != "keras.SavedObject":
                return
            for meta in s.get(5, []):
                what = f"metadata of {s.get(3, ['?'])[-1][:80]!r}"
                if meta and not keras.judge_text(meta.encode(), ctx, src.label, depth, what):
                    msg = f"the {what} is not JSON: not verified"
                    ctx.add(UNSUPPORTED, src.label, off, "keras-metadata", msg)

        try:
            pb.walk(src, KERAS_METADATA_SCHEMA, "keras.SavedMetadata", visit)
        except pb.Malformed as e:
            msg = f"keras_metadata.pb is malformed: {e}"
            ctx.add(UNSUPPORTED, src.label, None, "keras-metadata", msg)
        except pb.DepthExceeded as e:
            ctx.add(RESOURCE_LIMIT, src.label, None, "keras-metadata", str(e))


class _Judge:
    def __init__(self, ctx: ScanContext, label: str, depth: int = 0) -> None:
        self.ctx = ctx
        self.label = label
        self.depth = depth
        self.nodes = 0
        self.op = ""
        self.attr = ""
        self.reported: set[str] = set()

    def visit(self, typ: str, s: dict[int, list[str]], off: int, parent: str, pfield: int) -> None:
        # messages are visited depth first: a node's attributes follow the node
        if typ == "tensorflow.NodeDef":
            self.nodes += 1
            self.op = s.get(2, [""])[-1]
            self._op(self.op, off)
        elif typ == "tensorflow.NodeDef.AttrEntry":
            self.attr = s.get(1, [""])[-1]
        elif typ == "tensorflow.AttrValue" and self.op == "PrintV2":
            stream = s.get(2, [""])[-1]
            if self.attr == "output_stream" and stream.startswith("file://"):
                self._add(SAVEDMODEL_DANGEROUS_OP, off, "PrintV2", f"PrintV2 writes to {stream!r}")
        elif typ == "tensorflow.SavedUserObject":
            ident = s.get(1, [""])[-1]
            for meta in s.get(3, []):
                if ident.startswith("_tf_keras") and meta.lstrip().startswith("{"):
                    from mlverify._internal.scan.formats import keras

                    what = f"{ident} metadata"
                    keras.judge_text(meta.encode(), self.ctx, self.label, self.depth, what)
        elif typ == "tensorflow.AssetFileDef":
            for name in s.get(2, []):
                norm = name.replace("\\", "/")
                if norm.startswith("/") or _DRIVE.match(norm) or ".." in norm.split("/"):
                    msg = f"asset file {name[:200]!r} escapes the assets directory"
                    self.ctx.add(SAVEDMODEL_ASSET_PATH, self.label, off, name[:200], msg)

    def _op(self, op: str, off: int) -> None:
        table = ops()
        if op in table["compute"]:
            return
        if op in table["python"]:
            self._add(SAVEDMODEL_DANGEROUS_OP, off, op, f"the {op} op runs Python code")
        elif op in table["files"]:
            self._add(SAVEDMODEL_DANGEROUS_OP, off, op, f"the {op} op reaches host files or hosts")
        elif op in table["checkpoint"]:
            msg = f"the {op} op writes, reads or deletes checkpoint files (savers use it)"
            self._add(SAVEDMODEL_DANGEROUS_OP, off, op, msg, Severity.LOW)
        else:
            msg = f"the {op[:120]!r} op is not on the compute-op allowlist"
            self._add(SAVEDMODEL_UNKNOWN_OP, off, op[:120], msg)

    def _add(
        self, rule: Rule, off: int, op: str, msg: str, severity: Severity | None = None
    ) -> None:
        if msg not in self.reported:
            self.reported.add(msg)
            self.ctx.add(rule, self.label, off, op, f"SavedModel graph: {msg}", severity=severity)
