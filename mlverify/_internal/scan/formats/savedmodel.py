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

_ATTRS = {
    1: "tensorflow.ListValue",
    2: "string",
    8: "tensorflow.TensorProto",
    10: "tensorflow.NameAttrList",
}
#: the part of the SavedModel schema (tensorflow/core/protobuf/*.proto) that holds ops
SCHEMA: pb.Schema = {
    "tensorflow.SavedModel": {2: "tensorflow.MetaGraphDef"},
    "tensorflow.MetaGraphDef": {
        2: "tensorflow.GraphDef",
        3: "tensorflow.SaverDef",
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
    "tensorflow.SaverDef": {1: "string"},
    "tensorflow.FunctionDef": {1: "tensorflow.OpDef", 3: "tensorflow.NodeDef"},
    "tensorflow.OpDef": {1: "string", 2: "tensorflow.OpDef.ArgDef"},
    "tensorflow.OpDef.ArgDef": {1: "string"},
    "tensorflow.NodeDef": {
        1: "string",
        2: "string",
        3: "string",
        5: "tensorflow.NodeDef.AttrEntry",
    },
    "tensorflow.NodeDef.AttrEntry": {1: "string", 2: "tensorflow.AttrValue"},
    "tensorflow.AttrValue": _ATTRS,
    "tensorflow.ListValue": {2: "string", 9: "tensorflow.NameAttrList"},
    "tensorflow.NameAttrList": {1: "string"},
    "tensorflow.TensorProto": {8: "string"},
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
            judge.finish()
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
            judge.finish()
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
        # the text form's nodes carry no inputs here: a checkpoint op's path is not
        # followed, so it is a finding (fail closed)
        judge.finish()


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
        self.metas: list[_Meta] = []
        self.fn: _Fn | None = None  # the function or graph the next node belongs to
        self.node: _Node | None = None

    def _meta(self) -> _Meta:
        if not self.metas:
            self.metas.append(_Meta())
        return self.metas[-1]

    def visit(self, typ: str, s: dict[int, list[str]], off: int, parent: str, pfield: int) -> None:
        # messages are visited depth first: a node's attributes follow the node
        if typ == "tensorflow.NodeDef":
            self.nodes += 1
            self.op = s.get(2, [""])[-1]
            meta = self._meta()
            fn = meta.graph if parent != "tensorflow.FunctionDef" else self.fn
            self.node = _Node(s.get(1, [""])[-1], self.op, s.get(3, []), off)
            if fn is not None:
                fn.nodes.setdefault(self.node.name, []).append(self.node)
            self._op(self.op, off)
        elif typ == "tensorflow.NodeDef.AttrEntry":
            self.attr = s.get(1, [""])[-1]
        elif typ == "tensorflow.MetaGraphDef":
            self.metas.append(_Meta())
        elif typ == "tensorflow.SaverDef":
            self._meta().saver = s.get(1, [""])[-1]
        elif typ == "tensorflow.FunctionDef":
            self.fn = _Fn()
            self._meta().functions.append(self.fn)
        elif typ == "tensorflow.OpDef" and parent == "tensorflow.FunctionDef" and self.fn:
            self.fn.name = s.get(1, [""])[-1]
        elif typ == "tensorflow.OpDef.ArgDef" and pfield == 2 and self.fn is not None:
            self.fn.args.insert(0, s.get(1, [""])[-1])  # visited last first
        elif typ == "tensorflow.NameAttrList":
            if self.node is not None:
                self.node.funcs.append((self.attr, s.get(1, [""])[-1]))
        elif typ == "tensorflow.TensorProto" and parent == "tensorflow.AttrValue":
            if self.node is not None and self.attr == "value":
                self.node.strings = s.get(8, [])
        elif typ == "tensorflow.AttrValue":
            if self.node is not None and 2 in s and parent == "tensorflow.NodeDef.AttrEntry":
                self.node.attrs[self.attr] = s[2][-1]
            self._print(s, off)
        elif typ == "tensorflow.SavedUserObject":
            ident = s.get(1, [""])[-1]
            for text in s.get(3, []):
                if ident.startswith("_tf_keras") and text.lstrip().startswith("{"):
                    from mlverify._internal.scan.formats import keras

                    what = f"{ident} metadata"
                    if not keras.judge_text(text.encode(), self.ctx, self.label, self.depth, what):
                        msg = f"the {what} cannot be decoded as JSON to its end: not verified"
                        self.ctx.add(UNSUPPORTED, self.label, off, "savedmodel", msg)
        elif typ == "tensorflow.AssetFileDef":
            for name in s.get(2, []):
                norm = name.replace("\\", "/")
                if norm.startswith("/") or _DRIVE.match(norm) or ".." in norm.split("/"):
                    msg = f"asset file {name[:200]!r} escapes the assets directory"
                    self.ctx.add(SAVEDMODEL_ASSET_PATH, self.label, off, name[:200], msg)

    def _print(self, s: dict[int, list[str]], off: int) -> None:
        if self.op == "PrintV2":
            stream = s.get(2, [""])[-1]
            if self.attr == "output_stream" and stream.startswith("file://"):
                self._add(SAVEDMODEL_DANGEROUS_OP, off, "PrintV2", f"PrintV2 writes to {stream!r}")

    def _op(self, op: str, off: int) -> None:
        table = ops()
        if op in table["compute"]:
            return
        if op in table["python"]:
            self._add(SAVEDMODEL_DANGEROUS_OP, off, op, f"the {op} op runs Python code")
        elif op in table["files"]:
            self._add(SAVEDMODEL_DANGEROUS_OP, off, op, f"the {op} op reaches host files or hosts")
        elif op in table["checkpoint"]:
            pass  # judged by where its path comes from, once the graphs are read (finish)
        else:
            msg = f"the {op[:120]!r} op is not on the compute-op allowlist"
            self._add(SAVEDMODEL_UNKNOWN_OP, off, op[:120], msg)

    def finish(self) -> None:
        """Judge every checkpoint op by the source of its path input(s)."""
        table = ops()["checkpoint"]
        for meta in self.metas:
            flow = _Flow(meta)
            for fn in [meta.graph, *meta.functions]:
                for nodes in fn.nodes.values():
                    for node in nodes:
                        if node.op in table:
                            self._checkpoint(node, fn, flow)

    def _checkpoint(self, node: _Node, fn: _Fn, flow: _Flow) -> None:
        inputs = [i for i in node.inputs if not i.startswith("^")]
        paths = inputs[:2] if node.op == "MergeV2Checkpoints" else inputs[:1]
        bad = [p for p in paths if not flow.ok(fn, p, False, set())]
        if paths and not bad:
            return  # the saver's prefix, fed by the loader the variables path
        source = flow.describe(fn, bad[0]) if bad else "it has no path input"
        where = f"function {fn.name!r}" if fn.name is not None else "the graph"
        msg = (f"the {node.op} op in {where} reads or writes checkpoint files at a path that "
               f"is not the saver's filename placeholder: {source}")  # fmt: skip
        self._add(SAVEDMODEL_DANGEROUS_OP, node.off, node.op, msg)

    def _add(
        self, rule: Rule, off: int, op: str, msg: str, severity: Severity | None = None
    ) -> None:
        if msg not in self.reported:
            self.reported.add(msg)
            self.ctx.add(rule, self.label, off, op, f"SavedModel graph: {msg}", severity=severity)


#: what the standard savers join to their prefix (``_temp/part``, V1's ``_temp_<uuid>/part``,
#: ``.part`` on S3): a shard's temporary name beside the prefix, nothing else
_SHARD_SUFFIX = re.compile(r"\A(?:_temp(?:_[0-9a-f]{32})?/part|\.part)\Z")
#: the TF1 saver's placeholder default (``model``): a bare file name, no directory
_BARE_NAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
#: ops that pass a string through (or pick one of two): followed to their sources
_PASS = frozenset({"Identity", "Snapshot", "StopGradient", "PlaceholderWithDefault"})
_MAX_FLOW = 10_000  # nodes visited per path: past it, not followed (a finding)


class _Node:
    __slots__ = ("attrs", "funcs", "inputs", "name", "off", "op", "strings")

    def __init__(self, name: str, op: str, inputs: list[str], off: int) -> None:
        self.name, self.op, self.inputs, self.off = name, op, inputs, off
        self.attrs: dict[str, str] = {}  # attribute -> its string value
        self.funcs: list[tuple[str, str]] = []  # (attribute, function name) referenced
        self.strings: list[str] = []  # a Const's string values


class _Fn:
    """A library function (or, with no name, a meta graph's graph): nodes by name."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.args: list[str] = []
        self.nodes: dict[str, list[_Node]] = {}


class _Meta:
    def __init__(self) -> None:
        self.graph = _Fn()
        self.functions: list[_Fn] = []
        self.saver = ""  # SaverDef.filename_tensor_name


class _Flow:
    """Where a string input comes from, in one meta graph.

    A path is allowed when all of its sources are the saver's filename tensor (a
    placeholder the loader feeds the variables prefix; TF1's default is a bare name) or
    a function argument that every call of the function passes such a path, through
    Identity-like ops, ShardedFilename/ShardedFilespec, StringJoin (first part; the others
    only the savers' shard suffixes), Select (both branches) and Pack. A constant path,
    another placeholder (a serving input), a function called in any other way (its
    arguments are anyone's), any other op: not allowed.
    """

    def __init__(self, meta: _Meta) -> None:
        self.meta = meta
        self.budget = _MAX_FLOW
        by_name: dict[str, list[_Fn]] = {}
        for fn in meta.functions:
            if fn.name is not None:
                by_name.setdefault(fn.name, []).append(fn)
        self.calls: dict[int, list[tuple[_Fn, list[str]]]] = {}  # id(fn) -> call sites
        self.escaped: set[int] = set()
        for caller in [meta.graph, *meta.functions]:
            for nodes in caller.nodes.values():
                for node in nodes:
                    args = [i for i in node.inputs if not i.startswith("^")]
                    call = node.op in ("PartitionedCall", "StatefulPartitionedCall")
                    for attr, name in node.funcs:
                        for fn in by_name.get(name, []):
                            if call and attr == "f":
                                self.calls.setdefault(id(fn), []).append((caller, args))
                            else:
                                self.escaped.add(id(fn))
                    for fn in by_name.get(node.op, []):  # a node whose op is a function
                        self.calls.setdefault(id(fn), []).append((caller, args))
        for fns in by_name.values():
            if len(fns) > 1:  # two functions of one name: which one runs is not known
                self.escaped.update(id(f) for f in fns)
        self.allowed: dict[int, set[int]] = {}  # id(fn) -> argument indexes fed a prefix
        for _ in range(sum(len(f.args) for f in meta.functions) + 1):
            changed = False
            for fn in meta.functions:
                sites = self.calls.get(id(fn), [])
                if id(fn) in self.escaped or not sites:
                    continue
                have = self.allowed.setdefault(id(fn), set())
                for i in range(len(fn.args)):
                    if i not in have and all(
                        i < len(a) and self.ok(c, a[i], False, set()) for c, a in sites
                    ):
                        have.add(i)
                        changed = True
            if not changed:
                break

    def _resolve(self, fn: _Fn, ref: str) -> _Node | int | None:
        name = ref.lstrip("^").split(":")[0]
        nodes = fn.nodes.get(name, [])
        is_arg = fn.name is not None and name in fn.args
        if len(nodes) == 1 and not is_arg:
            return nodes[0]
        if is_arg and not nodes and fn.args.count(name) == 1:
            return fn.args.index(name)
        return None  # unknown, or ambiguous: not followed

    def ok(self, fn: _Fn, ref: str, suffix: bool, seen: set[tuple[int, str]]) -> bool:
        key = (id(fn), ref.split(":")[0])
        if key in seen or self.budget <= 0:
            return False
        seen.add(key)
        self.budget -= 1
        src = self._resolve(fn, ref)
        if src is None:
            return False
        if isinstance(src, int):
            return not suffix and src in self.allowed.get(id(fn), set())
        ins = [i for i in src.inputs if not i.startswith("^")]
        if fn.name is None and self.meta.saver.split(":")[0] == src.name and not suffix:
            return self._saver(src, 0)
        if src.op == "Const":
            return suffix and bool(src.strings) and all(map(_SHARD_SUFFIX.match, src.strings))
        if src.op in _PASS or src.op in ("ShardedFilename", "ShardedFilespec"):
            return bool(ins) and self.ok(fn, ins[0], suffix, seen)
        if src.op in ("Select", "SelectV2"):
            return len(ins) == 3 and all(self.ok(fn, i, suffix, seen) for i in ins[1:])
        if src.op == "Pack":
            return bool(ins) and all(self.ok(fn, i, suffix, seen) for i in ins)
        if src.op == "StringJoin" and not src.attrs.get("separator"):
            return (
                bool(ins)
                and self.ok(fn, ins[0], suffix, seen)
                and all(self.ok(fn, i, True, seen) for i in ins[1:])
            )
        return False

    def _saver(self, node: _Node, depth: int) -> bool:
        """The saver's filename tensor: a Placeholder, or TF1's PlaceholderWithDefault
        (chain) whose default is a bare file name."""
        if node.op == "Placeholder":
            return True
        ins = [i for i in node.inputs if not i.startswith("^")]
        if node.op != "PlaceholderWithDefault" or not ins or depth > 8:
            return False
        src = self._resolve(self.meta.graph, ins[0])
        if not isinstance(src, _Node):
            return False
        if src.op == "Const":
            return bool(src.strings) and all(map(_BARE_NAME.match, src.strings))
        return self._saver(src, depth + 1)

    def describe(self, fn: _Fn, ref: str) -> str:
        src = self._resolve(fn, ref)
        if isinstance(src, _Node) and src.op == "Const" and src.strings:
            return f"the constant {src.strings[0][:200]!r}"
        if isinstance(src, _Node):
            return f"computed by {src.name[:120]!r} ({src.op[:60]})"
        if isinstance(src, int):
            return f"the argument {fn.args[src][:120]!r}, which a caller feeds another path"
        return f"{ref[:120]!r}, which is not followed to a source"
