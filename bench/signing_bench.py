"""Benchmark: mlverify hashing, signing and verifying against its peers, in one run.

Builds a synthetic model (default 4 x 1 GiB random files + 3 small files), warms the
page cache, then times, interleaved round by round, `mlverify sign` / `verify`
against `model_signing sign key` / `verify key` and `openssl dgst -sha256` on two
processes (the practical SHA-256 limit here); one 1 GiB file against one-core
`openssl dgst`; BLAKE3 against `b3sum`; and start-up. Prints medians, ratios and
peak RSS as a Markdown table. Not a test: nothing here asserts a time.

    .venv/bin/python bench/signing_bench.py            # full size (4.3 GB on disk)
    .venv/bin/python bench/signing_bench.py --file-mib 256 --rounds 3   # quicker
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import Case, run_rounds  # noqa: E402


def keyless_cases(work: Path, model: Path) -> list[Case]:
    """`mlverify verify` of a Sigstore keyless bundle (made offline by the test suite's
    virtual Sigstore) against plain hashing: verification should cost no more."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from tests.signing.virtual_sigstore import VirtualSigstore
    except ImportError:
        return []
    from mlverify._internal.manifest.build import hash_model
    from mlverify._internal.signing.statement import statement_bytes

    identity, issuer = "bench@example.com", "https://accounts.example.com"
    vsig = VirtualSigstore()
    bundle = work / "keyless.sig"
    bundle.write_bytes(
        vsig.sign_dsse(
            statement_bytes(hash_model(model, extra_excluded=[bundle])), identity, issuer
        )
    )
    root = vsig.write_trusted_root(work / "virtual_root.json")
    ml = str(BIN / "mlverify")
    return [
        Case("mlverify hash (reference)", [ml, "hash", str(model)], "keyless", True),
        Case(
            "mlverify verify, Sigstore keyless bundle",
            [
                ml,
                "verify",
                str(model),
                "--signature",
                str(bundle),
                "--identity",
                identity,
                "--issuer",
                issuer,
                "--trust-root",
                str(root),
            ],
            "keyless",
        ),
    ]


def make_model(root: Path, files: int, file_bytes: int) -> Path:
    model = root / "model"
    model.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(8 << 20)
    for i in range(files):
        p = model / f"model-{i:05d}-of-{files:05d}.safetensors"
        if p.exists() and p.stat().st_size == file_bytes:
            continue
        with open(p, "wb") as f:
            left = file_bytes
            while left:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n
                chunk = chunk[1:] + chunk[:1]  # different bytes per chunk, cheaply
    (model / "config.json").write_text('{"architectures": ["Bench"], "hidden_size": 4096}\n')
    (model / "tokenizer.json").write_text('{"version": "1.0"}\n' * 100)
    (model / "README.md").write_text("# synthetic benchmark model\n")
    return model


def warm(model: Path) -> None:
    for p in sorted(model.iterdir()):
        with open(p, "rb") as f:
            while f.read(16 << 20):
                pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=4, help="number of large files")
    ap.add_argument("--file-mib", type=int, default=1024, help="size of each large file, MiB")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None, help="reuse a model between runs")
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="mlverify-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model = make_model(work, args.files, args.file_mib << 20)
    big = sorted(model.glob("*.safetensors"))
    keydir = work / "keys"
    keydir.mkdir(exist_ok=True)
    key, pub = keydir / "k.key", keydir / "k.pub"
    if not key.exists():
        subprocess.run(
            [str(BIN / "mlverify"), "keygen", "--out", str(keydir / "k")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    ms_sig, ml_sig = work / "ms.sig", work / "ml.sig"
    ms = shutil.which("model_signing", path=str(BIN)) or shutil.which("model_signing")
    b3 = shutil.which("b3sum")
    quoted = " ".join(f"'{p}'" for p in big)
    cases = [
        Case(
            "openssl dgst -sha256, 2 processes",
            ["sh", "-c", f"printf '%s\\n' {quoted} | xargs -P2 -n1 openssl dgst -sha256"],
            "sign",
            True,
        ),
        Case(
            "mlverify sign (files, sha256)",
            [
                str(BIN / "mlverify"),
                "sign",
                str(model),
                "--key",
                str(key),
                "--signature",
                str(ml_sig),
            ],
            "sign",
        ),
        Case(
            "mlverify verify",
            [
                str(BIN / "mlverify"),
                "verify",
                str(model),
                "--key",
                str(pub),
                "--signature",
                str(ml_sig),
            ],
            "verify",
        ),
        Case(
            "openssl dgst -sha256, one file, 1 core",
            ["openssl", "dgst", "-sha256", str(big[0])],
            "single",
            True,
        ),
        Case("mlverify hash, one file", [str(BIN / "mlverify"), "hash", str(big[0])], "single"),
        Case("mlverify --version", [str(BIN / "mlverify"), "--version"], "startup"),
    ]
    if ms:
        cases.insert(
            2,
            Case(
                "model_signing sign key",
                [
                    ms,
                    "sign",
                    "key",
                    str(model),
                    "--private_key",
                    str(key),
                    "--signature",
                    str(ms_sig),
                ],
                "sign",
            ),
        )
        cases.insert(
            4,
            Case(
                "model_signing verify key",
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
                "verify",
            ),
        )
        cases.append(Case("model_signing --help (start-up)", [ms, "--help"], "startup"))
    cases += keyless_cases(work, model)
    if b3:
        cases.append(Case("b3sum (all cores)", [b3, *map(str, big)], "blake3", True))
    cases.append(
        Case(
            "mlverify hash --hash blake3",
            [str(BIN / "mlverify"), "hash", str(model), "--hash", "blake3"],
            "blake3",
        )
    )

    warm(model)
    # The warm-up produces the signatures, so that verify has something to check.
    signers = [c for c in cases if c.group == "sign" and not c.reference]
    run_rounds(cases, args.rounds, warmup=signers)

    total = sum(p.stat().st_size for p in model.iterdir())
    print(
        f"model: {args.files} x {args.file_mib} MiB + 3 small files = {total / 1e9:.2f} GB; "
        f"{args.rounds} interleaved rounds, warm page cache, {os.cpu_count()} cores\n"
    )
    print("| group | tool | median wall (s) | GB/s | ratio to reference | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|---:|")
    refs = {c.group: statistics.median(c.walls) for c in cases if c.reference}
    ms_sign = next(
        (statistics.median(c.walls) for c in cases if c.name == "model_signing sign key"), None
    )
    ms_verify = next(
        (statistics.median(c.walls) for c in cases if c.name == "model_signing verify key"), None
    )
    for c in cases:
        med = statistics.median(c.walls)
        size = big[0].stat().st_size if c.group == "single" else total
        gbs = f"{size / med / 1e9:.2f}" if c.group != "startup" else ""
        ref = refs.get("sign" if c.group == "verify" else c.group)
        ratio = f"{med / ref:.2f}x" if ref else ""
        rss = max(c.rss_kib) / 1024
        print(f"| {c.group} | {c.name} | {med:.3f} | {gbs} | {ratio} | {rss:.0f} |")
    ml_sign = next(statistics.median(c.walls) for c in cases if c.name.startswith("mlverify sign"))
    ml_verify = next(statistics.median(c.walls) for c in cases if c.name == "mlverify verify")
    if ms_sign and ms_verify:
        print(
            f"\nmlverify vs model_signing: sign {ms_sign / ml_sign:.2f}x faster, "
            f"verify {ms_verify / ml_verify:.2f}x faster"
        )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
