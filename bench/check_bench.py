"""Benchmark: `mlverify check` against the sum of its parts and against its peers.

Builds a signed model (safetensors shards + a small benign pickle + config), then
times, interleaved round by round:
- `mlverify check` with a policy that requires the signature (no cache, then cached);
- its parts run one by one: `mlverify hash` + `mlverify scan` + `mlverify verify`;
- the peers' equivalent: `modelscan -p MODEL` + `model_signing verify key`.
Not a test: nothing asserts a time.

    .venv/bin/python bench/check_bench.py                   # 2 x 1 GiB shards
    .venv/bin/python bench/check_bench.py --file-mib 256 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import Case, run_rounds  # noqa: E402


def build(work: Path, files: int, file_mib: int) -> tuple[Path, Path, Path]:
    model = work / "model"
    model.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(8 << 20)
    for i in range(files):
        p = model / f"model-{i:05d}.safetensors"
        if p.exists() and p.stat().st_size == (file_mib << 20) + 16:
            continue
        with open(p, "wb") as f:
            # a valid safetensors header for one U8 tensor filling the file
            header = b'{"w":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}' % (
                file_mib << 20,
                file_mib << 20,
            )
            header += b" " * (-len(header) % 8)
            f.write(len(header).to_bytes(8, "little") + header)
            left = file_mib << 20
            while left:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n
        # trim the header padding mismatch in the size check above
    (model / "config.json").write_text('{"architectures": ["Bench"]}\n')
    # a benign pickle (an OrderedDict of plain values), written by pickle, only ever scanned
    from collections import OrderedDict

    (model / "training_args.bin").write_bytes(
        pickle.dumps(OrderedDict(lr=0.001, epochs=3, name="bench"), protocol=4)
    )
    keys = work / "keys"
    keys.mkdir(exist_ok=True)
    if not (keys / "k.key").exists():
        subprocess.run(
            [str(BIN / "mlverify"), "keygen", "--out", str(keys / "k")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    subprocess.run(
        [str(BIN / "mlverify"), "sign", str(model), "--key", str(keys / "k.key")],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    policy = work / "policy.yaml"
    policy.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata: {name: bench}\nspec:\n"
        f"  signatures:\n    required: true\n    trusted: [{{key: {keys / 'k.pub'}}}]\n"
    )
    return model, keys / "k.pub", policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--file-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mlverify-check-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model, pub, policy = build(work, args.files, args.file_mib)
    cache_home = work / "cache"
    os.environ["XDG_CACHE_HOME"] = str(cache_home)
    ml = str(BIN / "mlverify")
    # `check` exits 0 (allowed); the parts too.
    cases = [
        Case(
            "mlverify check (no cache)",
            [ml, "check", str(model), "--policy", str(policy), "--no-cache"],
            "check",
        ),
        Case("  part: mlverify hash", [ml, "hash", str(model)], "parts"),
        Case("  part: mlverify scan", [ml, "scan", str(model)], "parts"),
        Case("  part: mlverify verify", [ml, "verify", str(model), "--key", str(pub)], "parts"),
        Case(
            "mlverify check --cache (digest cache warm)",
            [ml, "check", str(model), "--policy", str(policy), "--cache"],
            "cached",
        ),
    ]
    modelscan = shutil.which("modelscan", path=str(BIN)) or shutil.which("modelscan")
    ms = shutil.which("model_signing", path=str(BIN)) or shutil.which("model_signing")
    ms_sig = work / "ms.sig"
    if modelscan and ms:
        subprocess.run(
            [ms, "sign", "key", str(model), "--private_key", str(pub.with_suffix(".key")),
             "--signature", str(ms_sig)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cases += [
            # modelscan: 0 clean, 1 issues, 3 nothing it can scan (safetensors are skipped)
            Case(
                "  peer: modelscan -p", [modelscan, "-p", str(model)], "peers", ok_codes=(0, 1, 3)
            ),
            Case(
                "  peer: model_signing verify key",
                [
                    ms,
                    "verify",
                    "key",
                    str(model),
                    "--public_key",
                    str(pub),
                    "--signature",
                    str(ms_sig),
                ],
                "peers",
            ),
        ]
    run_rounds(cases, args.rounds, warmup=[cases[4]])  # warm-up fills the digest cache
    total = sum(p.stat().st_size for p in model.iterdir())
    print(
        f"model: {args.files} x {args.file_mib} MiB safetensors + pickle + config = "
        f"{total / 1e9:.2f} GB, signed; {args.rounds} interleaved rounds, warm page cache\n"
    )
    print("| what | median wall (s) | peak RSS (MiB) |")
    print("|---|---:|---:|")
    med = {c.name: statistics.median(c.walls) if c.walls else float("nan") for c in cases}
    for c in cases:
        rss = max(c.rss_kib) / 1024 if c.rss_kib else float("nan")
        print(f"| {c.name} | {med[c.name]:.3f} | {rss:.0f} |")
    parts = sum(med[c.name] for c in cases if c.group == "parts")
    peers = sum(med[c.name] for c in cases if c.group == "peers")
    check = med["mlverify check (no cache)"]
    print(f"\ncheck / sum of its parts: {check / parts:.2f} ({check:.3f} s vs {parts:.3f} s)")
    if peers:
        print(
            f"check vs modelscan + model_signing verify: {peers / check:.2f}x faster "
            f"({check:.3f} s vs {peers:.3f} s)"
        )
    cached = med["mlverify check --cache (digest cache warm)"]
    print(f"cached re-check: {cached:.3f} s ({check / cached:.0f}x faster than uncached)")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
