"""Write mlverify/_internal/scan/data/skops_trusted.json from the installed skops.

    python scripts/harvest_skops_trusted.py [--out FILE] [--check]

``skops.io.load`` refuses a file holding a type its node loader does not trust by default
(``get_untrusted_types`` lists them; users routinely pass that list back as ``trusted=``).
The defaults are per loader (``Node._get_trusted(trusted, default)`` in each node class's
``__init__``), several built at import time from the installed scikit-learn, NumPy and SciPy
(every estimator, every ufunc, every dtype, the bit generators). This script mirrors each
loader's default as the skops source reads (``skops/io/_general.py``, ``_numpy.py``,
``_scipy.py``, ``_sklearn.py``, ``_quantile_forest.py``, ``old/``), taking the lists from
skops itself, and records the fixed constructor type the reduce-based loaders check. It is
run by a developer, never at install or scan time; ``tests/scan/test_formats_skops.py``
compares the scanner's names with ``get_untrusted_types`` on real and crafted files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "mlverify/_internal/scan/data/skops_trusted.json"


def harvest() -> dict[str, Any]:
    import numpy as np
    import scipy
    import sklearn
    import skops
    from skops.io import _audit, _persist  # noqa: F401  (registers every node type)
    from skops.io import _sklearn as sk
    from skops.io import _trusted_types as tt
    from skops.io._protocol import PROTOCOL
    from skops.io._utils import get_module, get_type_paths

    try:
        from scipy.sparse import sparray as _sparray
    except ImportError:  # pragma: no cover
        _sparray = None
    from scipy.sparse import spmatrix

    dtype_names = list(tt.NUMPY_DTYPE_TYPE_NAMES)
    type_node = tt.PRIMITIVE_TYPE_NAMES + tt.CONTAINER_TYPE_NAMES + dtype_names
    losses = [get_module(x) + "." + x.__name__ for x in sk.ALLOWED_LOSSES]
    sparse: list[Any] = [spmatrix] + ([_sparray] if _sparray is not None else [])

    def paths(v: Any) -> list[str]:
        return sorted(set(get_type_paths(v)))

    tree = f"{get_module(sk.Tree)}.Tree"
    ufuncs = tt.NUMPY_UFUNC_TYPE_NAMES
    loaders: dict[str, dict[str, Any]] = {
        "DictNode": {"trusted": paths([dict, "collections.OrderedDict"])},
        # DefaultDictNode sets its trusted list outright: the caller's trusted is ignored
        "DefaultDictNode": {"trusted": ["collections.defaultdict"], "fixed": True},
        "ListNode": {"trusted": paths([list])},
        "SetNode": {"trusted": paths([set])},
        "TupleNode": {"trusted": paths([tuple])},
        "BytesNode": {"trusted": paths([bytes])},
        "BytearrayNode": {"trusted": paths([bytearray])},
        # SliceNode.get_unsafe_set is empty: it builds slice(start, stop, step) whatever it names
        "SliceNode": {"trusted": paths([slice]), "always_safe": True},
        "FunctionNode": {"trusted": sorted({*tt.SCIPY_UFUNC_TYPE_NAMES, *ufuncs})},
        "MethodNode": {"trusted": []},
        "PartialNode": {"trusted": []},
        "TypeNode": {"trusted": sorted(set(type_node))},
        "ConstructorFromReduceNode": {"trusted": []},
        "ObjectNode": {
            "trusted": sorted({*tt.SKLEARN_ESTIMATOR_TYPE_NAMES, *tt.SKLEARN_INTERNAL_TYPE_NAMES})
        },
        "JsonNode": {"trusted": [], "always_safe": True},
        "OperatorFuncNode": {"trusted": []},
        "NdArrayNode": {"trusted": paths([np.ndarray, *dtype_names])},
        "MaskedArrayNode": {"trusted": paths([np.ma.MaskedArray])},
        "RandomStateNode": {"trusted": paths([np.random.RandomState])},
        "RandomGeneratorNode": {"trusted": paths([np.random.Generator])},
        "DTypeNode": {"trusted": []},
        "SparseMatrixNode": {"trusted": paths(sparse)},
        # reduce-based loaders also judge their constructor as a TypeNode, trusting the
        # TypeNode defaults plus what the node trusts
        "TreeNode": {"trusted": [], "constructor": tree},
        "LossNode": {"trusted": sorted(losses), "constructor": "self"},
        "QuantileForestNode": {
            "trusted": [],
            "constructor": "quantile_forest._quantile_forest_fast.QuantileForest",
        },
        "CachedNode": {"trusted": []},
    }  # fmt: skip
    registered = {name for name, _ in _audit.NODE_TYPE_MAPPING}
    missing = registered - set(loaders)
    extra = set(loaders) - registered - {"QuantileForestNode"}  # optional dependency
    if missing or extra:
        raise SystemExit(f"skops loaders changed: new {sorted(missing)}, gone {sorted(extra)}")
    old: dict[str, dict[str, Any]] = {}
    for name, proto in sorted(_audit.NODE_TYPE_MAPPING):
        if proto == PROTOCOL:
            continue
        entry = old.setdefault(str(proto), {})
        if name == "FunctionNode" and proto == 0:
            # _general_v0 trusts the SciPy ufuncs only, and imports (and judges) the name in
            # its content: module_path + "." + function, not __module__/__class__
            entry[name] = {
                "trusted": sorted(set(tt.SCIPY_UFUNC_TYPE_NAMES)),
                "name": ["module_path", "function"],
            }
        elif name == "RandomGeneratorNode":  # _numpy_v0 / _v1: the same default
            entry[name] = loaders[name]
        else:
            raise SystemExit(f"an old skops loader is not mirrored here: {name} v{proto}")
    return {
        "about": (
            "skops.io default trusted types per node loader (get_untrusted_types reports "
            "what is not here); harvested by scripts/harvest_skops_trusted.py, never at run time"
        ),
        "version": datetime.date.today().strftime("%Y.%m.%d") + ".1",
        "harvested_with": {
            "python": sys.version.split()[0],
            "skops": skops.__version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
        },
        "protocol": PROTOCOL,
        "loaders": loaders,
        "old_protocols": old,
        "bit_generators": sorted(tt.NUMPY_RANDOM_BIT_GENERATOR_TYPE_NAMES),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="exit 1 if the shipped data differs")
    args = ap.parse_args(argv)
    data = harvest()
    if args.check:
        shipped = json.loads(OUT.read_text())
        keys = ("protocol", "loaders", "old_protocols", "bit_generators")
        if any(shipped.get(k) != data[k] for k in keys):
            print(f"{OUT} differs from the installed skops: regenerate it", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
