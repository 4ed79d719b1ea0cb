#!/usr/bin/env python3
"""Write mlverify/_internal/scan/data/numpy_dtypes.json: how numpy sizes the dtype spellings a pickle
can hand to ``numpy.dtype(...)`` (run by a developer with numpy installed, never at install).

The scanner uses the table to skip exactly as many array bytes as joblib reads after a
NumpyArrayWrapper; a spelling that is not in the table (and not a sized ``S``/``U``/``V``
form) makes the stream "cannot follow" (a finding), never a guess.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "mlverify" / "_internal" / "scan" / "data" / "numpy_dtypes.json"


def probe(spelling: object) -> tuple[int, bool] | None:
    try:
        dt = np.dtype(spelling)  # type: ignore[call-overload]
    except (TypeError, ValueError, SyntaxError, DeprecationWarning):
        return None
    return int(dt.itemsize), bool(dt.hasobject)


def main() -> None:
    import warnings

    warnings.simplefilter("error", DeprecationWarning)
    spellings: dict[str, list[object]] = {}
    cands: set[str] = {k for k in np.sctypeDict if isinstance(k, str)}
    cands |= set(np.typecodes["All"])
    for kind in "biufcOMmSaUV?":
        for n in range(0, 33):
            cands.add(f"{kind}{n}")
    for unit in ("Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as", "generic"):
        for base in ("M8", "m8", "datetime64", "timedelta64"):
            cands.add(f"{base}[{unit}]")
    for c in sorted(cands):
        for prefix in ("", "<", ">", "|", "="):
            s = prefix + c
            got = probe(s)
            if got is not None:
                spellings[s] = [got[0], got[1]]
    scalar_types: dict[str, list[object]] = {}
    for t in set(np.sctypeDict.values()) | {float, int, bool, complex, object, str, bytes}:
        got = probe(t)
        if got is not None:
            scalar_types[f"{t.__module__}.{t.__qualname__}"] = [got[0], got[1]]
    data = {
        "schema": "mlverify-numpy-dtypes/1",
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "comment": "spelling -> [itemsize, hasobject] as numpy.dtype(spelling) gives; "
        "S<n>/a<n>/U<n>/V<n> beyond the table are sized by rule (n, n, 4n, n).",
        "spellings": dict(sorted(spellings.items())),
        "scalar_types": dict(sorted(scalar_types.items())),
    }
    lines = ["{"]
    for key in ("schema", "numpy", "python", "comment"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(data[key])},")
    for key in ("spellings", "scalar_types"):
        table = data[key]
        assert isinstance(table, dict)
        lines.append(f"  {json.dumps(key)}: {{")
        rows = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in table.items()]
        lines.append(",\n".join(rows))
        lines.append("  }," if key == "spellings" else "  }")
    lines.append("}")
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(spellings)} spellings, {len(scalar_types)} scalar types")


if __name__ == "__main__":
    main()
