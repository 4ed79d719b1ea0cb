"""Benchmark: datasets of many small files (1-4 KiB), from 1k to 100k files (1M with --million).

For each size it builds a dataset (1000 files per directory, text content), warms
the page cache, then times, interleaved round by round: the practical limit
(`find | xargs -0 -P2 sha256sum`, two processes), `mlverify hash`, `sign --key`,
`verify --key`, `check --no-cache` (a policy trusting the key, so the signature is
verified too), `check --cache` from an empty cache (its first run), the scan `check`
runs, alone (a stage of `check`), and model_signing's `sign key` / `verify key`. Prints,
per command: us per file (median wall), user+system CPU us per file (the machine may be
shared: CPU time is the steadier number), the ratio to the limit and to model_signing,
peak RSS and RSS per 1k files (the peak above the same command's peak on the smallest
dataset). Not a test: nothing here asserts a time.

    .venv/bin/python bench/dataset_bench.py                  # 1k, 10k, 100k files
    .venv/bin/python bench/dataset_bench.py --sizes 1000,10000 --rounds 5
    .venv/bin/python bench/dataset_bench.py --million --rounds 1   # adds 1M (~4 GB)
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import Case, run_rounds  # noqa: E402


def make_dataset(root: Path, n: int) -> None:
    """``n`` text files of 1-4 KiB, 1000 per directory (benign data for the scanner)."""
    rnd = random.Random(n)
    alphabet = b"0123456789abcdef"
    line = bytes(rnd.choice(alphabet) for _ in range(4096))
    for i in range(n):
        d = root / f"part-{i // 1000:05d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        size = rnd.randint(1024, 4096)
        start = rnd.randrange(0, 4096)
        body = (line[start:] + line)[: size - 12] + b"%011d\n" % i
        (d / f"sample-{i:07d}.txt").write_bytes(body)


def warm(root: Path) -> None:
    for dirpath, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                f.read()


def mlverify(*args: object) -> list[str]:
    return [sys.executable, "-m", "mlverify", *(str(a) for a in args)]


#: the scan ``check`` runs, alone: every file of the tree, by worker processes when
#: ``check`` would use them (the walk here is a plain ``os.walk``), each small file hashed
#: from the bytes scanned as in ``check``; beside ``check`` it shows what the main
#: process adds (the walk, the signature's parse and verification, the ``stat`` pass)
SCAN_STAGE = """
import os, sys
from mlverify._internal.scan.model import Limits
from mlverify._internal.scan.workers import scan_many
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs)
r = scan_many(files, files, [os.stat(f).st_size for f in files], Limits())
assert len(r.codes) == len(files)
"""


def cases_for(work: Path, data: Path, n: int, key: Path, pub: Path, with_ms: bool) -> list[Case]:
    sig = work / f"{n}.sig"
    ms_sig = work / f"{n}.ms.sig"
    policy = work / "policy.yaml"
    policy.write_text(
        "apiVersion: mlverify.dev/v1\nkind: Policy\nmetadata:\n  name: bench\n"
        f"spec:\n  signatures:\n    required: true\n    trusted:\n      - key: {pub}\n"
    )
    # the signatures verified below exist before the first round
    if not sig.exists():
        os.system(
            " ".join(mlverify("sign", data, "--key", key, "--signature", sig)) + " >/dev/null"
        )
    cache_home = work / f"cache-{n}"
    first_cache = (
        f"rm -rf {cache_home} && XDG_CACHE_HOME={cache_home} "
        + " ".join(mlverify("check", "--cache", data, "--policy", policy, "--signature", sig))
        + " >/dev/null"
    )
    cases = [
        Case(
            "limit: find | xargs -0 -P2 sha256sum",
            ["sh", "-c", f"cd {data} && find . -type f -print0 | xargs -0 -P2 sha256sum"],
            "ref",
            reference=True,
        ),
        Case("mlverify hash", mlverify("hash", data), "hash"),
        Case(
            "mlverify sign --key",
            mlverify("sign", data, "--key", key, "--signature", work / f"{n}.again.sig"),
            "sign",
        ),
        Case(
            "mlverify verify --key",
            mlverify("verify", data, "--key", pub, "--signature", sig),
            "verify",
        ),
        Case(
            "mlverify check --no-cache",
            mlverify("check", "--no-cache", data, "--policy", policy, "--signature", sig),
            "check",
        ),
        Case("mlverify check --cache (first run)", ["sh", "-c", first_cache], "check-cache"),
        Case(
            "stage: check's scan alone (scan_many, as check runs it)",
            [sys.executable, "-c", SCAN_STAGE, str(data)],
            "stages",
        ),
    ]
    if with_ms:
        ms = str(BIN / "model_signing")
        cases += [
            Case(
                "model_signing sign key",
                [
                    ms,
                    "sign",
                    "key",
                    str(data),
                    "--private_key",
                    str(key),
                    "--signature",
                    str(ms_sig),
                ],
                "sign",
                reference=True,
            ),
            Case(
                "model_signing verify key",
                [ms, "verify", "key", str(data), "--signature", str(sig), "--public_key", str(pub)],
                "verify",
                reference=True,
            ),
        ]
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--million", action="store_true", help="add a 1,000,000-file dataset")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp dir)")
    ap.add_argument("--no-model-signing", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the datasets")
    ap.add_argument(
        "--groups",
        default="",
        help="only these command groups (comma-separated: hash, sign, verify, check, "
        "check-cache, stages; the limit always runs)",
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.million:
        sizes.append(1_000_000)
    with_ms = not args.no_model_signing and (BIN / "model_signing").exists()
    work = Path(tempfile.mkdtemp(prefix="mlverify-dataset-bench-", dir=args.dir))
    os.environ["PYTHONPATH"] = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    try:
        key = work / "bench"
        os.system(" ".join(mlverify("keygen", "--out", key)) + " >/dev/null")
        private, public = work / "bench.key", work / "bench.pub"
        rows: list[tuple[int, list[Case]]] = []
        for n in sizes:
            data = work / f"data-{n}"
            make_dataset(data, n)
            warm(data)
            cases = cases_for(work, data, n, private, public, with_ms)
            if args.groups:
                keep = {"ref", *args.groups.split(",")}
                cases = [c for c in cases if c.group in keep]
            run_rounds(cases, args.rounds if n < 1_000_000 else 1, warmup=cases[:2])
            rows.append((n, cases))
            report(rows)
            if not args.keep and n >= 100_000:
                shutil.rmtree(data)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def report(rows: list[tuple[int, list[Case]]]) -> None:
    smallest_rss = {c.name: min(c.rss_kib) for c in rows[0][1]}
    n0 = rows[0][0]
    print(
        "\n| files | command | us/file (wall) | CPU us/file | x limit (wall) | x limit (CPU) "
        "| x model_signing | peak RSS (MiB) | RSS per 1k files (KiB) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, cases in rows:
        med = {c.name: statistics.median(c.walls) for c in cases}
        cpu = {c.name: statistics.median(c.cpus) for c in cases}
        ref = cases[0].name
        ms_of = {c.group: c.name for c in cases if c.name.startswith("model_signing")}
        for c in cases:
            us, cpu_us = med[c.name] / n * 1e6, cpu[c.name] / n * 1e6
            ms = ms_of.get(c.group)
            vs_ms = f"{med[c.name] / med[ms]:.2f}x" if ms and ms != c.name else ""
            peak = max(c.rss_kib)
            per_k = f"{(peak - smallest_rss[c.name]) / ((n - n0) / 1000):.0f}" if n > n0 else ""
            print(
                f"| {n:,} | {c.name} | {us:.1f} | {cpu_us:.1f} | {med[c.name] / med[ref]:.2f}x "
                f"| {cpu[c.name] / cpu[ref]:.2f}x | {vs_ms} | {peak / 1024:.0f} | {per_k} |"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
