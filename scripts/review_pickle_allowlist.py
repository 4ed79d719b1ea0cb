#!/usr/bin/env python3
"""The reviewer's decisions applied to the harvested pickle allowlist (run after
scripts/harvest_pickle_globals.py, by a developer with the libraries installed):

    .venv/bin/python scripts/review_pickle_allowlist.py mlverify/_internal/scan/data/pickle_allowlist.json

Each decision is here, in one place, with its reason in the entry's note: loaders that the
scanner reads through (``loads``), construct-only classes (``new_only``), state callables,
entries the harvest cannot see (date offsets, dtype constants, legacy tensor types), and the
public names of allowed classes that configs use. Live objects of the installed libraries
resolve names; nothing is imported from a file that is scanned.
"""

import json
import sys

p = sys.argv[1] if len(sys.argv) > 1 else "mlverify/_internal/scan/data/pickle_allowlist.json"
d = json.load(open(p))
e = d["entries"]; rf = d["reviewed_findings"]
rf.pop("torch.storage._load_from_bytes", None)
e["torch.storage._load_from_bytes"] = {"kind": "function", "loads": [0], "note": "torch.load(io.BytesIO(b)) of its argument: allowed only because the scanner always reads those bytes as a nested file (loads), whatever they start with"}
for n in list(rf):
    if rf[n].startswith("construct-only"):
        e[n] = {"kind": "class", "new_only": True, "note": rf.pop(n)}
for cls in ("NDArrayWrapper", "ZNDArrayWrapper"):
    rf.pop(f"joblib.numpy_pickle.{cls}", None)
    e.pop(f"joblib.numpy_pickle.{cls}", None)
    d["aliases"][f"joblib.numpy_pickle.{cls}"] = f"joblib.numpy_pickle_compat.{cls}"
    n = f"joblib.numpy_pickle_compat.{cls}"
    e[n] = {"kind": "class", "note": "joblib < 0.10: joblib loads the sibling file the state names (np.load with allow_pickle=True, or zlib data); the scanner requires a plain file name (MLV112), and that file is scanned as part of the artifact"}
e["functools.partial"]["state_calls"] = [0]
if "numpy.vectorize" in e:
    e["numpy.vectorize"]["state_calls"] = ["pyfunc"]
extra = {
    "argparse.Namespace": "Namespace(**kwargs) only sets attributes; training checkpoints store their arguments as one (reviewed: no calls, no files)",
    "xgboost.callback.EarlyStopping": "a training callback's settings (rounds, metric name, ...): __init__ and BUILD set attributes only",
    "pandas._libs.tslibs.offsets.Day": "a date offset: Day(n, normalize) holds two numbers",
}
for n in ['pandas._libs.tslibs.offsets.BHalfYearBegin', 'pandas._libs.tslibs.offsets.BHalfYearEnd', 'pandas._libs.tslibs.offsets.BQuarterBegin', 'pandas._libs.tslibs.offsets.BQuarterEnd', 'pandas._libs.tslibs.offsets.BYearBegin', 'pandas._libs.tslibs.offsets.BYearEnd', 'pandas._libs.tslibs.offsets.BaseOffset', 'pandas._libs.tslibs.offsets.BusinessHour', 'pandas._libs.tslibs.offsets.BusinessMonthBegin', 'pandas._libs.tslibs.offsets.BusinessMonthEnd', 'pandas._libs.tslibs.offsets.CustomBusinessDay', 'pandas._libs.tslibs.offsets.CustomBusinessHour', 'pandas._libs.tslibs.offsets.CustomBusinessMonthBegin', 'pandas._libs.tslibs.offsets.CustomBusinessMonthEnd', 'pandas._libs.tslibs.offsets.Easter', 'pandas._libs.tslibs.offsets.FY5253', 'pandas._libs.tslibs.offsets.FY5253Quarter', 'pandas._libs.tslibs.offsets.HalfYearBegin', 'pandas._libs.tslibs.offsets.HalfYearEnd', 'pandas._libs.tslibs.offsets.LastWeekOfMonth', 'pandas._libs.tslibs.offsets.Micro', 'pandas._libs.tslibs.offsets.Milli', 'pandas._libs.tslibs.offsets.Minute', 'pandas._libs.tslibs.offsets.MonthBegin', 'pandas._libs.tslibs.offsets.Nano', 'pandas._libs.tslibs.offsets.QuarterBegin', 'pandas._libs.tslibs.offsets.QuarterEnd', 'pandas._libs.tslibs.offsets.Second', 'pandas._libs.tslibs.offsets.SemiMonthBegin', 'pandas._libs.tslibs.offsets.SemiMonthEnd', 'pandas._libs.tslibs.offsets.Tick', 'pandas._libs.tslibs.offsets.WeekOfMonth', 'pandas._libs.tslibs.offsets.YearBegin', 'pandas._libs.tslibs.offsets.YearEnd']:
    extra.setdefault(n, "a pandas date offset (Cython): holds counts, flags and calendar data; reconstruction sets them only")
for n, note in extra.items():
    e.setdefault(n, {"kind": "class", "note": note})
e["numpy.memmap"] = {"kind": "class", "new_only": True, "note": "memmap(filename, ...) opens a file; pickles of a memmap reconstruct a plain array through numpy's _reconstruct (ndarray.__new__ of the subtype, no file) and BUILD"}
import torch
for a in dir(torch):
    v = getattr(torch, a, None)
    if isinstance(v, (torch.dtype, torch.qscheme)):
        e.setdefault(f"torch.{a}", {"kind": "function", "note": "a torch dtype or quantisation scheme constant (pickled by name; not callable)"})
d["entries"] = dict(sorted(e.items()))
d["aliases"] = dict(sorted(d["aliases"].items()))
json.dump(d, open(p, "w"), indent=1, ensure_ascii=False)
open(p, "a").write("\n")

# public names of allowed classes (configs such as Hydra's _target_ name them so), resolved from
# the live modules of the installed libraries: an alias only where the object is the entry itself
import importlib, inspect, warnings
warnings.simplefilter("ignore")
PUBLIC = ["torch", "torch.nn", "torch.optim", "torch.optim.lr_scheduler", "torch.utils.data",
          "torch.nn.functional", "torch.amp", "sklearn.linear_model", "sklearn.ensemble",
          "sklearn.preprocessing", "sklearn.pipeline", "sklearn.tree", "sklearn.svm",
          "sklearn.cluster", "sklearn.decomposition", "sklearn.neighbors", "sklearn.compose",
          "sklearn.impute", "sklearn.feature_extraction.text", "sklearn.model_selection",
          "sklearn.naive_bayes", "sklearn.neural_network", "numpy", "pandas", "xgboost",
          "lightgbm", "collections", "datetime"]
added = 0
for modname in PUBLIC:
    try:
        mod = importlib.import_module(modname)
    except Exception:
        continue
    for attr in dir(mod):
        if attr.startswith("_"):
            continue
        try:
            obj = getattr(mod, attr)
        except Exception:
            continue
        if not inspect.isclass(obj):
            continue
        target = f"{obj.__module__}.{obj.__qualname__}"
        written = f"{modname}.{attr}"
        if target in d["entries"] and written != target and written not in d["entries"]:
            if written not in d["aliases"]:
                d["aliases"][written] = target
                added += 1
d["aliases"] = dict(sorted(d["aliases"].items()))
json.dump(d, open(p, "w"), indent=1, ensure_ascii=False)
open(p, "a").write("\n")
print("public aliases added:", added)

# legacy tensor types (torch.FloatTensor, ...): pickled by reference in legacy checkpoints
import torch
for a in dir(torch):
    if a.endswith("Tensor") and a[:1].isupper():
        obj = getattr(torch, a, None)
        if isinstance(obj, type) and f"torch.{a}" not in d["entries"]:
            d["entries"][f"torch.{a}"] = {"kind": "class", "note": "a legacy tensor type, pickled by reference (legacy checkpoints' tensor records); calling it makes an empty tensor"}
d["entries"] = dict(sorted(d["entries"].items()))
json.dump(d, open(p, "w"), indent=1, ensure_ascii=False)
open(p, "a").write("\n")
