"""Format scanners, one file per format, registered in one place (``SCANNERS``).

Each scanner says whether it recognises a source from its first bytes (``detect``)
and then scans it (``scan``), adding findings to the ``ScanContext`` and recursing
into members through ``ScanContext.scan``. Each format file declares its rules
(``RULES``). A new format is one new file plus one line here.
"""

from __future__ import annotations

from mlverify._internal.scan.context import FormatScanner
from mlverify._internal.scan.formats import (
    chat_template,
    code,
    compressed,
    configs,
    gguf,
    hdf5,
    keras,
    lfs,
    npy,
    onnx,
    pickle,
    rds,
    safetensors,
    savedmodel,
    sevenzip,
    skops,
    tar,
    torchscript,
    zip,
)
from mlverify._internal.scan.rules import CORE, Rule

#: every format scanner, in detection order; a polyglot matches several.
SCANNERS: list[FormatScanner] = [
    zip.ZipScanner(),
    npy.NpyScanner(),
    safetensors.SafetensorsScanner(),
    sevenzip.SevenZipScanner(),
    tar.TarScanner(),
    hdf5.Hdf5Scanner(),
    gguf.GgufScanner(),
    rds.RdsScanner(),
    onnx.OnnxScanner(),
    savedmodel.SavedModelScanner(),
    savedmodel.KerasMetadataScanner(),
    savedmodel.SavedModelTextScanner(),
    lfs.LfsPointerScanner(),
    configs.ConfigScanner(),
    chat_template.ChatTemplateScanner(),
    code.CodeScanner(),
    compressed.CompressedScanner(),
    pickle.PickleScanner(),
]

_MODULES = (
    chat_template, code, compressed, configs, gguf, hdf5, keras, lfs, npy, onnx, pickle,
    rds, safetensors, savedmodel, sevenzip, skops, tar, torchscript, zip,
)  # fmt: skip

#: the rules the formats declare (the core ones are in mlverify._internal.scan.rules)
FORMAT_RULES: tuple[Rule, ...] = tuple(r for m in _MODULES for r in m.RULES)


def catalogue() -> dict[str, Rule]:
    """Every rule by id: the core ones and those each format declares."""
    out: dict[str, Rule] = {}
    for r in (*CORE, *FORMAT_RULES):
        if out.setdefault(r.id, r) is not r:
            raise AssertionError(f"rule id {r.id} declared twice")
    return out


__all__ = ["FORMAT_RULES", "SCANNERS", "catalogue"]
