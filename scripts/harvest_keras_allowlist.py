"""Write mlverify/_internal/scan/data/keras_allowlist.json from the installed Keras 3.

    KERAS_BACKEND=torch python scripts/harvest_keras_allowlist.py

The allowlist holds every modelling object Keras's own loader resolves: the public API
names of layers, activations, initializers, regularizers, constraints, losses, metrics,
optimizers (and schedules), dtype policies, quantizers, random seed generators, ops and
the top-level model classes; and the internal ``module.Class`` path of every
``KerasSaveable`` class defined in the importable ``keras.src`` modules (what
``"module": "keras.src...."`` in a config resolves to). Objects that run code, read
files or load other models are left out here and denied by name in the scanner
(mlverify/_internal/scan/formats/keras.py: ``DENIED``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

CATEGORIES = (
    "keras.layers.", "keras.activations.", "keras.initializers.", "keras.regularizers.",
    "keras.constraints.", "keras.losses.", "keras.metrics.", "keras.optimizers.",
    "keras.dtype_policies.", "keras.quantizers.", "keras.random.", "keras.ops.",
)  # fmt: skip
TOP_LEVEL = (
    "keras.Sequential", "keras.Model", "keras.Layer", "keras.DTypePolicy",
    "keras.FloatDTypePolicy", "keras.Loss", "keras.Metric", "keras.Optimizer",
    "keras.Regularizer", "keras.Initializer", "keras.Quantizer", "keras.InputSpec",
    "keras.Variable", "keras.KerasTensor", "keras.Operation", "keras.Function",
    "keras.models.Sequential", "keras.models.Model",
)  # fmt: skip
NEVER = ("keras.layers.Lambda", "keras.layers.TorchModuleWrapper", "keras.layers.TFSMLayer",
         "keras.layers.JaxLayer", "keras.layers.FlaxLayer")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    import argparse

    import keras
    from keras.src import api_export
    from keras.src.saving.keras_saveable import KerasSaveable
    from keras.src.saving.serialization_lib import BUILTIN_MODULES, NON_MODELING_APIS

    registry = api_export.REGISTERED_NAMES_TO_OBJS
    never = {id(registry[n]) for n in NEVER if n in registry}
    public = sorted(
        n
        for n, obj in registry.items()
        if (n.startswith(CATEGORIES) or n in TOP_LEVEL) and id(obj) not in never
    )
    internal: set[str] = set()
    for info in pkgutil.walk_packages(keras.src.__path__, "keras.src."):
        if ".tests" in info.name or info.name.endswith("_test"):
            continue
        try:
            mod = importlib.import_module(info.name)
        except Exception:  # other backends (tensorflow, jax) are not installed: skipped
            continue
        for name, obj in vars(mod).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, KerasSaveable)
                and obj.__module__ == info.name
                and id(obj) not in never
            ):
                internal.add(f"{info.name}.{name}")
    functions = sorted(
        n.rpartition(".")[2]
        for n in public
        if n.split(".")[1] in BUILTIN_MODULES and inspect.isfunction(registry[n])
    )
    doc = {
        "keras_version": keras.__version__,
        "public": public,
        "internal": sorted(internal),
        "builtin_functions": sorted(set(functions)),
        # tf.keras 2 names its legacy loader maps onto these classes (mixed precision)
        "keras2_names": ["Policy"],
        # what Keras's own loader refuses as non-modelling (files, saving, global state)
        "non_modeling": sorted(NON_MODELING_APIS),
    }
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = (
        Path(__file__).resolve().parents[1] / "mlverify/_internal/scan/data/keras_allowlist.json"
    )
    ap.add_argument("--out", type=Path, default=default)
    out = ap.parse_args(argv).out
    out.write_text(json.dumps(doc, indent=0) + "\n")
    print(f"{out}: {len(public)} public, {len(internal)} internal, {len(functions)} functions")


if __name__ == "__main__":
    sys.exit(main())
