"""Chat templates (Jinja2), parsed into Jinja's own AST and judged, never rendered.

Not a format of its own: GGUF metadata and Hugging Face tokenizer configs carry them.
String literals are judged as Jinja decodes them (escapes resolved). A template can
only reach Python internals through a name: an attribute (static ``x.__class__``), an
item key (``x['__class__']``, a computed ``x[k]``), the ``attr`` family of filters, a
format string's fields, or a global object of the environment. Each is judged:

* attributes and constant keys starting with ``_`` or naming interpreter internals;
* computed keys and filter names: only values that cannot build a string (numbers,
  loop counters, data references) are allowed; a variable used as a key must only ever
  be assigned such values;
* strings that look built to form a name: a literal containing a dunder, a piece with a
  leading or trailing underscore in a concatenation, ``%c`` / ``{:c}`` character codes,
  ``replace`` producing underscores;
* the ``lipsum`` / ``cycler`` / ``joiner`` / ``self`` / Flask globals at all, and
  attribute or item access on ``namespace`` / ``range`` / ``dict`` themselves;
* ``include`` / ``import`` / ``extends`` (loading other templates).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_TEMPLATE = 256 * 1024  # characters judged per template (real ones are a few KiB;
# Jinja parses about 0.2-1 MB/s of dense expressions: this bounds a template to ~1 s)

_INTERNALS = frozenset(
    {"gi_frame", "gi_code", "f_globals", "f_locals", "f_builtins", "f_back", "f_code",
     "tb_frame", "tb_next", "cr_frame", "cr_code", "ag_frame", "ag_code", "co_consts",
     "co_code", "func_globals", "func_code", "im_func", "mro", "os", "sys", "builtins",
     "environment", "application", "subclasses", "modules", "format_map"}
)  # fmt: skip
_ALWAYS_BAD_GLOBALS = frozenset(
    {"lipsum", "cycler", "joiner", "self", "config", "request", "session", "g",
     "url_for", "get_flashed_messages"}
)  # fmt: skip
_CALL_ONLY_GLOBALS = frozenset({"namespace", "range", "dict"})
_ATTR_FILTERS = {"attr": 0, "map": None, "selectattr": 0, "rejectattr": 0, "sort": None,
                 "groupby": 0, "sum": None, "unique": None, "min": None, "max": None}  # fmt: skip
_DISPATCH_FILTERS = frozenset({"map", "select", "reject", "selectattr", "rejectattr"})
_NUMERIC_FILTERS = frozenset({"length", "count", "int", "float", "abs", "round"})
_DUNDER = re.compile(r"__\w*__|^_[A-Za-z]")
_CHAR_CODE = re.compile(r"%[-#0 +]*\d*c|\{[^{}]*:[^{}]*c\}")


@dataclass(frozen=True)
class Problem:
    subject: str
    message: str
    line: int


def judge(source: str) -> tuple[list[Problem], str | None]:
    """(problems, parse error) of one template."""
    env = _environment()  # ImportError without jinja2: the caller reports unsupported
    try:
        tree = env.parse(source[:MAX_TEMPLATE])
    except Exception as e:  # jinja2.TemplateSyntaxError and what the lexer raises
        return [], f"{type(e).__name__}: {str(e)[:160]}"
    problems: list[Problem] = []
    if len(source) > MAX_TEMPLATE:
        problems.append(Problem("size", f"template passes {MAX_TEMPLATE} characters", 0))
    _Judge(tree, problems).run()
    return problems, None


def _environment() -> Any:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension

    class Generation(Extension):  # transformers' {% generation %} ... {% endgeneration %}
        tags = {"generation"}  # noqa: RUF012 (jinja2 declares it a set)

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return jinja2.Environment(extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do", Generation])


class _Judge:
    def __init__(self, tree: Any, problems: list[Problem]) -> None:
        from jinja2 import nodes

        self.n = nodes
        self.tree = tree
        self.problems = problems
        self.assigned: dict[str, list[Any]] = {}  # variable -> every value assigned to it
        self.loop_over: dict[str, list[Any]] = {}  # loop variable -> what it iterates

    def add(self, node: Any, subject: str, message: str) -> None:
        self.problems.append(Problem(subject[:120], message, getattr(node, "lineno", 0)))

    def run(self) -> None:
        n = self.n
        for node in self.tree.find_all(n.Assign):
            for name in _target_names(node.target, n):
                self.assigned.setdefault(name, []).append(node.node)
        for node in self.tree.find_all(n.AssignBlock):
            for name in _target_names(node.target, n):
                self.assigned.setdefault(name, []).append(None)  # a rendered block: a string
        for node in self.tree.find_all(n.For):
            for name in _target_names(node.target, n):
                self.loop_over.setdefault(name, []).append(node.iter)
        # names bound by {% with %} hold their values; a call block's parameters and a
        # macro's varargs/kwargs/caller hold whatever a caller passes: not context data
        for node in self.tree.find_all(n.With):
            for target, value in zip(node.targets, node.values, strict=False):
                for name in _target_names(target, n):
                    self.assigned.setdefault(name, []).append(value)
        for node in self.tree.find_all(n.CallBlock):
            for a in node.args:
                self.assigned.setdefault(a.name, []).append(None)
        if any(True for _ in self.tree.find_all(n.Macro)):
            for name in ("varargs", "kwargs", "caller"):
                self.assigned.setdefault(name, []).append(None)
        # a macro's parameters hold what its callers pass (and its defaults)
        macros = {m.name: m for m in self.tree.find_all(n.Macro)}
        for m in macros.values():
            params = [a.name for a in m.args]
            for param, default in zip(
                params[len(params) - len(m.defaults) :], m.defaults, strict=True
            ):
                self.assigned.setdefault(param, []).append(default)
        for call in self.tree.find_all(n.Call):
            if isinstance(call.node, n.Name) and call.node.name in macros:
                params = [a.name for a in macros[call.node.name].args]
                for param, arg in zip(params, call.args, strict=False):  # extras: varargs
                    self.assigned.setdefault(param, []).append(arg)
                for kw in call.kwargs:
                    self.assigned.setdefault(kw.key, []).append(kw.value)
                if call.dyn_args is not None or call.dyn_kwargs is not None:
                    for param in params:
                        self.assigned.setdefault(param, []).append(None)  # unknown
        for node in _walk(self.tree):
            self.visit(node)

    def visit(self, node: Any) -> None:
        n = self.n
        if isinstance(node, n.Getattr):
            self._name(node, node.attr, "attribute")
            if isinstance(node.node, n.Name) and node.node.name in _CALL_ONLY_GLOBALS:
                self.add(node, node.node.name, f"reaches into the {node.node.name} global")
            if node.attr == "format":
                self._format_call(node)
        elif isinstance(node, n.Getitem):
            if isinstance(node.node, n.Name) and node.node.name in _CALL_ONLY_GLOBALS:
                self.add(node, node.node.name, f"reaches into the {node.node.name} global")
            self._key(node, node.arg, "item key")
        elif isinstance(node, n.Filter):
            self._filter(node)
        elif isinstance(node, n.Name) and node.ctx == "load":
            bound = node.name in self.assigned or node.name in self.loop_over
            if node.name in _ALWAYS_BAD_GLOBALS and not bound:  # not a local of that name
                self.add(node, node.name, f"uses the {node.name!r} global")
        elif isinstance(node, n.Const) and isinstance(node.value, str):
            if re.search(r"__\w*__", node.value):
                self.add(node, node.value, f"string {node.value[:60]!r} names a dunder")
            if _CHAR_CODE.search(node.value):
                self.add(node, node.value, "builds characters from codes (%c / {:c})")
        elif isinstance(node, (n.Concat, n.Add)):
            parts = node.nodes if isinstance(node, n.Concat) else [node.left, node.right]
            for p in parts:
                if _underscore_piece(p, n):
                    self.add(node, str(p.value), f"joins the name piece {p.value!r}")
        elif isinstance(node, (n.Include, n.Import, n.FromImport, n.Extends)):
            self.add(node, type(node).__name__.lower(), "loads another template")

    def _name(self, node: Any, name: str, what: str) -> None:
        if _DUNDER.search(name) or name in _INTERNALS:
            self.add(node, name, f"{what} {name!r} reaches Python internals")

    def _key(self, node: Any, key: Any, what: str) -> None:
        n = self.n
        if isinstance(key, n.Const):
            if isinstance(key.value, str):
                self._name(node, key.value, what)
            return
        if isinstance(key, n.Slice):
            return
        if not self._safe(key, set()):
            self.add(node, _describe(key, n), f"{what} is computed from a value that can "
                     "build a name")  # fmt: skip

    def _safe(self, e: Any, seen: set[str]) -> bool:
        """Can this expression not evaluate to a built string (a name)?"""
        n = self.n
        if isinstance(e, n.Const):
            return not (isinstance(e.value, str) and (_DUNDER.search(e.value)
                                                     or e.value in _INTERNALS))  # fmt: skip
        if isinstance(e, n.Name):
            if e.name in seen:
                return True
            seen = seen | {e.name}
            if e.name in self.assigned:
                return all(v is not None and self._safe(v, seen) for v in self.assigned[e.name])
            if e.name in self.loop_over:
                return all(self._safe_iterable(it, seen) for it in self.loop_over[e.name])
            return e.name not in _ALWAYS_BAD_GLOBALS  # context data (messages, tools)
        if isinstance(e, n.Getattr):
            if _DUNDER.search(e.attr) or e.attr in _INTERNALS:
                return False
            ref = f"{e.node.name}.{e.attr}" if isinstance(e.node, n.Name) else ""
            if ref in self.assigned and ref not in seen:  # {% set ns.attr = ... %}
                values = self.assigned[ref] + self._namespace_defaults(e.node.name, e.attr)
                return all(v is not None and self._safe(v, seen | {ref}) for v in values)
            return self._safe(e.node, seen)
        if isinstance(e, n.Getitem):
            return self._safe(e.node, seen) and (
                isinstance(e.arg, n.Slice) or self._safe(e.arg, seen)
            )
        if isinstance(e, (n.Neg, n.Pos)):
            return self._safe(e.node, seen)
        if isinstance(e, (n.Add, n.Sub, n.Mul, n.Div, n.FloorDiv, n.Mod, n.Pow)):
            operands = (e.left, e.right)
            return all(
                not (isinstance(o, n.Const) and isinstance(o.value, str)) and self._safe(o, seen)
                for o in operands
            )
        if isinstance(e, n.CondExpr):
            return self._safe(e.expr1, seen) and (e.expr2 is None or self._safe(e.expr2, seen))
        if isinstance(e, n.Filter):
            return e.name in _NUMERIC_FILTERS
        return False  # concatenation, calls, other filters, literals of lists: can build text

    def _namespace_defaults(self, ns: str, attr: str) -> list[Any]:
        n = self.n
        out = []
        for v in self.assigned.get(ns, []):
            if isinstance(v, n.Call) and isinstance(v.node, n.Name) and v.node.name == "namespace":
                out += [kw.value for kw in v.kwargs if kw.key == attr]
        return out

    def _safe_iterable(self, it: Any, seen: set[str]) -> bool:
        n = self.n
        if (
            isinstance(it, n.Call)
            and isinstance(it.node, n.Getattr)
            and it.node.attr in ("items", "keys", "values")
            and not it.args
        ):
            return self._safe(it.node.node, seen)
        if isinstance(it, (n.List, n.Tuple)):
            return all(self._safe(x, seen) for x in it.items)
        if isinstance(it, n.Call) and isinstance(it.node, n.Name) and it.node.name == "range":
            return True
        if isinstance(it, n.Filter):  # items / dictsort / reverse / batch over data
            return it.node is None or self._safe_iterable(it.node, seen)
        return self._safe(it, seen)

    def _filter(self, node: Any) -> None:
        n = self.n
        if node.name in _ATTR_FILTERS or node.name in _DISPATCH_FILTERS:
            pos = _ATTR_FILTERS.get(node.name)
            names = [kw.value for kw in node.kwargs if kw.key == "attribute"]
            if pos is not None and len(node.args) > pos:
                names.append(node.args[pos])
            # map('attr', name) / select('attr', ...): the filter named by the first
            # argument gets the rest; a computed filter name is itself a finding
            if node.name in _DISPATCH_FILTERS and node.args:
                first = node.args[0]
                if not isinstance(first, n.Const):
                    self.add(node, _describe(first, n), f"{node.name} with a computed filter")
                elif first.value in _ATTR_FILTERS or first.value == "format":
                    names.extend(node.args[1:])
            for v in names:
                if isinstance(v, n.Const) and isinstance(v.value, str):
                    for part in v.value.split("."):
                        self._name(node, part, f"{node.name} filter name")
                elif not isinstance(v, n.Const):
                    self.add(node, _describe(v, n), f"{node.name} filter with a computed name")
        elif node.name == "format":
            fmt = node.node
            if not (isinstance(fmt, n.Const) and isinstance(fmt.value, str)):
                self.add(node, "format", "format filter with a computed format string")
        elif node.name == "replace" and len(node.args) >= 2:
            new = node.args[1]
            if not (isinstance(new, n.Const) and "_" not in str(new.value)):
                self.add(node, "replace", "replace filter producing underscores or computed")

    def _format_call(self, node: Any) -> None:
        n = self.n
        fmt = node.node
        if not (isinstance(fmt, n.Const) and isinstance(fmt.value, str)):
            self.add(node, "format", "str.format on a computed format string")
        elif re.search(r"\{[^{}]*[.\[!][^{}]*\}", fmt.value):
            self.add(node, fmt.value, "format string fields reach attributes or items")


def _walk(node: Any) -> Iterator[Any]:
    stack = [node]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(x.iter_child_nodes())


def _target_names(target: Any, n: Any) -> list[str]:
    if isinstance(target, n.Name):
        return [target.name]
    if isinstance(target, n.NSRef):
        return [f"{target.name}.{target.attr}"]
    if isinstance(target, n.Tuple):
        return [x for item in target.items for x in _target_names(item, n)]
    return []


def _underscore_piece(p: Any, n: Any) -> bool:
    """A literal that can only be there to build a dunder: ``_`` itself, or one that opens
    or closes with ``__`` (``'call_' ~ id`` is ordinary)."""
    if not (isinstance(p, n.Const) and isinstance(p.value, str)):
        return False
    v = p.value
    return v == "_" or v.startswith("__") or v.endswith("__")


def _describe(e: Any, n: Any) -> str:
    if isinstance(e, n.Name):
        return str(e.name)
    if isinstance(e, n.Const):
        return repr(e.value)
    return type(e).__name__
