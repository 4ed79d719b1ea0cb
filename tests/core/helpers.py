"""Helpers for the core tests: run the CLI in-process, make keys and models."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mlverify._internal.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *args: object) -> Result:
    """Run ``mlverify ARGS`` in this process and capture exit code and output."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def write_key_pair(
    directory: Path, kind: str = "p256", password: bytes | None = None
) -> tuple[Path, Path]:
    """A fresh private/public PEM pair of ``kind`` in ``directory``."""
    if kind == "ed25519":
        key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = (
            ed25519.Ed25519PrivateKey.generate()
        )
    else:
        curve = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}[kind]
        key = ec.generate_private_key(curve)
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    private = directory / f"{kind}.key"
    public = directory / f"{kind}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def make_model(root: Path) -> Path:
    """A small model directory with nested files, a dotfile and git metadata."""
    model = root / "model"
    (model / "sub" / "deep").mkdir(parents=True)
    (model / "config.json").write_text('{"layers": 2}\n')
    (model / "weights.bin").write_bytes(os.urandom(70_000))
    (model / "sub" / "tokenizer.txt").write_text("a b c\n")
    (model / "sub" / "deep" / "extra.bin").write_bytes(b"\x00" * 1000)
    (model / ".hidden").write_text("dotfiles are model files too\n")
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (model / ".gitattributes").write_text("*.bin filter=lfs\n")
    return model


def evil_pickle(path: Path) -> Path:
    """``os.system('true')`` via GLOBAL + REDUCE, built from opcode bytes; never loaded."""
    path.write_bytes(b"\x80\x02cos\nsystem\nX" + struct.pack("<I", 4) + b"true\x85R.")
    return path


def safetensors(path: Path) -> Path:
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, separators=(",", ":")
    ).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 8)
    return path
