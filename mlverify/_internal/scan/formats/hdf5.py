"""HDF5 (Keras 2 / legacy ``.h5`` models, ``model.weights.h5``, plain weight files).

Read with ``h5py`` (the HDF5 library) in a child process (``_h5probe.py``: the library
can crash on hostile files): attributes, link kinds and dataset layouts only, never data,
never a filter or plugin call. A ``model_config`` (and ``training_config``)
attribute is JSON-decoded and judged as Keras (``formats/keras.py``). An HDF5 file
without one is data. External links, external raw storage and virtual datasets make a
reader open other files of the loading host: findings.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from mlverify._internal.scan import dispatch
from mlverify._internal.scan.context import ScanContext
from mlverify._internal.scan.formats import keras
from mlverify._internal.scan.formats.chat_template import file_name
from mlverify._internal.scan.model import Severity
from mlverify._internal.scan.rules import RESOURCE_LIMIT, UNSUPPORTED, Rule
from mlverify._internal.scan.source import FileSource, Source, Stream, materialize

HDF5_EXTERNAL_FILE = Rule(
    "MLV506",
    "hdf5-external-file",
    Severity.HIGH,
    "An HDF5 file links to or stores data in other files (external link, external "
    "storage, virtual dataset).",
    "Reading the dataset opens a file of the loading host named by the model.",
)
RULES = (HDF5_EXTERNAL_FILE,)

SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: names of files HDF5 readers open (Keras, h5py, netCDF-4, MATLAB v7.3)
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".h5py", ".keras", ".nc", ".nc4", ".mat")
HEAD = 4096  # the head the engine gives detect (it is all the content when shorter)
MAX_OBJECTS = 1_000_000


def signature_offset(head: bytes, src: Source) -> int | None:
    """Where the HDF5 superblock is: at 0, or after a user block of 512 * 2**k bytes
    (whatever precedes it: the library, and so h5py and Keras, finds it there).

    A file is searched to its end (read where the signature could be). A stream (a
    compressed member) is searched to its end when its name is one HDF5 readers open
    (``model.weights.h5`` in a ``.keras`` archive, ``*.hdf5``, MATLAB ``*.mat``, ...), read
    forward to each place (its inflation is charged to the file's budget a second time);
    any other stream in its head (user blocks up to 2 KiB).
    """
    if (
        type(src) is FileSource
        and (src.size or 0) <= len(head)
        and SIGNATURE not in head
        and not dispatch.general()
    ):
        return None  # all of a file in its head: the loop below finds the signature in it
    off = 0
    stream: Stream | None = None
    at = 0  # where the stream is
    while True:
        if off + 8 <= len(head):
            found = head[off : off + 8]
        elif isinstance(src, FileSource):
            if off + 8 > (src.size or 0):
                return None
            found = src.read_at(off, 8)
        elif len(head) < HEAD or (src.size is not None and off + 8 > src.size):
            return None  # the head is all there is
        elif not file_name(src).lower().endswith(HDF5_SUFFIXES):
            return None  # a stream not named as HDF5: its head only (no second inflation)
        else:
            try:
                if stream is None:
                    stream = src.open()
                if stream.skip(off - at) < off - at:
                    return None
                found = stream.read(8)
            except (ValueError, EOFError, OSError):
                return None  # a damaged stream: no reader finds a superblock past the damage
            at = off + len(found)
        if found == SIGNATURE:
            return off
        if len(found) < 8:
            return None
        off = 512 if off == 0 else off * 2


PROBE_TIMEOUT = 120  # seconds for the HDF5 library to read one file's metadata


class Hdf5Scanner:
    name = "hdf5"

    def detect(self, head: bytes, src: Source, deep: bool) -> bool:
        return signature_offset(head, src) is not None

    def scan(self, src: Source, ctx: ScanContext, depth: int) -> None:
        label = src.label
        facts = _probe(src, ctx)
        if "error" in facts:
            ctx.format("hdf5")
            what = "h5py" if facts.get("missing") else "the HDF5 library"
            msg = f"HDF5 file: {what} could not read it ({facts['error']}): not verified"
            ctx.add(UNSUPPORTED, label, None, "hdf5", msg)
            return
        for attr, why in facts["config_errors"].items():
            ctx.format("keras-h5")
            ctx.add(RESOURCE_LIMIT, label, None, attr, f"the {attr} attribute {why}")
        for attr, b64 in facts["configs"].items():
            ctx.format("keras-h5")
            raw = base64.b64decode(b64)
            if not keras.judge_text(raw, ctx, label, depth, attr):
                msg = f"the {attr} attribute is not JSON: not verified"
                ctx.add(UNSUPPORTED, label, None, attr, msg)
        for name, what in facts["external"]:
            _external(ctx, label, name, what)
        if facts["too_many"]:
            msg = f"HDF5 file has over {MAX_OBJECTS} links; the rest was not checked"
            ctx.add(RESOURCE_LIMIT, label, None, "hdf5", msg)


def _probe(src: Source, ctx: ScanContext) -> dict[str, Any]:
    """Run ``_h5probe`` on the source in a child process (a crash there is a finding)."""
    import importlib.util
    import subprocess
    import sys
    import tempfile

    try:
        found = importlib.util.find_spec("h5py") is not None
    except (ValueError, ImportError):  # a module set to None (blocked) counts as missing
        found = False
    if not found:
        return {"error": "h5py is not installed (pip install h5py)", "missing": True}
    fsrc = src if isinstance(src, FileSource) else materialize(src, ctx.limits.max_decompressed)
    name = getattr(fsrc.f, "name", None)
    tmp = None
    if isinstance(name, str) and os.path.isfile(name):
        path, base = name, fsrc.base
    else:  # in memory or spooled: a private copy for the child
        tmp = tempfile.NamedTemporaryFile(prefix="mlverify-h5-", delete=False)  # noqa: SIM115
        with tmp:
            stream = fsrc.open()
            while chunk := stream.read(1 << 20):
                tmp.write(chunk)
        path, base = tmp.name, 0
    # the probe runs as a script: only the standard library and h5py are imported there
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_h5probe.py")
    cmd = [sys.executable, script, path, str(base), str(fsrc.size)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"no answer within {PROBE_TIMEOUT} s"}
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return {"error": f"the reader died ({how})"}
    try:
        facts: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        return {"error": "the reader gave no answer"}
    return facts


def _external(ctx: ScanContext, label: str, path: str, what: str) -> None:
    ctx.add(HDF5_EXTERNAL_FILE, label, None, path[:200], f"HDF5 object {path[:200]!r}: {what}")
