"""The stable rule catalogue: ids never change meaning once published."""

from __future__ import annotations

from dataclasses import dataclass

from mlverify.scan.model import Severity


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: Severity  # default; some findings raise or lower it
    summary: str
    help: str


_RULES = [
    Rule(
        "MLV101",
        "pickle-dangerous-import",
        Severity.CRITICAL,
        "A pickle imports a callable that can run code, touch files or the network.",
        "Do not load this file. The import is on the denylist of callables used by published "
        "attacks; a loader imports and may call it while unpickling.",
    ),
    Rule(
        "MLV102",
        "pickle-unknown-import",
        Severity.MEDIUM,
        "A pickle imports a callable that is neither allowlisted nor known dangerous.",
        "Review the import; if it is a class of your own project, add it to the project's "
        "allowlist (policy), otherwise treat the file as untrusted.",
    ),
    Rule(
        "MLV103",
        "pickle-dynamic-import",
        Severity.HIGH,
        "A pickle imports a name that cannot be resolved statically.",
        "STACK_GLOBAL or an import helper receives a computed name: the scanner cannot "
        "tell what is imported, so the file cannot be shown safe.",
    ),
    Rule(
        "MLV104",
        "pickle-reaches-dangerous",
        Severity.CRITICAL,
        "A chain of calls in a pickle reaches a dangerous callable.",
        "getattr / import helpers / attribute chains resolve to a callable on the denylist.",
    ),
    Rule(
        "MLV105",
        "pickle-indirect-call",
        Severity.HIGH,
        "A pickle calls the result of another call or an unknown object.",
        "Ordinary pickles only call imported classes and functions; calling a computed value "
        "is the shape of gadget chains.",
    ),
    Rule(
        "MLV106",
        "pickle-build-on-global",
        Severity.HIGH,
        "A pickle's BUILD sets state on an imported global rather than on a new object.",
        "BUILD on a module-level object mutates it (__setstate__ / setattr abuse).",
    ),
    Rule(
        "MLV107",
        "pickle-persistent-id",
        Severity.LOW,
        "A pickle hands a persistent id to the loader outside a known storage layout.",
        "What happens depends on the loader's persistent_load; review the loader.",
    ),
    Rule(
        "MLV108",
        "pickle-cannot-follow",
        Severity.MEDIUM,
        "A pickle stream could not be followed to its end, or is not a complete pickle.",
        "Either the stream breaks where every loader stops (opcodes before the break run and "
        "were analysed, but the file is not a whole pickle) or the scanner cannot tell how a "
        "loader reads on (a joblib array it cannot size, a limit): the rest was searched for "
        "imports, and the file cannot be shown safe.",
    ),
    Rule(
        "MLV109",
        "nested-payload",
        Severity.INFO,
        "A bytes or string value inside the file is itself a loadable format.",
        "The nested content was scanned too; findings inside it are reported with the "
        "nested member path.",
    ),
    Rule(
        "MLV110",
        "pickle-extension-import",
        Severity.HIGH,
        "A pickle imports through the copyreg extension registry (EXT1/EXT2/EXT4).",
        "The imported callable depends on the loading process's registry and cannot be "
        "checked statically.",
    ),
    Rule(
        "MLV112",
        "joblib-external-array",
        Severity.HIGH,
        "An old joblib array wrapper names a file outside the artifact for joblib to load.",
        "joblib < 0.10 stored arrays in sibling .npy files and loads them with "
        "allow_pickle=True: a path that is not a plain sibling name loads (and unpickles) a "
        "file the scan never saw.",
    ),
    Rule(
        "MLV201",
        "zip-flag-bits",
        Severity.LOW,
        "A zip member sets general-purpose flag bits (encryption, patched data, ...).",
        "Loaders such as torch.load ignore these bits while many scanners stop on them; the "
        "member was read as if unencrypted.",
    ),
    Rule(
        "MLV202",
        "zip-crc-mismatch",
        Severity.LOW,
        "A zip member's CRC-32 does not match its data.",
        "Loaders that skip CRC checks load it anyway; the data as stored was scanned.",
    ),
    Rule(
        "MLV203",
        "zip-name-mismatch",
        Severity.MEDIUM,
        "A zip member's local header and central directory disagree.",
        "Different zip readers see different files: a classic scanner-evasion trick.",
    ),
    Rule(
        "MLV204",
        "zip-extra-data",
        Severity.LOW,
        "A zip has data before its first member or after its end record.",
        "The file can be a polyglot (also a pickle, ...); every format found was scanned.",
    ),
    Rule(
        "MLV205",
        "zip-malformed",
        Severity.MEDIUM,
        "A zip's structure is damaged (bad offsets, truncated headers, ...).",
        "What could be located was scanned; a tolerant loader may read more.",
    ),
    Rule(
        "MLV301",
        "unsupported",
        Severity.MEDIUM,
        "A recognised container or format could not be read.",
        "Encrypted, compressed with an unknown method, or a format this scanner does not "
        "parse: nothing was verified inside. Let the policy decide.",
    ),
    Rule(
        "MLV302",
        "resource-limit",
        Severity.HIGH,
        "Scanning stopped at a safety limit (decompression bomb, depth, size).",
        "The file decompresses or nests beyond the configured bounds.",
    ),
    Rule(
        "MLV401",
        "safetensors-invalid",
        Severity.MEDIUM,
        "A safetensors header is inconsistent (bounds, offsets, overlaps, dtypes).",
        "safetensors carries no code, but a malformed header targets parser bugs.",
    ),
    Rule(
        "MLV501",
        "keras-lambda",
        Severity.CRITICAL,
        "A Keras model contains a Lambda layer (marshalled Python bytecode).",
        "Lambda layers run arbitrary Python when the model is loaded or called.",
    ),
    Rule(
        "MLV601",
        "gguf-template-injection",
        Severity.HIGH,
        "A GGUF chat template uses Jinja constructs that reach Python internals.",
        "Server-side template injection: the template is rendered by the runtime.",
    ),
    Rule(
        "MLV701",
        "onnx-external-path",
        Severity.HIGH,
        "An ONNX tensor's external data location escapes the model directory.",
        "Absolute paths or '..' make the runtime read arbitrary files.",
    ),
    Rule(
        "MLV702",
        "onnx-custom-domain",
        Severity.LOW,
        "An ONNX model imports a custom operator domain.",
        "Custom operators need a native library registered with the runtime; review it.",
    ),
    Rule(
        "MLV901",
        "savedmodel-dangerous-op",
        Severity.HIGH,
        "A TensorFlow SavedModel graph uses an op that runs Python or touches files.",
        "PyFunc-family ops call Python; ReadFile/WriteFile/MatchingFiles reach the file system.",
    ),
    Rule(
        "MLV801",
        "torchscript-code",
        Severity.MEDIUM,
        "A TorchScript archive contains code that references Python or the OS.",
        "TorchScript code runs when the module is loaded with torch.jit.load.",
    ),
]

RULES: dict[str, Rule] = {r.id: r for r in _RULES}
