"""Executable code shipped beside or inside a model: native binaries, Python source and
bytecode, scripts, notebooks, Java serialized objects, and the manifests that make a loader
import code or install packages.

Recognised by CONTENT wherever it sits (a directory, an archive member, a value inside
another format): ELF, PE and Mach-O headers, the ``.pyc`` header, a shebang, the shape of a
Jupyter notebook, the Java serialization magic. And, where loaders choose files by name,
by NAME: ``*.py`` (transformers ``auto_map`` modeling files, ``hubconf.py``, diffusers
pipeline modules, MLflow ``code/``, TorchServe handlers, torch.package modules), ``*.pyc``,
``*.ipynb``, ``*.sh``, ``MLmodel``, sentence-transformers ``modules.json``, pip
requirements and conda environment files. A name only adds scrutiny: content is judged
whatever the file is called.

Nothing is run or unmarshalled: Python source is parsed with ``ast`` only. Code is never
"data": every kind is at least medium (the default policy admits no code), high where it
visibly reaches processes, the network or the interpreter, or where a manifest makes the
loader import a module outside its own library.
"""

from __future__ import annotations

import ast
import json
import re
import weakref
from typing import Any

from mlverify._internal.scan import dispatch
from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.formats.chat_template import file_name
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import UNSUPPORTED, Rule
from mlverify._internal.scan.source import Source

NATIVE_CODE = Rule(
    "MLV1101",
    "native-code",
    Severity.MEDIUM,
    "An executable or shared library (ELF, PE, Mach-O, Java class) is shipped with the model.",
    "Native code runs with the loader's rights: custom-op libraries are loaded by "
    "torch.ops.load_library / tf.load_op_library, a llamafile is an executable. The scanner "
    "cannot judge machine code; review and allow it per artifact.",
)
PYTHON_CODE = Rule(
    "MLV1102",
    "python-code",
    Severity.MEDIUM,
    "Python source or bytecode is shipped with the model.",
    "Loaders import Python files by name (transformers auto_map modeling files, torch.hub "
    "hubconf.py, diffusers pipeline modules, MLflow code paths, TorchServe handlers, "
    "torch.package modules, .pyc beside or instead of source). High when the code visibly "
    "reaches processes, the network, files or the interpreter. Review; allow per artifact.",
)
SCRIPT_CODE = Rule(
    "MLV1103",
    "script-or-notebook",
    Severity.MEDIUM,
    "A script (shebang) or a Jupyter notebook is shipped with the model.",
    "Scripts and notebooks are code a user or a serving entry point runs; a model that is "
    "admitted by default carries none. High when a notebook cell runs shell commands or "
    "visibly reaches processes or the interpreter.",
)
JAVA_SERIALIZED = Rule(
    "MLV1104",
    "java-serialized-object",
    Severity.MEDIUM,
    "A Java serialized object stream (ObjectInputStream) is shipped with the model.",
    "Java deserialization runs the readObject methods of any class on the loader's class "
    "path (gadget chains); the stream is not parsed, so it cannot be shown safe.",
)
LOADER_IMPORTS_CODE = Rule(
    "MLV1105",
    "loader-imports-code",
    Severity.HIGH,
    "A loader manifest makes the loader import a module or code directory on load.",
    "MLflow imports the python_function loader_module and puts its code paths on sys.path; "
    "sentence-transformers imports each modules.json type (a module outside its own library "
    "is custom code, a module file of the repository runs on import).",
)
DEPENDENCY_SOURCE = Rule(
    "MLV1106",
    "dependency-outside-index",
    Severity.MEDIUM,
    "A requirements or conda file installs from a URL, a VCS, a local path or another index.",
    "MLflow and serving images install these on deployment: a git URL, a direct URL, a "
    "local wheel or an extra index is code that no pinned, verified package index vouches "
    "for (dependency confusion, a moving branch).",
)
RULES = (
    NATIVE_CODE, PYTHON_CODE, SCRIPT_CODE, JAVA_SERIALIZED, LOADER_IMPORTS_CODE,
    DEPENDENCY_SOURCE,
)  # fmt: skip

MAX_TEXT = 16 * 1024 * 1024  # bytes of a manifest or requirements file read and judged
#: bytes of Python source or notebook parsed (a syntax tree costs many times its text;
#: real modeling files are well under 1 MiB): a larger one is code that is not judged
MAX_SOURCE = 4 * 1024 * 1024

_MACHO = {
    b"\xfe\xed\xfa\xce": "Mach-O (32-bit)", b"\xce\xfa\xed\xfe": "Mach-O (32-bit)",
    b"\xfe\xed\xfa\xcf": "Mach-O (64-bit)", b"\xcf\xfa\xed\xfe": "Mach-O (64-bit)",
    b"\xca\xfe\xba\xbe": "Mach-O universal binary or Java class file",
    b"\xbe\xba\xfe\xca": "Mach-O universal binary",
}  # fmt: skip
_ELF_TYPES = {1: "relocatable object", 2: "executable", 3: "shared object", 4: "core dump"}
_JAVA_MAGIC = b"\xac\xed\x00\x05"
#: the first bytes :func:`content_kind` can match on, but a pyc's (told by its CR LF):
#: ELF, Mach-O, PE, WebAssembly, Java serialisation, a shebang, a notebook after the BOM
#: and whitespace its ``lstrip`` removes
_CONTENT_FIRST = frozenset(
    {0x7F, *(magic[0] for magic in _MACHO), ord("M"), 0x00, _JAVA_MAGIC[0], ord("#")}
    | set(b"\xef\xbb\xbf \t\r\n{")
)
_REQUIREMENTS = re.compile(r"^(?:.*[-_.])?requirements(?:[-_.].*)?\.(?:txt|in)$|^constraints\.txt$")
_CONDA = frozenset(
    {"conda.yaml", "conda.yml", "environment.yaml", "environment.yml", "python_env.yaml",
     "python_env.yml"}
)  # fmt: skip

#: members another scanner judges as code of its own language (TorchScript's ``code/``
#: IR, compiled by TorchScript, not imported by Python): not reported as Python source,
#: but still searched for what Python code would reach
_CLAIMED: weakref.WeakSet[Source] = weakref.WeakSet()


def claim_torchscript(src: Source) -> None:
    """Mark ``src`` as TorchScript code (judged by ``formats/torchscript.py``)."""
    _CLAIMED.add(src)


def is_pyc(head: bytes) -> bool:
    """A CPython bytecode file: a magic number (2 bytes, then CR LF) and a marshalled code
    object right after the header of the Python versions that use that magic (8 bytes up to
    3.2, 12 up to 3.6, 16 since 3.7). Every real magic has a byte outside printable ASCII,
    so a text file whose first line is two characters is not taken for one."""
    if len(head) < 17 or head[2:4] != b"\r\n" or all(32 <= c < 127 for c in head[:2]):
        return False
    magic = int.from_bytes(head[:2], "little")
    if 20000 <= magic < 63000 or 2900 <= magic < 3230:  # Python 1.5-2.7, 3.0-3.2
        at = 8
    elif 3230 <= magic < 3390:  # 3.3-3.6
        at = 12
    elif 3390 <= magic < 4000:  # 3.7 and later
        at = 16
    else:
        return False
    return head[at] in (0x63, 0xE3)  # TYPE_CODE, with or without FLAG_REF


def _pe(head: bytes) -> bool:
    if head[:2] != b"MZ" or len(head) < 64:
        return False
    if head.startswith(b"MZqFpD"):  # an Actually Portable Executable (a llamafile)
        return True
    at = int.from_bytes(head[0x3C:0x40], "little")
    return head[at : at + 4] == b"PE\0\0"


def _notebook(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return (
        text[:1] == b"{"
        and b'"cells"' in head
        and (b'"cell_type"' in head or b'"nbformat"' in head)
    )


def content_kind(head: bytes, deep: bool) -> str | None:
    """What executable content ``head`` opens with, or None.

    Binary headers are recognised anywhere (a value inside a pickle too); a shebang and a
    notebook only in files and members (``deep``), not in every text value of a pickle.
    """
    if head and head[0] not in _CONTENT_FIRST and head[2:4] != b"\r\n" and not dispatch.general():
        return None  # no branch below can match: each needs its first byte (or pyc's CR LF)
    if head[:4] == b"\x7fELF" and len(head) >= 18:
        kind = _ELF_TYPES.get(int.from_bytes(head[16:18], "little" if head[5] == 1 else "big"))
        return f"ELF {kind or 'file'}"
    if head[:4] in _MACHO:
        return _MACHO[head[:4]]
    if _pe(head):
        return "PE executable or DLL"
    if head[:8] == b"\0asm\x01\0\0\0":
        return "WebAssembly module"
    if head[:4] == _JAVA_MAGIC:
        return "java"
    if is_pyc(head):
        return "pyc"
    if deep and head[:2] == b"#!":
        return "script"
    if deep and _notebook(head):
        return "notebook"
    return None


def name_kinds(name: str) -> list[str]:
    """What a loader takes a file of this name for (several kinds may apply)."""
    lower = name.lower()
    out: list[str] = []
    if lower.endswith((".py", ".pyw")):
        out.append("python")
    if lower.endswith((".pyc", ".pyo")):
        out.append("pyc")
    if lower.endswith(".ipynb"):
        out.append("notebook")
    if lower.endswith((".sh", ".bash", ".zsh", ".ksh", ".bat", ".cmd", ".ps1")):
        out.append("script")
    if lower.endswith((".so", ".dylib", ".dll", ".pyd")) or ".so." in lower:
        out.append("native")
    if name == "MLmodel":
        out.append("mlmodel")
    if lower == "modules.json":
        out.append("st-modules")
    if _REQUIREMENTS.match(lower) or lower in _CONDA:
        out.append("requirements")
    return out


class CodeScanner:
    name = "code"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return content_kind(head, deep) is not None or bool(deep and name_kinds(file_name(src)))

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        head = src.head(4096)
        # as detect saw it: a binary header is checked first whatever ``deep`` was, and a
        # shebang or notebook only matched where ``deep`` was set
        content = content_kind(head, True)
        kinds = name_kinds(file_name(src))
        label = src.label
        if content is not None:
            _judge_content(content, kinds, src, ctx)
        for kind in kinds:
            if kind == "python":
                _judge_python(src, ctx, label, file_name(src))
            elif kind == "pyc" and content != "pyc":
                ctx.format("python-bytecode")
                msg = "named as Python bytecode (.pyc): Python imports it by name; not judged"
                ctx.add(PYTHON_CODE, label, None, "pyc", msg)
            elif kind == "notebook" and content != "notebook":
                _judge_notebook(src, ctx, label)
            elif kind == "script" and content != "script":
                ctx.format("script")
                ctx.add(SCRIPT_CODE, label, None, "script", "a shell script (by its name)")
            elif kind == "native" and content is None:
                ctx.format("native-code")
                msg = "named as a native library (.so/.dylib/.dll/.pyd): loaded as code by name"
                ctx.add(NATIVE_CODE, label, None, "native", msg)
            elif kind == "mlmodel":
                _judge_mlmodel(src, ctx, label)
            elif kind == "st-modules":
                _judge_st_modules(src, ctx, label)
            elif kind == "requirements":
                _judge_requirements(src, ctx, label)


def _judge_content(content: str, kinds: list[str], src: Source, ctx: ScanContext) -> None:
    label = src.label
    if content == "java":
        ctx.format("java-serialized")
        msg = "a Java serialized object stream (AC ED 00 05): ObjectInputStream runs gadget chains"
        ctx.add(JAVA_SERIALIZED, label, 0, "java", msg)
    elif content == "pyc":
        ctx.format("python-bytecode")
        msg = (
            "Python bytecode (a .pyc header and a marshalled code object): Python imports it "
            "by name, beside or instead of source; the bytecode is not judged"
        )
        ctx.add(PYTHON_CODE, label, 0, "pyc", msg)
    elif content == "script":
        ctx.format("script")
        line = src.head(200).split(b"\n", 1)[0].decode("utf-8", "replace")
        sev, why = _hook(src)
        ctx.add(SCRIPT_CODE, label, 0, "script", f"a script ({_printable(line)}){why}",
                severity=sev)  # fmt: skip
    elif content == "notebook":
        _judge_notebook(src, ctx, label)
    else:
        ctx.format("native-code")
        what = "loaded as a custom-op library" if "native" in kinds else "native code"
        ctx.add(NATIVE_CODE, label, 0, content, f"{content}: {what}; machine code is not judged")


def _hook(src: Source) -> tuple[Severity | None, str]:
    """A script in a ``.git/hooks`` directory: git runs a hook by its name (``pre-commit``,
    ``post-checkout``, ...) on the next git command there (high), never one named
    ``*.sample``, which is what ``git init`` writes into every clone (low: inert)."""
    parts = re.split(r"[/\\!]", src.label or src.path)
    if len(parts) < 3 or parts[-3] != ".git" or parts[-2] != "hooks":
        return None, ""
    if parts[-1].endswith(".sample"):
        return Severity.LOW, ": a git hook sample, which git never runs"
    return Severity.HIGH, ": a git hook, which git runs on the next git command in this repository"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)[:120]


def _read_text(
    src: Source, ctx: ScanContext, label: str, what: str, bound: int = MAX_TEXT
) -> str | None:
    try:
        raw = src.open().read(bound + 1)
    except (ValueError, EOFError, OSError) as e:  # a damaged compressed member
        ctx.add(UNSUPPORTED, label, None, what, f"{what} cannot be read ({type(e).__name__})")
        return None
    if len(raw) > bound:
        ctx.add(UNSUPPORTED, label, None, what,
                f"{what} passes {bound} bytes: not judged")  # fmt: skip
        return None
    return raw.decode("utf-8", "replace").lstrip("\ufeff")


# -- Python source ----------------------------------------------------------------------
#: top-level modules whose import reaches processes, the network, files or the interpreter
_RISKY_MODULES = frozenset(
    {"os", "posix", "nt", "subprocess", "socket", "ctypes", "cffi", "shutil", "pty",
     "importlib", "builtins", "__builtin__", "marshal", "pickle", "_pickle", "dill",
     "cloudpickle", "joblib", "urllib", "urllib2", "urllib3", "http", "requests", "httpx",
     "aiohttp", "multiprocessing", "runpy", "code", "codeop", "sys", "webbrowser", "ftplib",
     "telnetlib", "smtplib", "asyncio", "signal", "commands", "popen2", "platform", "pathlib",
     "tempfile", "zipimport", "pkgutil", "site", "sysconfig", "paramiko"}
)  # fmt: skip
_RISKY_CALLS = frozenset(
    {"exec", "eval", "compile", "__import__", "execfile", "breakpoint", "open", "globals",
     "getattr", "setattr", "vars"}
)  # fmt: skip
_RISKY_ATTRS = frozenset(
    {"system", "popen", "spawnl", "spawnv", "spawnve", "spawnlp", "execv", "execve",
     "execl", "execlp", "execvp", "Popen", "check_output", "check_call", "getoutput",
     "__globals__", "__builtins__", "__subclasses__", "__import__", "__code__"}
)  # fmt: skip
_LOADER_NAMES = {
    "hubconf.py": "torch.hub.load imports it and calls its entry points",
    "handler.py": "TorchServe imports it as the model's handler",
    "inference.py": "SageMaker serving imports it as the entry point",
}


def risky_references(tree: ast.AST) -> list[str]:
    """What Python code visibly reaches: risky imports, calls and attributes (sorted)."""
    hits: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            hits.update(
                f"import {a.name}" for a in node.names if a.name.split(".")[0] in _RISKY_MODULES
            )
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 0 and mod.split(".")[0] in _RISKY_MODULES:
                hits.add(f"from {mod} import")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in _RISKY_CALLS:
                hits.add(f"{node.func.id}()")
        elif isinstance(node, ast.Attribute) and node.attr in _RISKY_ATTRS:
            hits.add(f".{node.attr}")
    return sorted(hits)


def _parse(text: str) -> ast.AST | str:
    """The module's syntax tree (never compiled or run), or why it cannot be parsed."""
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        return type(e).__name__


def _judge_python(src: Source, ctx: ScanContext, label: str, name: str) -> None:
    claimed = src in _CLAIMED
    # TorchScript code is bounded as its own judge bounds it (which reports a larger one)
    text = _read_text(src, ctx, label, "Python source", MAX_TEXT if claimed else MAX_SOURCE)
    if text is None:
        return
    tree = _parse(text)
    if not claimed:
        ctx.format("python")
    why = _LOADER_NAMES.get(name.lower())
    if why is None and name.lower().startswith(("modeling_", "configuration_", "tokenization_")):
        why = "transformers imports it when a config's auto_map names it"
    where = f"Python source{f' ({why})' if why else ''}"
    if isinstance(tree, str):
        if not claimed:
            ctx.add(PYTHON_CODE, label, None, "python", f"{where}; it cannot be parsed ({tree})")
        return
    hits = risky_references(tree)
    if claimed:
        # TorchScript IR never imports Python modules or calls the interpreter's builtins
        hits = [h for h in hits if h.startswith(("import", "from", ".system", ".popen"))]
        if hits:
            msg = f"TorchScript code reads as Python that reaches {', '.join(hits[:6])}"
            ctx.add(PYTHON_CODE, label, None, "python", msg, severity=Severity.HIGH)
        return
    if hits:
        msg = f"{where} that reaches {', '.join(hits[:8])}"
        ctx.add(PYTHON_CODE, label, None, "python", msg, severity=Severity.HIGH)
    else:
        ctx.add(PYTHON_CODE, label, None, "python", f"{where}: code, reviewed by no one here")


# -- notebooks --------------------------------------------------------------------------
_SHELL_MAGIC = re.compile(r"^\s*(?:!|%%?(?:bash|sh|script|system|sx|run|load|writefile)\b)", re.M)


def _judge_notebook(src: Source, ctx: ScanContext, label: str) -> None:
    ctx.format("notebook")
    text = _read_text(src, ctx, label, "notebook", MAX_SOURCE)
    if text is None:
        return
    try:
        nb = json.loads(text)
    except (ValueError, RecursionError):
        ctx.add(SCRIPT_CODE, label, None, "notebook", "a notebook that is not valid JSON")
        return
    cells = nb.get("cells") if isinstance(nb, dict) else None
    sources: list[str] = []
    for cell in cells if isinstance(cells, list) else []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            body = cell.get("source", "")
            sources.append("".join(body) if isinstance(body, list) else str(body))
    hits: set[str] = set()
    for body in sources:
        if _SHELL_MAGIC.search(body):
            hits.add("shell commands")
        tree = _parse(_SHELL_MAGIC.sub("pass  #", body))
        if not isinstance(tree, str):
            hits.update(risky_references(tree))
    msg = f"a Jupyter notebook with {len(sources)} code cell(s)"
    if hits:
        msg += f" that reach {', '.join(sorted(hits)[:8])}"
        ctx.add(SCRIPT_CODE, label, None, "notebook", msg, severity=Severity.HIGH)
    else:
        ctx.add(SCRIPT_CODE, label, None, "notebook", msg)


# -- manifests --------------------------------------------------------------------------
def _yaml(text: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except (yaml.YAMLError, RecursionError, ValueError):
        return None


def _judge_mlmodel(src: Source, ctx: ScanContext, label: str) -> None:
    ctx.format("mlflow-model")
    text = _read_text(src, ctx, label, "MLmodel")
    if text is None:
        return
    doc = _yaml(text)
    flavors = doc.get("flavors") if isinstance(doc, dict) else None
    if not isinstance(flavors, dict):
        msg = "an MLmodel file that does not parse as MLflow's YAML (no flavors mapping)"
        ctx.add(UNSUPPORTED, label, None, "MLmodel", msg)
        return
    for flavor, spec in flavors.items():
        if not isinstance(spec, dict):
            continue
        module = spec.get("loader_module")
        if module is not None and str(module).split(".")[0] != "mlflow":
            shown = _printable(str(module))
            msg = (f"flavor {str(flavor)[:40]!r}: mlflow.pyfunc.load_model imports "
                   f"loader_module {shown!r} (not one of MLflow's own) and calls it")  # fmt: skip
            ctx.add(LOADER_IMPORTS_CODE, label, None, shown[:200], msg)
        for key in ("code", "code_paths"):
            if spec.get(key):
                paths = _printable(str(spec[key]))[:80]
                msg = (f"flavor {str(flavor)[:40]!r}: {key} {paths!r} is put on sys.path when "
                       "the model loads: its modules are code it runs")  # fmt: skip
                ctx.add(LOADER_IMPORTS_CODE, label, None, key, msg, severity=Severity.MEDIUM)


def _judge_st_modules(src: Source, ctx: ScanContext, label: str) -> None:
    ctx.format("sentence-transformers-modules")
    text = _read_text(src, ctx, label, "modules.json")
    if text is None:
        return
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, list):
        msg = "modules.json is not a JSON list of modules: sentence-transformers reads it so"
        ctx.add(UNSUPPORTED, label, None, "modules.json", msg)
        return
    for i, mod in enumerate(doc):
        typ = mod.get("type") if isinstance(mod, dict) else None
        if not isinstance(typ, str):
            msg = f"module {i} names no type: sentence-transformers cannot be shown to load it"
            ctx.add(UNSUPPORTED, label, None, "modules.json", msg)
        elif not typ.startswith("sentence_transformers."):
            msg = (f"module {i}: sentence-transformers imports {_printable(typ)!r}, outside its "
                   "own library, and calls its load(): custom code (a module of the repository "
                   "runs on import)")  # fmt: skip
            ctx.add(LOADER_IMPORTS_CODE, label, None, _printable(typ)[:200], msg)


#: a requirement installed from somewhere else than the configured index: pip's options
#: (-i, -f, -e and their long forms, written "-{2}" here) naming an index, links or a path
_OUTSIDE = re.compile(
    r"(?:^|\s)(?:-[ife]|-{2}(?:index-url|extra-index-url|find-links|trusted-host|editable))"
    r"(?:\s|=|$)"
    r"|(?:git|hg|svn|bzr)\+|[a-z][a-z0-9+.-]*://|(?:^|\s|@)(?:\.{1,2}/|/|file:)"
    r"|\.whl\b|\.tar\.gz\b|\.zip\b",
    re.I,
)


_YAML_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*:(?:\s|$)")


def _judge_requirements(src: Source, ctx: ScanContext, label: str) -> None:
    ctx.format("requirements")
    text = _read_text(src, ctx, label, "requirements")
    if text is None:
        return
    for n, line in enumerate(text.splitlines(), 1):
        body = line.split(" #", 1)[0].strip()
        if body.startswith("#"):
            continue
        body = body.removeprefix("- ").strip()
        if _YAML_KEY.match(body):
            continue  # a conda file's keys (name:, prefix:, channels:, pip:) install nothing
        if body and _OUTSIDE.search(body):
            msg = f"line {n} installs from outside the package index: {_printable(body)[:160]!r}"
            ctx.add(DEPENDENCY_SOURCE, label, None, f"line {n}", msg)
