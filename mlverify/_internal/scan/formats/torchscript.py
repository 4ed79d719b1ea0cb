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
    "loaded; review it. Known extension libraries (torchvision, torchaudio) are low.",
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
     "_nnapi", "sparse", "inductor", "higher_order", "_test"}
)  # fmt: skip
_EXTENSION_NS = frozenset({"torchvision", "torchaudio", "torchtext", "image"})
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
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        msg = f"TorchScript code cannot be parsed ({type(e).__name__}): not verified"
        ctx.add(UNSUPPORTED, label, None, "torchscript", msg)
        return
    seen: set[tuple[str, str]] = set()
    for method, ref, node in _references(tree):
        if (method, ref) in seen:
            continue
        seen.add((method, ref))
        _judge(ref, method, getattr(node, "lineno", 0), ctx, label)


def report_archive(ctx: ScanContext, label: str, code_files: int) -> None:
    msg = f"TorchScript archive with {code_files} code file(s): code runs on torch.jit.load"
    ctx.add(TORCHSCRIPT_MODULE, label, None, "torchscript", msg)


def _references(tree: ast.AST) -> list[tuple[str, str, ast.AST]]:
    """(enclosing method, dotted reference, node) for every maximal name chain."""
    out: list[tuple[str, str, ast.AST]] = []
    stack: list[tuple[ast.AST, str]] = [(tree, "<module>")]
    while stack:
        node, method = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            method = node.name
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
        ):
            # getattr(ops.aten, "save") is the op ops.aten.save: judge what it reaches
            base = _dotted(node.args[0])
            name = node.args[1]
            if base is not None:
                attr = name.value if isinstance(name, ast.Constant) else "getattr"
                if isinstance(attr, str):
                    out.append((method, f"{base}.{attr}", node))
        if isinstance(node, (ast.Attribute, ast.Name)) and isinstance(node.ctx, ast.Load):
            dotted = _dotted(node)
            if dotted is not None:
                out.append((method, dotted, node))
                continue  # the chain's inner parts are this reference
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in _INTERNAL_DUNDERS
        ):
            out.append((method, node.value, node))
        for child in ast.iter_child_nodes(node):
            stack.append((child, method))
    return out


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _judge(ref: str, method: str, line: int, ctx: ScanContext, label: str) -> None:
    parts = ref.split(".")
    where = f"in {method} (line {line})"
    if parts[:2] == ["torch", "ops"]:
        parts = parts[1:]  # torch.ops.ns.op is ops.ns.op
    if parts[0] == "ops" and len(parts) >= 2 and parts[1] in _DANGEROUS:
        msg = f"TorchScript code calls {ref!r} (the {parts[1]} namespace) {where}"
        ctx.add(TORCHSCRIPT_CODE, label, None, ref[:200], msg)
        return
    custom = None
    if parts[0] == "ops" and len(parts) >= 2 and parts[1] not in _BUILTIN_NS:
        custom = parts[1]
    elif parts[:2] == ["torch", "classes"] and len(parts) > 2 and parts[2] not in _BUILTIN_NS:
        custom = parts[2]
    if custom is not None and custom not in _DANGEROUS:
        sev = Severity.LOW if custom in _EXTENSION_NS else None
        msg = f"TorchScript code calls the custom op or class {ref!r} {where}"
        ctx.add(TORCHSCRIPT_CUSTOM_OP, label, None, ref[:200], msg, severity=sev)
        return
    hit: set[str]
    if len(parts) == 1:
        # a builtin, or an interpreter dunder (also as a getattr(x, "__dunder__") string)
        hit = set(_BAD_BUILTINS.intersection(parts)) | set(_INTERNAL_DUNDERS.intersection(parts))
    elif parts[0] in _GLOBAL_ROOTS:
        hit = set(_DANGEROUS.intersection(parts[1:]))
    else:  # a local value or self: only Python internals matter
        hit = set(_INTERNAL_DUNDERS.intersection(parts))
    if hit:
        msg = f"TorchScript code reaches {ref!r} ({', '.join(sorted(hit))}) {where}"
        ctx.add(TORCHSCRIPT_CODE, label, None, ref[:200], msg)
