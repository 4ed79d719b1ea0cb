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
