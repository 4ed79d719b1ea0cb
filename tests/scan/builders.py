"""Build pickle opcode streams from raw bytes (harmless payloads, never loaded)."""

from __future__ import annotations

import struct


def g0(module: str, name: str) -> bytes:
    """GLOBAL."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def s0(text: str) -> bytes:
    """Protocol-0 STRING."""
    return b"S'" + text.encode() + b"'\n"


def call0(module: str, name: str, *args: str) -> bytes:
    """module.name(*args) with protocol-0 opcodes (GLOBAL, MARK, STRING, TUPLE, REDUCE)."""
    return g0(module, name) + b"(" + b"".join(s0(a) for a in args) + b"tR"


def u(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    b = text.encode()
    return b"\x8c" + bytes([len(b)]) + b


def sg(module: str, name: str) -> bytes:
    """STACK_GLOBAL from two SHORT_BINUNICODE strings."""
    return u(module) + u(name) + b"\x93"


def call4(module: str, name: str, *args: str) -> bytes:
    return sg(module, name) + b"(" + b"".join(u(a) for a in args) + b"tR"


def p0(body: bytes) -> bytes:
    return body + b"."


def p4(body: bytes) -> bytes:
    return b"\x80\x04" + body + b"."


def binbytes(data: bytes) -> bytes:
    if len(data) < 256:
        return b"C" + bytes([len(data)]) + data
    return b"B" + struct.pack("<I", len(data)) + data


def binbytes8_header(n: int) -> bytes:
    return b"\x8e" + struct.pack("<Q", n)


EVIL0 = p0(call0("os", "system", "true"))
EVIL4 = p4(call4("os", "system", "true"))
