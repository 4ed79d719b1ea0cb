"""The stable rule catalogue: ids never change meaning once published.

A rule is a constant carrying its id, name, default severity and help text. The
rules of the engine, the pickle walker and the zip reader are here; each format in
``mlverify._internal.scan.formats`` declares its own rules in its file (``RULES`` there), and
``mlverify._internal.scan.formats.catalogue()`` joins them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlverify._internal.scan.model import Severity


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: Severity  # default; some findings raise or lower it
    summary: str
    help: str


PICKLE_DANGEROUS_IMPORT = Rule(
    "MLV101",
    "pickle-dangerous-import",
    Severity.CRITICAL,
    "A pickle imports a callable that can run code, touch files or the network.",
    "Do not load this file. The import is on the denylist of callables used by published "
    "attacks; a loader imports and may call it while unpickling.",
)
PICKLE_UNKNOWN_IMPORT = Rule(
    "MLV102",
    "pickle-unknown-import",
    Severity.MEDIUM,
    "A pickle imports a callable that is neither allowlisted nor known dangerous.",
    "Review the import; if it is a class of your own project, add it to the project's "
    "allowlist (policy), otherwise treat the file as untrusted.",
)
PICKLE_DYNAMIC_IMPORT = Rule(
    "MLV103",
    "pickle-dynamic-import",
    Severity.HIGH,
    "A pickle imports a name that cannot be resolved statically.",
    "STACK_GLOBAL or an import helper receives a computed name: the scanner cannot "
    "tell what is imported, so the file cannot be shown safe.",
)
PICKLE_REACHES_DANGEROUS = Rule(
    "MLV104",
    "pickle-reaches-dangerous",
    Severity.CRITICAL,
    "A chain of calls in a pickle reaches a dangerous callable.",
    "getattr / import helpers / attribute chains resolve to a callable on the denylist.",
)
PICKLE_INDIRECT_CALL = Rule(
    "MLV105",
    "pickle-indirect-call",
    Severity.HIGH,
    "A pickle calls the result of another call or an unknown object.",
    "Ordinary pickles only call imported classes and functions; calling a computed value "
    "is the shape of gadget chains.",
)
PICKLE_BUILD_ON_GLOBAL = Rule(
    "MLV106",
    "pickle-build-on-global",
    Severity.HIGH,
    "A pickle's BUILD sets state on an imported global rather than on a new object.",
    "BUILD on a module-level object mutates it (__setstate__ / setattr abuse).",
)
PICKLE_PERSISTENT_ID = Rule(
    "MLV107",
    "pickle-persistent-id",
    Severity.LOW,
    "A pickle hands a persistent id to the loader outside a known storage layout.",
    "What happens depends on the loader's persistent_load; review the loader.",
)
PICKLE_CANNOT_FOLLOW = Rule(
    "MLV108",
    "pickle-cannot-follow",
    Severity.MEDIUM,
    "A pickle stream could not be followed to its end, or is not a complete pickle.",
    "Either the stream breaks where every loader stops (opcodes before the break run and "
    "were analysed, but the file is not a whole pickle), loaders read it differently (a value "
    "crossing a frame's end), or the scanner cannot tell how a loader reads on (a joblib array "
    "it cannot size, a limit): the rest was searched for imports, and the file cannot be "
    "shown safe.",
)
NESTED_PAYLOAD = Rule(
    "MLV109",
    "nested-payload",
    Severity.INFO,
    "A bytes or string value inside the file is itself a loadable format.",
    "The nested content was scanned too; findings inside it are reported with the "
    "nested member path.",
)
PICKLE_EXTENSION_IMPORT = Rule(
    "MLV110",
    "pickle-extension-import",
    Severity.HIGH,
    "A pickle imports through the copyreg extension registry (EXT1/EXT2/EXT4).",
    "The imported callable depends on the loading process's registry and cannot be "
    "checked statically.",
)
JOBLIB_EXTERNAL_ARRAY = Rule(
    "MLV112",
    "joblib-external-array",
    Severity.HIGH,
    "An old joblib array wrapper names a file for joblib to load with allow_pickle=True.",
    "joblib < 0.10 stored arrays in sibling .npy files and loads them with allow_pickle=True: "
    "a path that is not a plain sibling name loads (and unpickles) a file the scan never saw "
    "(high); a plain name is medium: the pickle cannot be shown safe on its own (the file "
    "is not followed from it): check the directory holding both, and review the pair.",
)
ZIP_FLAG_BITS = Rule(
    "MLV201",
    "zip-flag-bits",
    Severity.LOW,
    "A zip member sets general-purpose flag bits (encryption, patched data, ...).",
    "Loaders such as torch.load ignore these bits while many scanners stop on them; the "
    "member was read as if unencrypted.",
)
ZIP_CRC_MISMATCH = Rule(
    "MLV202",
    "zip-crc-mismatch",
    Severity.LOW,
    "A zip member's CRC-32 does not match its data.",
    "Loaders that skip CRC checks load it anyway; the data as stored was scanned.",
)
ZIP_NAME_MISMATCH = Rule(
    "MLV203",
    "zip-name-mismatch",
    Severity.MEDIUM,
    "A zip member's local header and central directory disagree.",
    "Different zip readers see different files: a classic scanner-evasion trick.",
)
ZIP_EXTRA_DATA = Rule(
    "MLV204",
    "zip-extra-data",
    Severity.LOW,
    "A zip has data before its first member or after its end record.",
    "The file can be a polyglot (also a pickle, ...); every format found was scanned.",
)
ZIP_MALFORMED = Rule(
    "MLV205",
    "zip-malformed",
    Severity.MEDIUM,
    "A zip's structure is damaged (bad offsets, truncated headers, ...).",
    "What could be located was scanned; a tolerant loader may read more.",
)
UNSUPPORTED = Rule(
    "MLV301",
    "unsupported",
    Severity.MEDIUM,
    "A recognised container or format could not be read.",
    "Encrypted, compressed with an unknown method, or a format this scanner does not "
    "parse: nothing was verified inside. Let the policy decide.",
)
RESOURCE_LIMIT = Rule(
    "MLV302",
    "resource-limit",
    Severity.HIGH,
    "Scanning stopped at a safety limit (decompression bomb, depth, size).",
    "The file decompresses or nests beyond the configured bounds.",
)

#: rules emitted by the engine, the pickle walker and the zip reader (by id)
CORE: tuple[Rule, ...] = (
    PICKLE_DANGEROUS_IMPORT,
    PICKLE_UNKNOWN_IMPORT,
    PICKLE_DYNAMIC_IMPORT,
    PICKLE_REACHES_DANGEROUS,
    PICKLE_INDIRECT_CALL,
    PICKLE_BUILD_ON_GLOBAL,
    PICKLE_PERSISTENT_ID,
    PICKLE_CANNOT_FOLLOW,
    NESTED_PAYLOAD,
    PICKLE_EXTENSION_IMPORT,
    JOBLIB_EXTERNAL_ARRAY,
    ZIP_FLAG_BITS,
    ZIP_CRC_MISMATCH,
    ZIP_NAME_MISMATCH,
    ZIP_EXTRA_DATA,
    ZIP_MALFORMED,
    UNSUPPORTED,
    RESOURCE_LIMIT,
)


_CORE_BY_ID = {r.id: r for r in CORE}


def by_id(rule_id: str, severity: Severity, message: str) -> Rule:
    """The core rule a component reports by id (the pickle walker, the zip reader).

    An id missing from the core rules still yields a finding (never dropped): a rule
    named after the id, described by the message.
    """
    found = _CORE_BY_ID.get(rule_id)
    if found is not None:
        return found
    return Rule(rule_id, rule_id.lower(), severity, message, message)
