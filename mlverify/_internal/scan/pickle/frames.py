"""How the C unpickler reads a file object when a value crosses a frame's end.

``pickle.load(f)`` with the C ``_pickle`` reads a whole ``FRAME`` from the file into its buffer
(with ``f.read``: for any frame of a file without ``peek``, such as the ``BytesIO`` that
``torch.load`` hands it for ``data.pkl``, and for frames of 8 KiB or more of any file). A later
read that the rest of the buffer cannot satisfy does not take those bytes: it reads afresh
from where the file is, after the frame, and the rest of the frame is never seen
(``_Unpickler_ReadImpl``; a line is read with ``f.readline`` the same way). Bytes objects
(``BINBYTES*``, ``BYTEARRAY8``) are read linearly (``_Unpickler_ReadInto``), and
``pickle.loads`` of bytes reads linearly too. The pure-Python unpickler raises instead.

CPython's pickler never makes a value cross a frame's end, so the walker reads linearly and
only notes a crossing; a stream with one is read again as :func:`linearize` orders it: the
bytes that C loader consumes, in that order, FRAME opcodes left out.
"""

from __future__ import annotations

# argument layout per opcode: ("n", k) k fixed bytes; ("c", k, signed) a k-byte count then
# that many bytes, read like the count; ("i", k) the same, the payload read linearly
# (ReadInto); ("l", k) k lines
_NONE = b"(.012NRabd}el]ost)u\x81\x85\x86\x87\x88\x89\x8f\x90\x91\x92\x93\x94\x97\x98Q"
_LAYOUT: dict[int, tuple[str, int, bool]] = {op: ("n", 0, False) for op in _NONE}
_LAYOUT.update(
    {
        ord("J"): ("n", 4, False), ord("K"): ("n", 1, False), ord("M"): ("n", 2, False),
        ord("G"): ("n", 8, False), ord("h"): ("n", 1, False), ord("j"): ("n", 4, False),
        ord("q"): ("n", 1, False), ord("r"): ("n", 4, False), 0x82: ("n", 1, False),
        0x83: ("n", 2, False), 0x84: ("n", 4, False), 0x80: ("n", 1, False),
        ord("U"): ("c", 1, False), ord("T"): ("c", 4, True), 0x8C: ("c", 1, False),
        ord("X"): ("c", 4, False), 0x8D: ("c", 8, False), 0x8A: ("c", 1, False),
        0x8B: ("c", 4, True),
        ord("C"): ("i", 1, False), ord("B"): ("i", 4, False), 0x8E: ("i", 8, False),
        0x96: ("i", 8, False),
        ord("I"): ("l", 1, False), ord("L"): ("l", 1, False), ord("F"): ("l", 1, False),
        ord("S"): ("l", 1, False), ord("V"): ("l", 1, False), ord("g"): ("l", 1, False),
        ord("p"): ("l", 1, False), ord("P"): ("l", 1, False), ord("c"): ("l", 2, False),
        ord("i"): ("l", 2, False),
    }
)  # fmt: skip
FRAME = 0x95
STOP = 0x2E


class _Stop(Exception):
    """The C loader raises here (truncated, invalid opcode): the reading ends."""


class _Reader:
    """A file and the C unpickler's buffer window over it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.fpos = 0  # where the file is: the end of the buffer
        self.rd = 0  # where the unpickler reads in its buffer (<= fpos)
        self.out: list[bytes] = []

    def read(self, n: int) -> bytes:
        """``_Unpickler_Read``: n bytes from the buffer, or afresh from the file."""
        if self.rd + n <= self.fpos:
            start = self.rd
            self.rd += n
        else:
            start = self.fpos
            if start + n > len(self.data):
                raise _Stop
            self.fpos = self.rd = start + n
        got = self.data[start : start + n]
        self.out.append(got)
        return got

    def read_into(self, n: int) -> None:
        """``_Unpickler_ReadInto``: what the buffer holds, then the rest from the file."""
        inbuf = min(n, self.fpos - self.rd)
        self.out.append(self.data[self.rd : self.rd + inbuf])
        self.rd += inbuf
        rest = n - inbuf
        if rest:
            if self.fpos + rest > len(self.data):
                raise _Stop
            self.out.append(self.data[self.fpos : self.fpos + rest])
            self.fpos += rest
            self.rd = self.fpos

    def readline(self) -> None:
        """``_Unpickler_Readline``: up to a newline in the buffer, else ``f.readline()``."""
        i = self.data.find(b"\n", self.rd, self.fpos)
        if i >= 0:
            self.out.append(self.data[self.rd : i + 1])
            self.rd = i + 1
            return
        j = self.data.find(b"\n", self.fpos)
        if j < 0:
            raise _Stop
        self.out.append(self.data[self.fpos : j + 1])
        self.fpos = self.rd = j + 1


def linearize(data: bytes, max_ops: int) -> bytes:
    """The bytes the C unpickler reading ``data`` as a file without ``peek`` consumes, in
    order, FRAME opcodes left out; stacked pickles follow one another."""
    r = _Reader(data)
    try:
        for _ in range(max_ops):
            if r.rd == r.fpos and r.fpos >= len(data):
                break  # the end of the stream between pickles
            op = r.read(1)[0]
            if op == FRAME:
                r.out.pop()
                n = int.from_bytes(r.read(8), "little")
                r.out.pop()
                if r.rd + n > r.fpos:  # _Unpickler_Read(frame_len), then rewind
                    if r.fpos + n > len(data):
                        raise _Stop
                    r.rd = r.fpos
                    r.fpos += n
                continue
            kind, width, signed = _LAYOUT.get(op, ("x", 0, False))
            if kind == "n":
                r.read(width)
            elif kind in ("c", "i"):
                count = int.from_bytes(r.read(width), "little", signed=signed)
                if count < 0:
                    raise _Stop
                if kind == "c":
                    r.read(count)
                else:
                    r.read_into(count)
            elif kind == "l":
                for _ in range(width):
                    r.readline()
            else:
                raise _Stop
            if op == STOP:
                r.rd = r.fpos  # the next load starts where the file is
    except _Stop:
        pass
    return b"".join(r.out)
