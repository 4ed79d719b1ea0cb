"""What the simulated unpickler's events mean: the judging half of the pickle scanner.

The decoding loop (``walker.py``) reads opcodes exactly as CPython does and reports each
import, call, BUILD and persistent id here. This module decides what they mean, against
the exact allowlist (``policy.py``):

* every import that is not an allowlist entry is a finding (MLV101 dangerous, MLV102 unknown);
* a call of anything but an import is a finding unless it is the result of
  ``builtins.getattr`` fetching a method the allowlist names for the object's class, or a
  result whose entry says what calling it calls (``functools.partial``) and that is allowed;
* an allowed callable that calls or constructs its arguments (``Entry.calls``) must be
  given allowed callables in turn (call-through), and the bytes an allowed callable
  deserialises (``Entry.loads``) are always scanned as nested files, whatever they start with;
* BUILD on an imported global (not a new object) is a finding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.pickle.values import (
    ANY,
    ARRAY,
    COMPUTED_KEY,
    CONSTRUCTORS,
    KEEP,
    PLAIN,
    SCALARS,
    SET,
    TRACKED,
    Blob,
    Call,
    ImportRecord,
    Opaque,
    Ref,
    plants_method,
    render,
)
from mlverify._internal.scan.policy import GETATTR, Entry, Policy, Verdict, canonical

Emit = Callable[[str, Severity, int, str, str, str], None]
#: nested(data or None, stream offset, length, kind, forced): scan a value as a file
Nested = Callable[[Any, int, int, str, bool], None]

#: allowed functions that make an instance of their first argument (class inference)
#: allowed callables that only ``__new__`` their first argument (then BUILD sets its state)
_NEW_ONLY_OK = frozenset(
    {
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
        "numpy._core.multiarray._reconstruct",  # ndarray.__new__(subtype, ...)
    }
)


#: what the escape search descends into (and memoises by identity): the values made whole
#: (a tuple, a call's arguments and state); a simulated dict or list is searched item by
#: item as the walker fills it (every DICT, LIST, SETITEM(S), APPEND(S) calls ``stored``),
#: so what it holds was searched when it was put there, kept or not
_PUSHED = frozenset({Ref, tuple, Call})
#: escape search steps per byte of the stream read, and free steps (a bound on total work)
_WORK_PER_BYTE = 64
_WORK_FREE = 1 << 20


def _identifiers(dotted: str) -> bool:
    """Is ``dotted`` a dotted path of Python identifiers (a name a module could have)?"""
    return all(p.isidentifier() for p in dotted.split("."))


class Judge:
    """Judges a walk's events; one per stream, shared by the pickles stacked in it."""

    def __init__(
        self, policy: Policy, emit: Emit, nested: Nested | None, base: int, max_findings: int
    ) -> None:
        self.policy = policy
        self.max_findings = max_findings
        self.emit = emit
        self.nested = nested
        self.base = base
        self.records: dict[tuple[str, str], ImportRecord] = {}
        self.imports = 0
        self.first_names: list[str] = []  # the first imports seen (format detection)
        self._loaded: dict[tuple[Any, ...], Any] = {}  # values already scanned as nested files
        self._emitted = 0
        self.view = ""  # "" for the primary reading, else the loader named in findings
        # format detection: a loader that reached a call or imported a name that can be a
        # module ran something before any later break
        self.calls = 0  # calls of imported (or computed) callables
        self.importable = False  # an import whose module and name are Python identifiers
        # the escape search: values already searched (by identity, kept alive so an id is
        # not reused) and the work done, bounded by the input read
        self._searched: dict[int, Any] = {}
        self._work = 0
        self._over = False

    # -- findings ----------------------------------------------------------
    def _emit(
        self, rule: str, sev: Severity, offset: int, subject: str, msg: str, chain: str
    ) -> None:
        self._emitted += 1
        if self._emitted <= self.max_findings:
            if self.view:
                chain = (
                    f"{chain}; when read by {self.view}" if chain else f"when read by {self.view}"
                )
            self.emit(rule, sev, self.base + offset, subject, msg, chain)

    def dropped(self) -> int:
        """Findings over ``max_findings``, not kept."""
        return max(0, self._emitted - self.max_findings)

    # -- imports -------------------------------------------------------------
    def import_(self, module: str, name: str, offset: int, opcode: str) -> Ref:
        key = (module, name)
        rec = self.records.get(key)
        if rec is None:
            verdict = self.policy.classify(module, name)
            rec = ImportRecord(module, name, offset, opcode, verdict)
            self.records[key] = rec
            self.imports += 1
            if not self.importable and _identifiers(module) and _identifiers(name):
                self.importable = True
            if len(self.first_names) < 8:
                self.first_names.append(rec.full)
        rec.count += 1
        return Ref(rec)

    def wants(self, v: Any) -> ImportRecord | None:
        """The record of a non-allowlisted import behind ``v`` still collecting uses."""
        depth = 0
        while isinstance(v, Call) and depth < 8:
            if v.method:
                return None  # a known method fetched by getattr: that use is allowed
            v = v.func
            depth += 1
        if isinstance(v, Ref):
            rec = v.rec
            if len(rec.uses) < 3 and rec.verdict.kind != "allow":
                return rec
        return None

    def stored(self, items: Any, op_off: int) -> None:
        """Items put in a container (or a dict's keys and values): every one is searched
        here (the simulated container keeps KEEP of them; a loader keeps them all, and
        deque(items, n) or slicing can bring any of them back to the front)."""
        for it in items:
            if it.__class__ in _PUSHED:
                break
        else:
            return  # nothing the search descends into
        for it in items:
            if it.__class__ in TRACKED:
                rec = self.wants(it)
                if rec is not None:
                    rec.uses.append(f"stored in a container at offset {self.base + op_off}")
        self._search("stored in a container", items, op_off)

    def flush(self) -> None:
        for rec in self.records.values():
            v = rec.verdict
            if v.kind == "allow":
                continue
            canon = ".".join(x for x in canonical(rec.module, rec.name) if x)
            label = rec.full if canon == rec.full else f"{rec.full} (= {canon})"
            chain = "; ".join(rec.uses) if rec.uses else f"imported by {rec.opcode}, not called"
            times = f" ({rec.count} times)" if rec.count > 1 else ""
            if v.kind == "getattr":
                if rec.good_calls and not rec.uses:
                    continue  # every use fetched a known method of an allowed class
                self._emit(
                    "MLV104",
                    v.severity,
                    rec.offset,
                    rec.full,
                    f"imports {GETATTR}{times} and uses it other than to fetch a known "
                    "method of an allowed class",
                    chain,
                )
            elif v.kind == "deny":
                self._emit(
                    "MLV101",
                    v.severity,
                    rec.offset,
                    rec.full,
                    f"imports dangerous callable {label}{times}: {v.reason}",
                    chain,
                )
            else:
                self._emit(
                    "MLV102",
                    v.severity,
                    rec.offset,
                    rec.full,
                    f"imports {label}{times}, which is not on the allowlist",
                    chain,
                )
        self.records = {}

    # -- values --------------------------------------------------------------
    @staticmethod
    def target(v: Any) -> str | None:
        if isinstance(v, Ref):
            return v.rec.full
        if isinstance(v, Call):
            return v.target
        return None

    def class_of(self, v: Any) -> str | None:
        """The allowed class (defining name) of the object ``v`` stands for, when known."""
        if not isinstance(v, Call) or not isinstance(v.func, Ref):
            return None
        rec = v.func.rec
        if rec.verdict.kind != "allow" or rec.verdict.entry is None:
            return None
        if v.kind in ("NEWOBJ", "NEWOBJ_EX", "INST", "OBJ") or rec.verdict.entry.kind == "class":
            return rec.verdict.name if rec.verdict.entry.kind == "class" else None
        if rec.verdict.name in CONSTRUCTORS and isinstance(v.args, tuple) and v.args:
            cls = v.args[0]
            if isinstance(cls, Ref) and cls.rec.verdict.kind == "allow":
                e = cls.rec.verdict.entry
                return cls.rec.verdict.name if e is not None and e.kind == "class" else None
        return None

    def maybe_str(self, v: Any) -> bool:
        """Could ``v`` be an exact ``str`` at load time (STACK_GLOBAL requires one)?

        Plain data and what allowed callables return cannot (``str`` of a constant is
        computed as the string itself); a non-allowlisted import, what it returns, what a
        loader's persistent_load returns, or a string too long to keep could be.
        """
        if v.__class__ is str:
            return True
        if isinstance(v, Blob):
            return v.kind == "str"
        if v.__class__ in PLAIN:
            return False
        if isinstance(v, Ref):
            return bool(v.rec.verdict.kind != "allow")
        if isinstance(v, Call):
            if v.method:
                return True  # what a method returns is not known
            f = v.func
            if isinstance(f, Ref) and f.rec.verdict.kind == "allow":
                e = f.rec.verdict.entry
                if e is not None and e.kind == "class":
                    return bool(f.rec.verdict.name == "builtins.str")
                if f.rec.verdict.name in CONSTRUCTORS or f.rec.verdict.name in _NEW_ONLY_OK:
                    cls = v.args[0] if isinstance(v.args, tuple) and v.args else None
                    return not (
                        isinstance(cls, Ref)
                        and cls.rec.verdict.kind == "allow"
                        and cls.rec.verdict.name != "builtins.str"
                    )
            return True  # a function's result (codecs.encode(..., "rot13") is a str)
        return v not in (ARRAY, SET, ANY)

    def safe_callable(self, v: Any, depth: int = 0) -> bool:
        """Calling ``v`` calls only what the allowlist allows (bounded nesting)."""
        while depth < 8:
            depth += 1
            if isinstance(v, Ref):
                return bool(v.rec.verdict.kind == "allow")
            if not isinstance(v, Call):
                return False
            if v.method:
                return True
            f = v.func
            if not isinstance(f, Ref) or f.rec.verdict.kind != "allow":
                return False
            if f.rec.verdict.name == "functools.partial":
                parts = self._partial_parts(v)
                if parts is None:
                    return False
                v = parts[0]
                continue
            e = f.rec.verdict.entry
            if e is None or not e.result_calls or not isinstance(v.args, tuple):
                return False
            inner = [v.args[i] for i in e.result_calls if i < len(v.args)]
            if len(inner) != len(e.result_calls):
                return False
            if not all(self.safe_callable(a, depth) for a in inner[1:]):
                return False
            v = inner[0]
        return False

    # -- calls ---------------------------------------------------------------
    def reach(self, target: str, call: Call, offset: int, via: str = "call chain") -> str:
        """A call evaluates to (or calls) ``target``: flag it if it is not allowed (the
        verdict's kind is returned)."""
        verdict = self.policy.is_dangerous_target(target)
        if verdict.kind == "deny":
            self._emit(
                "MLV104",
                max(verdict.severity, Severity.HIGH),
                offset,
                target,
                f"{via} reaches {target}: {verdict.reason}",
                render(call) + f" at offset {self.base + offset}",
            )
        elif verdict.kind != "allow" and via == "call chain":
            self._emit(
                "MLV103",
                Severity.HIGH,
                offset,
                target,
                f"an import helper reaches {target}, which is not on the allowlist",
                render(call),
            )
        return verdict.kind

    def call(self, func: Any, args: Any, kind: str, offset: int, kwargs: Any = None) -> Any:
        """What ``func(*args)`` pushes: a Call (or, for ``str`` of a constant, the string).
        ``kwargs``: NEWOBJ_EX's keyword arguments (``cls.__new__(cls, *args, **kwargs)``)."""
        if func.__class__ in TRACKED:
            self.calls += 1
        if (
            kind == "REDUCE"
            and isinstance(func, Ref)
            and func.rec.verdict.name == "builtins.str"
            and isinstance(args, tuple)
            and len(args) == 1
            and args[0].__class__ in (str, bool, type(None))
        ):
            return str(args[0])  # exact: an allowed call that makes a name from data
        if (
            kind == "REDUCE"
            and isinstance(func, Ref)
            and func.rec.verdict.name == "_codecs.encode"
            and isinstance(args, tuple)
            and len(args) == 2
            and args[1] in ("latin1", "latin-1")
        ):
            # protocol < 3 writes bytes as _codecs.encode(text, "latin1"): the bytes themselves
            if args[0].__class__ is str:
                return args[0].encode("latin-1", "replace")
            if isinstance(args[0], Blob) and args[0].kind == "str":
                return Blob("latin1", args[0].offset, args[0].length)
        call = Call(func, args, kind, offset, None)
        argt = args if isinstance(args, tuple) else ()
        if isinstance(func, Ref):
            rec = func.rec
            v = rec.verdict
            if v.kind == "allow":
                if v.entry is not None:
                    self._through(
                        v.entry, rec.verdict.name or rec.full, args, call, offset, kind, kwargs
                    )
            elif v.kind == "getattr":
                self._getattr(rec, argt, call, offset)
            else:
                helper = self.policy.helper(rec.module, rec.name)
                if helper is not None:
                    t = self._helper_target(helper, argt, call, offset)
                    if t is not None and not t.startswith("attrgetter:"):
                        self.reach(t, call, offset)
                    call.target = t
                rec_ = self.wants(func)
                if rec_ is not None:
                    rec_.uses.append(f"{render(call)} via {kind} at offset {self.base + offset}")
        elif isinstance(func, Call):
            self._call_result(func, argt, call, kind, offset)
        else:
            self._emit(
                "MLV105",
                Severity.HIGH,
                offset,
                kind,
                f"calls a value that is not an import ({render(func, 60)})",
                render(call),
            )
        for a in argt[:KEEP]:
            if a.__class__ in TRACKED:
                rec_ = self.wants(a)
                if rec_ is not None:
                    rec_.uses.append(f"argument of {render(call)} at offset {self.base + offset}")
        if argt:
            callee = func.rec.verdict.name if isinstance(func, Ref) else ""
            for i, a in enumerate(argt[:KEEP]):
                if isinstance(a, Ref) and not self._new_only_misused(a, callee, i):
                    e = a.rec.verdict.entry
                    if e is not None and e.new_only:
                        continue  # a construct-only class that the callee only __new__s
                self.escaped(f"an argument of {render(func, 60)}", a, offset)
        return call

    def _through(
        self,
        entry: Entry,
        name: str,
        args: Any,
        call: Call,
        offset: int,
        kind: str,
        kwargs: Any = None,
    ) -> None:
        """Call-through: what an allowed callable calls, stores to call, or loads must be
        allowed or scanned."""
        bare = args == () and (kwargs is None or (kwargs.__class__ is dict and not kwargs))
        if entry.new_only and (
            kind in ("REDUCE", "INST", "OBJ") or (kind in ("NEWOBJ", "NEWOBJ_EX") and not bare)
        ):
            self._emit(
                "MLV105",
                Severity.HIGH,
                offset,
                name,
                f"calls {name}(...) or its __new__ with arguments, which is not data (only "
                "reconstruction without arguments and BUILD is allowed)",
                render(call),
            )
        if name in ("copyreg.__newobj__", "copyreg.__newobj_ex__") and isinstance(args, tuple):
            cls = args[0] if args else None
            extra = (
                args[1:] if name == "copyreg.__newobj__" else tuple(args[1:2]) + tuple(args[2:3])
            )
            has_extra = any(x not in ((), {}, None) for x in extra)
            e = cls.rec.verdict.entry if isinstance(cls, Ref) else None
            if isinstance(cls, Ref) and e is not None and e.new_only and has_extra:
                cname = cls.rec.verdict.name
                self._emit(
                    "MLV105",
                    Severity.HIGH,
                    offset,
                    cname,
                    f"{name} hands {cname}.__new__ arguments: its __new__ is "
                    "not data with them (numpy.memmap's opens a file)",
                    render(call),
                )
        calls = entry.calls + tuple(i for i in entry.result_calls if i not in entry.calls)
        if not calls and not entry.loads:
            return
        if not isinstance(args, tuple):
            self._emit(
                "MLV105",
                Severity.HIGH,
                offset,
                name,
                f"{name} calls or loads its arguments, and the scanner cannot see them",
                render(call),
            )
            return
        for i in calls:
            if i >= len(args):
                continue  # the loader raises (missing argument)
            a = args[i]
            if a.__class__ in PLAIN:
                continue  # data where a callable goes: the loader raises, nothing runs
            if self.safe_callable(a) and not self._new_only_misused(a, name, i):
                continue
            if isinstance(a, Ref) and a.rec.verdict.kind != "allow":
                continue  # a non-allowlisted import: reported as such, with this use
            self._emit(
                "MLV105",
                Severity.HIGH,
                offset,
                name,
                f"{name} calls its argument {i + 1} ({render(a, 60)}), which is not an "
                "allowlisted callable",
                render(call),
            )
        for i in entry.loads:
            if i >= len(args):
                continue
            a = args[i]
            key = ("blob", a.offset, a.length, a.kind) if isinstance(a, Blob) else ("obj", id(a))
            if key in self._loaded:
                continue  # the same value loaded again (memo): scanned once
            self._loaded[key] = a  # kept alive, so its id is not reused by another value
            if isinstance(a, (bytes, bytearray)):
                if self.nested is not None:
                    self.nested(bytes(a), offset, len(a), "bytes", True)
            elif isinstance(a, Blob):
                if self.nested is not None:
                    self.nested(None, a.offset, a.length, a.kind, True)
            else:
                self._emit(
                    "MLV105",
                    Severity.HIGH,
                    offset,
                    name,
                    f"{name} deserialises its argument {i + 1} ({render(a, 60)}), which the "
                    "scanner cannot read",
                    render(call),
                )

    @staticmethod
    def _partial_parts(v: Call) -> tuple[Any, tuple[Any, ...]] | None:
        """(func, bound arguments) of a ``functools.partial``: from its BUILD state when it
        has one (``partial.__setstate__((func, args, kwds, dict))`` replaces both), else
        from its arguments; None when the scanner cannot tell."""
        st = v.state
        if st is not None:
            if isinstance(st, tuple) and len(st) == 4 and isinstance(st[1], tuple):
                return st[0], st[1]
            return None
        if isinstance(v.args, tuple) and v.args:
            return v.args[0], tuple(v.args[1:])
        return None

    def _partial_target(self, v: Call) -> tuple[Ref, tuple[Any, ...]] | None:
        """(f, bound arguments) of ``functools.partial(f, *bound)``, nested partials unfolded."""
        bound: tuple[Any, ...] = ()
        for _ in range(8):
            f = v.func
            if not (isinstance(f, Ref) and f.rec.verdict.name == "functools.partial"):
                return None
            parts = self._partial_parts(v)
            if parts is None:
                return None
            target, more = parts
            bound = more + bound
            if isinstance(target, Ref):
                return target, bound
            if not isinstance(target, Call):
                return None
            v = target
        return None

    @staticmethod
    def sensitive(v: Any) -> bool:
        """An allowed callable that is only data when called right here, by REDUCE, with
        arguments the judge checks: a loader (``loads``), a function that calls what it is
        given (``calls``) or a construct-only class."""
        if not isinstance(v, Ref) or v.rec.verdict.kind != "allow":
            return False
        e = v.rec.verdict.entry
        if e is None:
            return False
        if e.new_only or e.loads:
            return True
        return e.kind == "function" and bool(e.calls or e.result_calls or e.state_calls)

    def escaped(self, where: str, value: Any, offset: int) -> None:
        """Flag sensitive callables in ``value`` (searched all the way down): stored,
        passed or set as state, they are called later with arguments nobody checked."""
        self._search(where, (value,), offset)

    def _search(self, where: str, values: Any, offset: int) -> None:
        """The escape search of each of ``values``.

        Each container or call is searched once (memoised by identity: a structure shared
        exponentially costs its distinct nodes; one of scalars only costs nothing), and the
        whole stream's search is bounded by the bytes read so far; past that bound the
        stream is a MEDIUM finding (MLV302), never a pass."""
        push = _PUSHED
        todo: list[Any] = [v for v in values if v.__class__ in push]
        if not todo or self._over:
            return
        searched = self._searched
        if len(searched) > 1 << 16:
            searched.clear()  # memory stays bounded; the work budget still holds
        scalars = SCALARS
        work = len(todo)
        kids: Any
        while todo:
            v = todo.pop()
            cls = v.__class__
            if cls is Ref:
                if self.sensitive(v):
                    name = v.rec.verdict.name or v.rec.full
                    self._emit(
                        "MLV105",
                        Severity.HIGH,
                        offset,
                        name,
                        f"{name} (which loads, calls or opens what it is given) is {where}: "
                        "whatever calls it later does so with arguments the scanner never saw",
                        render(values[0] if len(values) == 1 else values, 120),
                    )
                continue
            if cls is Call:
                if id(v) in searched:
                    continue
                searched[id(v)] = v
                kids = v.args if v.args.__class__ is tuple else (v.args,)
                if v.state is not None:
                    kids = (*kids, v.state)
            else:  # a tuple
                kids = v
                if scalars.issuperset(map(type, kids)):
                    continue  # plain data only (checked at C speed, not memoised)
                if id(v) in searched:
                    continue
                searched[id(v)] = v
            for x in kids:
                if x.__class__ in push:
                    todo.append(x)
                    work += 1
        self._work += work
        if self._work > _WORK_PER_BYTE * max(offset, 0) + _WORK_FREE:
            self._over = True
            self._emit(
                "MLV302",
                Severity.MEDIUM,
                offset,
                "escape search",
                "the search for loaders and callables stored where something calls them later "
                f"passed its bound ({_WORK_PER_BYTE} steps per byte read) at offset "
                f"{self.base + offset}; the rest of the stream is not searched, so the file "
                "cannot be shown safe",
                "",
            )

    @staticmethod
    def _new_only_misused(a: Any, callee: str, index: int) -> bool:
        """A construct-only class handed to a callee that would call (not __new__) it."""
        if not isinstance(a, Ref):
            return False
        e = a.rec.verdict.entry
        if e is None or not e.new_only:
            return False
        if callee in _NEW_ONLY_OK or (callee == "copyreg._reconstructor" and index == 0):
            return False  # (copyreg.__newobj__ with more arguments is judged in _through)
        # Cython's pickle helpers: __pyx_unpickle_X(type, ...) and newObj(type) are type.__new__
        leaf = callee.rpartition(".")[2]
        return not (index == 0 and (leaf.startswith("__pyx_unpickle_") or leaf == "newObj"))

    def _getattr(self, rec: ImportRecord, args: tuple[Any, ...], call: Call, offset: int) -> None:
        """``getattr(obj, name)``: allowed only for a method the allowlist names."""
        if len(args) == 2 and isinstance(args[1], str):
            obj, attr = args
            cls = self.class_of(obj)
            if cls is None and isinstance(obj, Ref) and obj.rec.verdict.kind == "allow":
                e = obj.rec.verdict.entry
                if e is not None and e.kind == "class":
                    cls = obj.rec.verdict.name  # a classmethod fetched from the class
            if cls is not None and attr in self.policy.methods(cls):
                rec.good_calls += 1
                call.target = f"{cls}.{attr}"
                call.method = True
                return
            base = self.target(obj)
            if base is not None:
                target = f"{base}.{attr}"
                call.target = target
                if self.reach(target, call, offset, "getattr") == "deny":
                    rec.uses.append(f"{render(call)} at offset {self.base + offset}")
                    return
            what = f"{cls or render(obj, 60)}"
            self._emit(
                "MLV104",
                Severity.HIGH,
                offset,
                f"getattr(..., {attr!r})",
                f"getattr fetches {attr!r} from {what}, which is not a known method of an "
                "allowlisted class",
                render(call),
            )
        else:
            self._emit(
                "MLV103",
                Severity.HIGH,
                offset,
                GETATTR,
                "getattr receives an attribute name the scanner cannot resolve",
                render(call),
            )
        rec.uses.append(f"{render(call)} at offset {self.base + offset}")

    def _call_result(
        self, func: Call, args: tuple[Any, ...], call: Call, kind: str, offset: int
    ) -> None:
        """Calling a computed value: a known method, a partial of allowed callables, ..."""
        if self.safe_callable(func):
            inner = self._partial_target(func)
            if inner is not None:
                # partial(f, *a)(*b) is f(*a, *b): f's own call-through applies
                f, bound = inner
                e = f.rec.verdict.entry
                if e is not None:
                    self._through(e, f.rec.verdict.name or f.rec.full, bound + args, call,
                                  offset, "REDUCE")  # fmt: skip
            return
        ft = func.target
        if ft is not None and ft.startswith("attrgetter:"):
            base = self.target(args[0]) if args else None
            target = f"{base}.{ft[11:]}" if base else None
            if target:
                self.reach(target, call, offset)
                call.target = target
                return
            self._emit(
                "MLV105",
                Severity.HIGH,
                offset,
                "REDUCE",
                "calls an attrgetter on an object the scanner cannot resolve",
                render(call),
            )
            return
        if ft is not None:
            verdict: Verdict = self.policy.is_dangerous_target(ft)
            if verdict.kind == "deny":
                self._emit(
                    "MLV104",
                    Severity.CRITICAL,
                    offset,
                    ft,
                    f"calls {ft}, reached through a call chain: {verdict.reason}",
                    render(call),
                )
                return
        self._emit(
            "MLV105",
            Severity.HIGH,
            offset,
            ft or kind,
            f"calls {ft}, reached through a call chain"
            if ft
            else "calls the result of another call (gadget chain shape)",
            render(call),
        )

    def _helper_target(
        self, helper: str, args: tuple[Any, ...], call: Call, offset: int
    ) -> str | None:
        a0 = args[0] if args else None
        if helper in ("module", "dotted"):
            if isinstance(a0, str):
                return a0
        elif helper == "attrgetter":
            if isinstance(a0, str):
                return f"attrgetter:{a0}"
        elif helper == "module_name":
            if len(args) >= 2 and isinstance(a0, str) and isinstance(args[1], str):
                return f"{a0}.{args[1]}"
        else:
            return None
        self._emit(
            "MLV103",
            Severity.HIGH,
            offset,
            render(call.func),
            "an import helper receives a name the scanner cannot resolve",
            render(call),
        )
        return None

    # -- other events -------------------------------------------------------
    def build(self, obj: Any, state: Any, offset: int) -> None:
        """BUILD: ``obj.__setstate__(state)`` (or attribute updates)."""
        if isinstance(obj, Ref):
            self._emit(
                "MLV106",
                Severity.HIGH,
                offset,
                obj.rec.full,
                f"BUILD sets state on the imported global {obj.rec.full} itself",
                f"{obj.rec.full}.__setstate__({render(state, 80)})",
            )
            return
        # the object's class may be unknown here (a persistent_load result, an opaque value):
        # its instance may have a __dict__, so what the state plants or stores is judged
        if isinstance(obj, Call):
            obj.state = state
        self._planted(obj, state, offset)
        self.escaped(f"set as state of {render(obj, 60)}", state, offset)
        if not isinstance(obj, Call):
            return
        cls = self.class_of(obj)
        entry = self.policy.entry(cls) if cls is not None else None
        if entry is not None and entry.state_calls:
            self._state_calls(entry, cls or "", obj, state, offset)
        rec_ = self.wants(obj)
        if rec_ is not None:
            rec_.uses.append(f"BUILD (__setstate__) at offset {self.base + offset}")
        if isinstance(state, (dict, tuple)):
            vals = state.values() if isinstance(state, dict) else state
            for sv in list(vals)[:KEEP]:
                if sv.__class__ in TRACKED:
                    rec_ = self.wants(sv)
                    if rec_ is not None:
                        rec_.uses.append(
                            f"state of {render(obj, 60)} at offset {self.base + offset}"
                        )

    def _planted(self, obj: Any, state: Any, offset: int) -> None:
        """BUILD makes ``state``'s keys instance attributes: a callable under a name the
        loader (or an allowed getattr) later looks up as a method replaces that method."""
        parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
        for part in parts:
            if not isinstance(part, dict):
                continue
            for key, value in part.items():
                if plants_method(key, value, self.policy.behaviour_names):
                    name = (
                        repr(key)
                        if key.__class__ is str
                        else "named by a computed key (any name, __setstate__ too)"
                    )
                    self._emit(
                        "MLV106",
                        Severity.HIGH,
                        offset,
                        key if key.__class__ is str else "computed key",
                        f"BUILD sets the attribute {name} of "
                        f"{render(obj, 60)} to "
                        f"{render(value, 60)}: a loader or a method fetch calls it later",
                        f"{render(obj, 60)}.__setstate__({render(state, 80)})",
                    )

    def _state_calls(self, entry: Entry, cls: str, obj: Call, state: Any, offset: int) -> None:
        """BUILD hands an allowed class callables it will call: they must be allowed."""
        if not isinstance(state, (tuple, dict)):
            self._emit(
                "MLV105",
                Severity.HIGH,
                offset,
                cls,
                f"BUILD gives {cls} a state the scanner cannot read ({render(state, 60)}), and "
                "it calls what that state holds",
                f"{render(obj, 60)}.__setstate__({render(state, 80)})",
            )
            return
        pair = isinstance(state, tuple) and len(state) == 2
        if pair and isinstance(state[0], dict) and isinstance(state[1], dict):
            state = {**state[0], **state[1]}
        for key in entry.state_calls:
            if isinstance(key, int):
                v = state[key] if isinstance(state, tuple) and key < len(state) else None
            else:
                v = state.get(key) if isinstance(state, dict) else None
            if v.__class__ in PLAIN or self.safe_callable(v):
                continue
            if isinstance(v, Ref) and v.rec.verdict.kind != "allow":
                continue  # reported as an import
            self._emit(
                "MLV105",
                Severity.HIGH,
                offset,
                cls,
                f"BUILD gives {cls} a callable ({render(v, 60)}) it calls later, which is not "
                "an allowlisted callable",
                f"{render(obj, 60)}.__setstate__({render(state, 80)})",
            )

    def mutates(self, target: Any, method: str, offset: int, pairs: Any = ()) -> None:
        """SETITEM(S), APPEND(S) or ADDITEMS on an object that is not a plain dict, list or
        set: the loader calls ``target.__setitem__`` (``append``/``extend``/``add``).
        ``pairs``: the keys and values set (an item of a mapping whose ``__getattr__``
        reads its items, scipy's ``OptimizeResult``, is an attribute: a method planted)."""
        for i in range(0, len(pairs) - 1, 2):
            key = pairs[i]
            if key.__class__ not in SCALARS:
                key = COMPUTED_KEY if self.maybe_str(key) else None
            if plants_method(key, pairs[i + 1], self.policy.behaviour_names):
                self._emit(
                    "MLV106",
                    Severity.HIGH,
                    offset,
                    key if key.__class__ is str else "computed key",
                    f"sets the item {render(pairs[i], 40)} of {render(target, 60)} to "
                    f"{render(pairs[i + 1], 60)}: a mapping that reads attributes from its "
                    "items makes it a method a loader or a method fetch calls later",
                    f"{render(target, 60)}.{method}({render(pairs[i], 40)}, ...)",
                )
        if isinstance(target, Ref):
            self._emit(
                "MLV106",
                Severity.HIGH,
                offset,
                target.rec.full,
                f"calls {method} of the imported global {target.rec.full} itself (mutates "
                "module state at load time)",
                f"{target.rec.full}.{method}(...)",
            )
            return
        if not isinstance(target, Call) or not isinstance(target.func, Ref):
            return
        cls = self.class_of(target)
        entry = self.policy.entry(cls) if cls is not None else None
        if entry is not None and entry.new_only:
            self._emit(
                "MLV105",
                Severity.HIGH,
                offset,
                cls or "",
                f"calls {cls}.{method} on a construct-only object: only __new__ and BUILD "
                "are data for it (numpy.memmap's writes its file)",
                f"{render(target, 60)}.{method}(...)",
            )
        rec_ = self.wants(target)
        if rec_ is not None:
            rec_.uses.append(f"{method} at offset {self.base + offset}")

    def persistent(self, pid: Any, opname: str, offset: int) -> Any:
        """PERSID/BINPERSID: the loader's ``persistent_load(pid)``; what it pushes.

        torch decodes a bytes type name as ASCII (``_maybe_decode_ascii``): ``b'module'``
        is ``'module'``."""
        kind = pid[0] if isinstance(pid, tuple) and pid else None
        if kind.__class__ is bytes:
            kind = kind.decode("latin-1")
        if kind not in ("storage", "module"):
            self._emit(
                "MLV107",
                Severity.LOW,
                offset,
                opname,
                "hands a persistent id to the loader's persistent_load",
                f"persistent_load({render(pid, 100)})",
            )
        for it in pid if isinstance(pid, tuple) else ():
            if it.__class__ in TRACKED:
                rec_ = self.wants(it)
                if rec_ is not None:
                    rec_.uses.append(f"part of a persistent id at offset {self.base + offset}")
        self.escaped("part of a persistent id", pid, offset)
        if isinstance(pid, tuple) and len(pid) > 1 and kind == "module":
            return pid[1]  # legacy torch: persistent_load returns the class
        return None

    def extension(self, code: int, offset: int) -> Any:
        """EXT1/2/4: an import through the copyreg extension registry."""
        import copyreg

        key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
        if key is not None:
            return self.import_(str(key[0]), str(key[1]), offset, f"EXT {code}")
        self._emit(
            "MLV110",
            Severity.HIGH,
            offset,
            f"EXT {code}",
            f"imports extension code {code}, which no registry here defines: a loader raises "
            "unless its process registered the code, and then it imports whatever that names",
            "copyreg._extension_registry lookup",
        )
        return Call(Opaque(f"extension {code}"), (), "EXT", offset, None)
