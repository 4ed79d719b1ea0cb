"""skops samples: benign files written by ``skops.io.dump``, attacks as edited schemas.

Nothing is loaded with ``skops.io.load``; the attack payloads name callables, never run.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.scan.format_samples import Sample


def skops_zip(
    schema: Any, members: dict[str, str | bytes] | None = None, raw: bytes | None = None
) -> bytes:
    """A zip holding ``schema.json`` (``schema`` as JSON, or ``raw``) and ``members``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("schema.json", raw if raw is not None else json.dumps(schema))
        for name, data in (members or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def parts(data: bytes) -> tuple[dict[str, Any], dict[str, str | bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        schema = json.loads(z.read("schema.json"))
        members: dict[str, str | bytes] = {n: z.read(n) for n in z.namelist() if n != "schema.json"}
    return schema, members


def node(cls: str, module: str, loader: str, **extra: Any) -> dict[str, Any]:
    return {"__class__": cls, "__module__": module, "__loader__": loader, **extra}


def skops_samples(out: Path) -> list[Sample]:
    """Benign skops files and edited ones (when skops and scikit-learn are installed)."""
    from tests.scan.format_samples import Sample, _importable

    if not (_importable("skops.io") and _importable("sklearn")):
        return []
    import numpy as np
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    X, y = rng.rand(20, 3), (rng.rand(20) > 0.5).astype(int)
    pipe = sio.dumps(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y))
    ufunc = sio.dumps(FunctionTransformer(np.log1p))
    values = sio.dumps({"a": np.arange(4), "g": np.random.default_rng(0), "s": {1, 2}})

    def edit(data: bytes, path: tuple[str, ...], **fields: Any) -> bytes:
        schema, members = parts(data)
        target = schema
        for key in path:
            target = target[key]
        target.update(fields)
        return skops_zip(schema, members)

    func = ("content", "content", "func")
    cases: dict[str, tuple[bytes, str | None]] = {
        "pipeline.skops": (pipe, None),
        "ufunc.skops": (ufunc, None),
        "values.skops": (values, None),
        "object_os_system.skops": (edit(pipe, (), __module__="os", __class__="system"), "MLV1401"),
        "function_eval.skops": (
            edit(ufunc, func, __module__="builtins", __class__="eval"),
            "MLV1401",
        ),
        "unknown_loader.skops": (edit(pipe, (), __loader__="EvilNode"), "MLV1402"),
        "bad_protocol.skops": (edit(pipe, (), protocol=99), "MLV1402"),
    }
    samples = []
    for name, (data, rule) in cases.items():
        p = out / name
        p.write_bytes(data)
        samples.append(Sample("skops", name, p, rule))
    return samples
