"""TorchScript archives: the ``code/`` members judged at the op level.

TorchScript serialises its IR as Python-syntax source (``code/__torch__/...py``): it is
parsed with ``ast`` (never compiled or run) and every name the code reaches is resolved
to its dotted form (``torch.linear``, ``ops.aten.add``, ``torch.classes.ns.Cls``). Ops
that read, write or map files, reach the network or distributed runtime, or Python
internals are findings in whichever method they sit (``__setstate__`` runs on load);
operators and classes outside the built-in namespaces are custom native code. The
pickles of the archive (``data.pkl``, ``constants.pkl``, ``*.debug_pkl``) are scanned as
pickles by the zip format. A scripted module is code by nature: each archive gets one
info finding saying so, which a policy can make count.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import UNSUPPORTED, Rule
from mlverify._internal.scan.source import Source

TORCHSCRIPT_CODE = Rule(
    "MLV801",
    "torchscript-dangerous-op",
    Severity.HIGH,
    "TorchScript code calls an op that reaches files, the network or Python internals.",
    "TorchScript code runs when the module is loaded (__setstate__) or called; these ops "
    "read, write or map host files, open connections or leave the TorchScript sandbox.",
)
TORCHSCRIPT_CUSTOM_OP = Rule(
    "MLV802",
    "torchscript-custom-op",
    Severity.MEDIUM,
    "TorchScript code calls an operator or class outside the built-in namespaces.",
    "Custom ops and classes are native code registered by a library the loader must have "
    "loaded; review it. Tensor-only ops of known extension libraries (torchvision.nms, "
    "image.decode_png, ...) are low, judged op by op.",
)
TORCHSCRIPT_MODULE = Rule(
    "MLV803",
    "torchscript-module",
    Severity.INFO,
    "A TorchScript archive: the file carries code that runs on torch.jit.load.",
    "Its code was judged op by op; a policy may still refuse scripted modules by rule.",
)
RULES = (TORCHSCRIPT_CODE, TORCHSCRIPT_CUSTOM_OP, TORCHSCRIPT_MODULE)

MAX_CODE = 16 * 1024 * 1024
#: operator namespaces that ship with PyTorch itself
_BUILTIN_NS = frozenset(
    {"aten", "prim", "quantized", "_quantized", "quantized_decomposed", "prepacked",
     "mkldnn", "mkldnn_prepacked", "_caffe2", "cuda", "xnnpack", "onednn", "profiler",
     "_nnapi", "sparse", "inductor", "higher_order"}
)  # fmt: skip
#: ops of the extension libraries known to compute on tensors only (per op: an
#: extension's other ops, e.g. torchvision's image::read_file / write_file, are not)
_EXTENSION_OPS: dict[str, frozenset[str]] = {
    "torchvision": frozenset(
        {"nms", "roi_align", "roi_pool", "ps_roi_align", "ps_roi_pool", "deform_conv2d",
         "_roi_align_backward", "_roi_pool_backward", "_ps_roi_align_backward",
         "_ps_roi_pool_backward", "_deform_conv2d_backward", "_cuda_version", "_is_tracing",
         "_new_empty_tensor_op", "interpolate_bilinear2d_aa", "interpolate_bicubic2d_aa",
         "_interpolate_bilinear2d_aa", "_interpolate_bicubic2d_aa"}
    ),
    "image": frozenset(
        {"decode_png", "decode_jpeg", "decode_jpegs_cuda", "decode_image", "decode_gif",
         "decode_webp", "decode_avif", "decode_heic", "encode_png", "encode_jpeg",
         "encode_jpegs_cuda", "_jpeg_version", "_is_compiled_against_turbo"}
    ),
    "torchaudio": frozenset(
        {"lfilter", "_lfilter", "_lfilter_core_loop", "overdrive_core_loop", "rnnt_loss",
         "forced_align", "_simple_ctc_decode", "compute_kaldi_pitch"}
    ),
}  # fmt: skip
#: word of an op name (split at "_") that reads, writes or maps files, reaches the network
#: or runs processes: such an op is high in any namespace (built-in ones: but _BUILTIN_NOT_IO)
_IO_WORDS = frozenset(
    {"file", "files", "filename", "path", "save", "load", "read", "write", "open", "fopen",
     "mmap", "socket", "url", "http", "https", "download", "upload", "exec", "system",
     "popen", "spawn", "dlopen", "process", "reader", "writer", "loader", "saver",
     "subprocess", "stream", "streamer", "sox", "ffmpeg", "dir", "mkdir", "unlink", "rename"}
)  # fmt: skip
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
#: built-in ops with an I/O word in their name that do no I/O (a CUDA stream, not a file)
_BUILTIN_NOT_IO = frozenset({"aten.record_stream"})
#: built-in ops that build unchecked views of memory (a corruption primitive on load)
_UNSAFE_BUILTIN_OPS = frozenset(
    {"inductor._reinterpret_tensor", "aten._unsafe_set_version_counter"}
)
#: op or attribute names that touch files, the network or Python internals
_DANGEROUS = frozenset(
    {"from_file", "save", "load", "_load_for_mobile", "_save_for_mobile", "_save_parameters",
     "_load_parameters", "open", "socket", "rpc_async", "rpc_sync", "remote", "rpc", "c10d",
     "_c10d_functional", "c10d_functional", "distributed", "_distributed_c10d", "system",
     "popen", "spawn",
     "exec", "eval", "compile", "__import__", "__builtins__", "__globals__", "getattr",
     "setattr", "import_module", "load_library", "_dlopen", "subprocess", "os", "sys"}
)  # fmt: skip
_INTERNAL_DUNDERS = frozenset(
    {"__class__", "__globals__", "__builtins__", "__import__", "__subclasses__", "__mro__",
     "__bases__", "__base__", "__dict__", "__code__", "__getattribute__", "__reduce__",
     "__reduce_ex__", "__func__", "__self__", "__module__", "__loader__", "__spec__"}
)  # fmt: skip
_GLOBAL_ROOTS = frozenset({"torch", "ops", "math", "__torch__", "builtins", "CONSTANTS"})
_BAD_BUILTINS = frozenset(
    {"__import__", "eval", "exec", "open", "compile", "os", "sys", "subprocess", "socket",
     "__builtins__", "globals", "vars", "breakpoint"}
)  # fmt: skip


def judge_code_member(member: Source, ctx: ScanContext, label: str) -> None:
    try:
        raw = member.open().read(MAX_CODE + 1)
    except (ValueError, EOFError, OSError) as e:  # a damaged compressed member
        msg = f"TorchScript code cannot be read ({type(e).__name__}): not verified"
        ctx.add(UNSUPPORTED, label, None, "torchscript", msg)
        return
    if len(raw) > MAX_CODE:
        ctx.add(UNSUPPORTED, label, None, "torchscript", f"code passes {MAX_CODE} bytes")
        return
    try:
        tree = ast.parse(raw.decode("utf-8", "replace"))
        refs = _References(tree)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        msg = f"TorchScript code cannot be parsed ({type(e).__name__}): not verified"
        ctx.add(UNSUPPORTED, label, None, "torchscript", msg)
        return
    if refs.unresolved:
        msg = "TorchScript code binds names to modules in ways not followed to their end"
        ctx.add(UNSUPPORTED, label, None, "torchscript", f"{msg}: not verified")
    seen: set[tuple[str, str]] = set()
    for method, ref, shown, node in refs.found:
        if (method, ref) in seen:
            continue
        seen.add((method, ref))
        _judge(ref, method, getattr(node, "lineno", 0), ctx, label, shown)


def report_archive(ctx: ScanContext, label: str, code_files: int) -> None:
    msg = f"TorchScript archive with {code_files} code file(s): code runs on torch.jit.load"
    ctx.add(TORCHSCRIPT_MODULE, label, None, "torchscript", msg)


#: a reference chain longer than this is judged from its root on (what matters is the
#: root and the names after it, which are all kept)
_MAX_PARTS = 8
_MAX_ALIASES = 64  # per name; more collapse to their roots
_MAX_ROUNDS = 32  # of the binding fixpoint; not reached means not followed (unsupported)
#: what a value computed from a global is judged as: a name reached through it is
#: dangerous as torch's would be (``x.save`` is ``torch.save``)
_VALUE = "torch"
_GETATTR_METHODS = frozenset({"__getattr__", "__getattribute__"})


def _attr(base: str, name: str) -> str:
    if base.count(".") + 1 >= _MAX_PARTS:
        base = base.split(".")[0]
    return f"{base}.{name}"


def _root(ref: str) -> str:
    return ref.split(".")[0]


class _References:
    """Every reference of TorchScript code, with the globals each name can stand for.

    Names are values too: ``t = torch`` makes ``t.save`` the op ``torch.save``. Every
    binding (assignment, unpacking, augmented and annotated assignment, for and
    comprehension targets, with-as, walrus, except-as, imports, parameter defaults, the
    arguments of every call of a function of that name, attribute and item stores) is
    tracked to a fixpoint, per function scope and its enclosing ones (a name declared
    global or nonlocal binds in every enclosing scope). A value is a set of dotted
    references rooted at a global root: a module chain stays exact (``o = ops.aten``),
    anything computed from one (a call's result, an operation) is that root itself, so
    any name the code reaches through it is judged as the root's. Over-approximate by
    design: a name bound anywhere in its scope stands for all it was bound to.
    """

    def __init__(self, tree: ast.AST) -> None:
        self.parent: list[int] = [-1]
        self.env: list[dict[str, set[str]]] = [{}]
        self.attrs: dict[str, set[str]] = {}  # attribute name -> what was stored in it
        self.returns: dict[str, set[str]] = {}  # function name -> roots of its results
        #: function name -> (its scope, positional parameters, keyword-only ones, whether
        #: it takes *args or **kwargs) for each function of that name
        self.params: dict[str, list[tuple[int, list[str], list[str], bool]]] = {}
        #: (target kind, target name, value expression or fixed refs, scope it binds in,
        #: scope the value is read in)
        self.binds: list[tuple[str, str, ast.AST | frozenset[str], int, int]] = []
        self.calls: list[tuple[str, ast.Call, int]] = []
        self.found: list[tuple[str, str, str, ast.AST]] = []
        self.fscope: dict[int, int] = {}  # id of a function node -> its scope
        self.collapsed: set[tuple[int, str]] = set()  # (id of a table, name) at roots only
        self.unresolved = False
        self._collect(tree)
        self._fixpoint()
        self._refer(tree)

    # -- collection ---------------------------------------------------------------------
    def _scope(self, parent: int) -> int:
        self.parent.append(parent)
        self.env.append({})
        return len(self.env) - 1

    def _collect(self, tree: ast.AST) -> None:
        stack: list[tuple[ast.AST, int]] = [(tree, 0)]
        declared: dict[int, set[str]] = {}
        while stack:
            node, scope = stack.pop()
            inner = scope
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = self._scope(scope)
                self.fscope[id(node)] = inner
                args = node.args
                every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
                every += [a for a in (args.vararg, args.kwarg) if a is not None]
                defaults = [*args.defaults, *(d for d in args.kw_defaults if d is not None)]
                for d in defaults:
                    for a in every:
                        self.binds.append(("name", a.arg, d, inner, scope))
                # defaults, decorators and annotations are read in the enclosing scope
                stack.append((args, scope))
                if isinstance(node, ast.Lambda):
                    stack.append((node.body, inner))
                    continue
                positional = [a.arg for a in (*args.posonlyargs, *args.args)]
                star = args.vararg is not None or args.kwarg is not None
                kwonly = [a.arg for a in args.kwonlyargs]
                self.params.setdefault(node.name, []).append((inner, positional, kwonly, star))
                stack.extend((d, scope) for d in node.decorator_list)
                if node.returns is not None:
                    stack.append((node.returns, scope))
                stack.extend((b, inner) for b in node.body)
                for r in ast.walk(node):
                    if isinstance(r, ast.Return) and r.value is not None:
                        self.binds.append(("return", node.name, r.value, inner, inner))
                continue
            if isinstance(node, (ast.Global, ast.Nonlocal)):
                declared.setdefault(scope, set()).update(node.names)
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.NamedExpr)):
                assigned: ast.expr | None = node.value
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if assigned is not None:
                    for t in targets:
                        self._target(t, assigned, scope)
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                self._target(node.target, node.iter, scope)
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                self._target(node.optional_vars, node.context_expr, scope)
            elif isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
                self.binds.append(("name", node.name, node.type, scope, scope))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                base = node.module + "." if isinstance(node, ast.ImportFrom) and node.module else ""
                for alias in node.names:
                    ref = base + alias.name
                    bound = alias.asname or (_root(alias.name) if not base else alias.name)
                    full = ref if alias.asname or base else _root(ref)
                    self.binds.append(("name", bound, frozenset({full}), scope, scope))
            elif isinstance(node, ast.Call):
                callee = node.func
                name = (
                    callee.attr
                    if isinstance(callee, ast.Attribute)
                    else (callee.id if isinstance(callee, ast.Name) else "")
                )
                if name:
                    self.calls.append((name, node, scope))
                self._setattr(node, scope)
            for child in ast.iter_child_nodes(node):
                stack.append((child, scope))
        # a name declared global/nonlocal binds in every enclosing scope too
        extra: list[tuple[str, str, ast.AST | frozenset[str], int, int]] = []
        for kind, name, value, scope, read in self.binds:
            if kind == "name" and name in declared.get(scope, set()):
                s = self.parent[scope]
                while s >= 0:
                    extra.append((kind, name, value, s, read))
                    s = self.parent[s]
        self.binds.extend(extra)

    def _setattr(self, node: ast.Call, scope: int) -> None:
        """``setattr(o, "n", v)`` / ``o.__setattr__("n", v)`` store ``v`` in ``.n``; with a
        computed name, ``o`` itself holds ``v``."""
        func, args = node.func, list(node.args)
        if isinstance(func, ast.Name) and func.id == "setattr":
            pass
        elif isinstance(func, ast.Attribute) and func.attr == "__setattr__":
            if len(args) == 2:
                args.insert(0, func.value)  # a bound method: the receiver is the object
        else:
            return
        if len(args) < 3:
            return
        obj, name, value = args[:3]
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            self.binds.append(("attr", name.value, value, scope, scope))
        else:
            self._target(obj, value, scope)

    def _target(self, target: ast.AST, value: ast.AST, scope: int) -> None:
        if isinstance(target, ast.Name):
            self.binds.append(("name", target.id, value, scope, scope))
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:  # unpacking: each name stands for all of the value
                self._target(t, value, scope)
        elif isinstance(target, ast.Starred):
            self._target(target.value, value, scope)
        elif isinstance(target, ast.Attribute):
            self.binds.append(("attr", target.attr, value, scope, scope))
        elif isinstance(target, ast.Subscript):
            # an item store: the container then holds the value
            self._target(target.value, value, scope)

    # -- fixpoint -----------------------------------------------------------------------
    def _fixpoint(self) -> None:
        for _ in range(_MAX_ROUNDS):
            changed = False
            for kind, name, value, scope, read in self.binds:
                refs = set(value) if isinstance(value, frozenset) else self.roots(value, read)
                if kind == "return":
                    changed |= self._add(self.returns, name, refs)
                elif kind == "attr":
                    changed |= self._add(self.attrs, name, refs)
                else:
                    changed |= self._add(self.env[scope], name, refs)
            for name, call, scope in self.calls:
                for pscope, positional, kwonly, star in self.params.get(name, []):
                    for pname, refs in self._arguments(call, scope, positional, kwonly, star):
                        changed |= self._add(self.env[pscope], pname, refs)
            if not changed:
                return
        self.unresolved = True

    def _arguments(
        self, call: ast.Call, scope: int, positional: list[str], kwonly: list[str], star: bool
    ) -> Iterator[tuple[str, set[str]]]:
        """(parameter, what the call passes it) by position and keyword; a method call
        passes its receiver first; a starred argument or a * parameter: every one."""
        args: list[ast.AST] = list(call.args)
        if isinstance(call.func, ast.Attribute):
            args.insert(0, call.func.value)
        spread = star or any(isinstance(a, ast.Starred) for a in args)
        spread |= any(k.arg is None for k in call.keywords)
        every = [*positional, *kwonly]
        if spread:
            refs: set[str] = set()
            for a in [*args, *(k.value for k in call.keywords)]:
                refs |= self.roots(a, scope)
            for p in every:
                yield p, refs
            return
        for p, a in zip(positional, args, strict=False):
            yield p, self.roots(a, scope)
        for k in call.keywords:
            if k.arg in every:
                yield k.arg, self.roots(k.value, scope)

    def _add(self, table: dict[str, set[str]], name: str, refs: set[str]) -> bool:
        """Add ``refs`` to what ``name`` stands for; past _MAX_ALIASES a name stands for
        roots only, for good (so the fixpoint still converges)."""
        if not refs:
            return False
        key = (id(table), name)
        if key in self.collapsed:
            refs = {_root(r) for r in refs}
        have = table.setdefault(name, set())
        if refs <= have:
            return False
        have |= refs
        if len(have) > _MAX_ALIASES:
            self.collapsed.add(key)
            roots = {_root(r) for r in have}
            have.clear()
            have |= roots
        return True

    def lookup(self, name: str, scope: int) -> set[str]:
        out = {name} if name in _GLOBAL_ROOTS else set()
        while scope >= 0:
            out |= self.env[scope].get(name, set())
            scope = self.parent[scope]
        return out

    def roots(self, node: ast.AST, scope: int) -> set[str]:
        """The global references ``node`` can evaluate to."""
        if isinstance(node, ast.Name):
            return self.lookup(node.id, scope)
        if isinstance(node, ast.Attribute):
            out = {_attr(r, node.attr) for r in self.roots(node.value, scope)}
            return out | self.attrs.get(node.attr, set())
        if isinstance(node, ast.Subscript):
            out = self.roots(node.value, scope)
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                out |= {_attr(r, key.value) for r in out}
            return out
        if isinstance(node, ast.Call):
            func = node.func
            named = self._getattr_call(node)
            if named is not None:
                base, attr = named
                return {_attr(r, attr) for r in self.roots(base, scope)}
            out = self.roots(func, scope)
            for a in [*node.args, *(k.value for k in node.keywords)]:
                out |= self.roots(a, scope)
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            # a value computed from a global (a call's result): any name reached through
            # it is judged as torch's (torch.save, .from_file, ...); what a function of
            # the code returns stays exact
            return ({_VALUE} if out else set()) | self.returns.get(name, set())
        if isinstance(node, ast.Constant):
            return set()
        if isinstance(node, ast.Lambda):
            return self.roots(node.body, scope)
        if isinstance(node, ast.NamedExpr):
            return self.roots(node.value, scope)
        out = set()
        exact = isinstance(node, (ast.IfExp, ast.BoolOp, ast.Tuple, ast.List, ast.Set,
                                  ast.Dict, ast.Starred, ast.ListComp, ast.SetComp,
                                  ast.GeneratorExp, ast.DictComp))  # fmt: skip
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.IfExp) and child is node.test:
                continue
            if isinstance(child, ast.expr):
                out |= self.roots(child, scope)
        return out if exact else ({_VALUE} if out else set())

    @staticmethod
    def _getattr_call(node: ast.Call) -> tuple[ast.AST, str] | None:
        """``getattr(x, "n")`` / ``x.__getattr__("n")``: (x, "n"); a computed name is
        ``getattr`` (what any name could be)."""
        func = node.func
        if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
            base, name = node.args[0], node.args[1]
        elif isinstance(func, ast.Attribute) and func.attr in _GETATTR_METHODS and node.args:
            base, name = func.value, node.args[0]
        else:
            return None
        attr = name.value if isinstance(name, ast.Constant) else None
        return base, attr if isinstance(attr, str) else "getattr"

    # -- references ---------------------------------------------------------------------
    def _refer(self, tree: ast.AST) -> None:
        """(enclosing method, dotted reference, as written, node) for every maximal name
        chain, and for each, every global it can stand for."""
        stack: list[tuple[ast.AST, str, int]] = [(tree, "<module>", 0)]
        while stack:
            node, method, scope = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = self.fscope[id(node)]
                if not isinstance(node, ast.Lambda):
                    method = node.name
                    stack.extend((b, method, inner) for b in node.body)
                    rest: list[ast.AST] = [node.args, *node.decorator_list]
                    rest += [node.returns] if node.returns is not None else []
                else:
                    stack.append((node.body, method, inner))
                    rest = [node.args]
                stack.extend((c, method, scope) for c in rest)
                continue
            if isinstance(node, ast.Call):
                named = self._getattr_call(node)
                if named is not None:
                    shown = ast.unparse(node)[:200]
                    literal = _dotted(named[0])
                    for r in self.roots(named[0], scope) | ({literal} if literal else set()):
                        self.found.append((method, _attr(r, named[1]), shown, node))
            if isinstance(node, (ast.Attribute, ast.Name, ast.Subscript)) and isinstance(
                node.ctx, ast.Load
            ):
                dotted = _dotted(node) if not isinstance(node, ast.Subscript) else None
                if dotted is not None:
                    self.found.append((method, dotted, dotted, node))
                resolved = self.roots(node, scope)
                shown = dotted or ast.unparse(node)[:200]
                for r in resolved:
                    if r != dotted:
                        self.found.append((method, r, shown, node))
                if dotted is not None:
                    continue  # the chain's inner parts are this reference
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in _INTERNAL_DUNDERS
            ):
                self.found.append((method, node.value, node.value, node))
            for child in ast.iter_child_nodes(node):
                stack.append((child, method, scope))


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _judge(
    ref: str, method: str, line: int, ctx: ScanContext, label: str, shown: str | None = None
) -> None:
    parts = ref.split(".")
    where = f"in {method} (line {line})"
    if shown is not None and shown != ref:
        where = f"(written {shown!r}) {where}"
    if parts[:2] == ["torch", "ops"]:
        parts = parts[1:]  # torch.ops.ns.op is ops.ns.op
    if parts[0] == "ops" and len(parts) >= 2 and parts[1] in _DANGEROUS:
        msg = f"TorchScript code calls {ref!r} (the {parts[1]} namespace) {where}"
        ctx.add(TORCHSCRIPT_CODE, label, None, ref[:200], msg)
        return
    custom = None
    if parts[0] == "ops" and len(parts) >= 2 and parts[1] not in _BUILTIN_NS:
        custom = parts[1]
        op = parts[2] if len(parts) > 2 else ""
    elif parts[:2] == ["torch", "classes"] and len(parts) > 2 and parts[2] not in _BUILTIN_NS:
        custom = parts[2]
        op = parts[3] if len(parts) > 3 else ""
    if custom is not None and custom not in _DANGEROUS:
        _judge_extension(ref, custom, op, where, ctx, label)
        return
    if parts[0] == "ops" and len(parts) > 2 and ".".join(parts[1:3]) not in _BUILTIN_NOT_IO:
        io = _io_words(parts[2])
        if io:
            msg = (f"TorchScript code calls {ref!r} {where}: a built-in op whose name says it "
                   f"does I/O ({', '.join(sorted(io))})")  # fmt: skip
            ctx.add(TORCHSCRIPT_CODE, label, None, ref[:200], msg)
            return
    if parts[0] == "ops" and ".".join(parts[1:3]) in _UNSAFE_BUILTIN_OPS:
        msg = f"TorchScript code calls {ref!r}, which builds unchecked views of memory {where}"
        ctx.add(TORCHSCRIPT_CUSTOM_OP, label, None, ref[:200], msg)
        return
    hit: set[str]
    if len(parts) == 1:
        # a builtin, or an interpreter dunder (also as a getattr(x, "__dunder__") string)
        hit = set(_BAD_BUILTINS.intersection(parts)) | set(_INTERNAL_DUNDERS.intersection(parts))
    elif parts[0] in _GLOBAL_ROOTS:
        hit = set(_DANGEROUS.intersection(parts[1:]))
    elif parts[0] in _BAD_BUILTINS:  # an imported os, sys, subprocess, socket
        hit = {parts[0]}
    else:  # a local value or self: only Python internals matter
        hit = set(_INTERNAL_DUNDERS.intersection(parts))
    if hit:
        msg = f"TorchScript code reaches {ref!r} ({', '.join(sorted(hit))}) {where}"
        ctx.add(TORCHSCRIPT_CODE, label, None, ref[:200], msg)


def _judge_extension(ref: str, ns: str, op: str, where: str, ctx: ScanContext, label: str) -> None:
    """An op or class of a namespace outside PyTorch: judged per op, never per namespace.

    An op whose name reads as file, network or process I/O is high wherever it is; an op
    of a known extension library on its list of tensor-only ops is low; anything else
    (another op of that library, any op of another library) is medium.
    """
    io = _io_words(op) | ({op} & _DANGEROUS)  # a computed name (getattr) can be any op
    if io:
        msg = (
            f"TorchScript code calls {ref!r} {where}: an op of the {ns} library whose name "
            f"says it does I/O ({', '.join(sorted(io))}): files, network or processes"
        )
        ctx.add(TORCHSCRIPT_CODE, label, None, ref[:200], msg)
        return
    known = op in _EXTENSION_OPS.get(ns, frozenset())
    sev = Severity.LOW if known else None
    what = "a tensor op of the extension" if known else "the custom op or class"
    msg = f"TorchScript code calls {what} {ref!r} {where}"
    ctx.add(TORCHSCRIPT_CUSTOM_OP, label, None, ref[:200], msg, severity=sev)


def _io_words(op: str) -> set[str]:
    """The words of an op name (snake_case and CamelCase) that name file, network or
    process I/O."""
    return {w.lower() for w in _WORD.findall(op)} & _IO_WORDS


#: an operator name of a mobile operator table (``aten::add``, ``evil::run``)
_OP_NAME = re.compile(r"\A([A-Za-z_][A-Za-z0-9_]*)::([A-Za-z_][A-Za-z0-9_.]*)\Z")


def judge_bytecode_member(member: Source, ctx: ScanContext, label: str) -> None:
    """A lite-interpreter ``bytecode.pkl``: its operator tables name the ops the mobile
    runtime calls (an archive may carry no ``code/`` at all). Its opcodes are read with
    ``pickletools`` (never unpickled) and every ``ns::op`` string is judged as ``ops.ns.op``;
    ``torch.classes`` types as custom classes."""
    import pickletools

    try:
        raw = member.open().read(MAX_CODE + 1)
    except (ValueError, EOFError, OSError) as e:
        msg = f"TorchScript bytecode cannot be read ({type(e).__name__}): not verified"
        ctx.add(UNSUPPORTED, label, None, "torchscript", msg)
        return
    if len(raw) > MAX_CODE:
        ctx.add(UNSUPPORTED, label, None, "torchscript", f"bytecode passes {MAX_CODE} bytes")
        return
    names: list[str] = []
    try:
        for _op, arg, _pos in pickletools.genops(raw):
            if isinstance(arg, str) and len(arg) <= 512:
                names.append(arg)
    except (ValueError, EOFError, KeyError, IndexError) as e:
        msg = f"TorchScript bytecode is not a whole pickle ({type(e).__name__}): not verified"
        ctx.add(UNSUPPORTED, label, None, "torchscript", msg)
    seen: set[str] = set()
    for name in names:
        m = _OP_NAME.match(name)
        if m:
            ref = f"ops.{m.group(1)}.{m.group(2).split('.')[0]}"
        elif name.startswith("__torch__.torch.classes."):
            ref = name[len("__torch__.") :]
        else:
            continue
        if ref not in seen:
            seen.add(ref)
            _judge(ref, "bytecode", 0, ctx, label, name)
