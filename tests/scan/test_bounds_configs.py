"""Text too big to decode as a config is searched up to the first character no strict
JSON/YAML reader takes, escapes resolved; past it, only raw bytes are searched.

The search's cost is bounded by the work it does, not by a clock: the bytes that go
through the escape-resolving search stop at the first stop character whatever the file's
size (a sparse file of zeros that opens like JSON cost ~7 s per GiB before).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlverify._internal.scan import scan_file
from mlverify._internal.scan.formats import configs
from mlverify._internal.scan.model import Severity
from tests.scan import builders as b
from tests.scan.conftest import Scan, rules

#: C0 controls but tab, LF, CR: what a strict reader refuses anywhere in a document
STOPS = bytes(c for c in range(0x20) if c not in b"\t\n\r")
PAD = b'{"pad": "' + b"x" * 5000  # past the 4096-byte head, text


@pytest.fixture(autouse=True)
def small_bound(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(configs, "MAX_CONFIG", 4096)
    yield


def test_strict_readers_refuse_every_stop_character_and_take_the_others() -> None:
    """The stop set is what the loaders do (json as loaders call it, PyYAML), not a guess:
    every C0 control but tab/LF/CR is refused inside a string and outside one; tab, LF,
    CR, DEL and C1 controls are taken by one reader or the other."""
    import yaml

    for c in range(0x20):
        ch = chr(c)
        strict_json = []
        for doc in (f'{{"a": "{ch}"}}', f'{{"a":{ch}1}}'):
            try:
                json.loads(doc)
                strict_json.append(True)
            except ValueError:
                strict_json.append(False)
        try:
            yaml.safe_load(f"a: 1\n# {ch}\n")
            takes_yaml = True
        except yaml.YAMLError:
            takes_yaml = False
        if c in STOPS:
            assert strict_json == [False, False] and not takes_yaml, hex(c)
        else:
            assert strict_json[1] and takes_yaml, hex(c)  # whitespace
    assert json.loads('{"a": "\x7f\x85"}') == {"a": "\x7f\x85"}
    # the lenient reader the raw search past a stop is for
    lenient = json.loads('{"a": "\x00", "_target_": "os.system"}', strict=False)
    assert lenient["_target_"] == "os.system"


def _count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes handed to the escape-resolving search (the per-character work), call by call."""
    seen: list[int] = []
    real = configs._resolved_hint

    def counted(text: bytes) -> bool:
        seen.append(len(text))
        return real(text)

    monkeypatch.setattr(configs, "_resolved_hint", counted)
    return seen


@pytest.mark.parametrize("size", [8 << 20, 512 << 20])
def test_a_sparse_file_that_opens_like_json_is_resolved_only_to_its_first_nul(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    seen = _count(monkeypatch)
    p = tmp_path / "big.json"
    with open(p, "wb") as f:
        f.write(PAD)
        f.truncate(size)  # zeros, without writing them
    report = scan_file(p)
    assert report.findings == () and report.status.value == "data"
    # the same work for 8 MiB and 512 MiB: the head's text and nothing past the first zero
    assert sum(seen) <= len(PAD) and len(seen) == 1


@pytest.mark.parametrize("stop", list(STOPS))
def test_every_stop_character_ends_the_resolving_search(
    scan_bytes: Scan, monkeypatch: pytest.MonkeyPatch, stop: int
) -> None:
    # after a stop, an escape is what a lenient reader resolves: searched raw, claimed
    tail = b'", "v": "\\u0120"}'
    assert "MLV302" in rules(scan_bytes(PAD + bytes([stop]) + tail, "tokenizer.json"))
    seen = _count(monkeypatch)
    assert "MLV302" not in rules(scan_bytes(PAD + bytes([stop]) + b'"}', "tokenizer.json"))
    assert sum(seen) <= len(PAD) * 2  # the fast path and the general one, once each


@pytest.mark.parametrize("byte", [c for c in range(256) if c not in STOPS])
def test_no_other_byte_ends_it(scan_bytes: Scan, byte: int) -> None:
    """Tab, newlines, DEL, C1 controls, invalid UTF-8 (a loader reading a legacy encoding
    takes any byte): the search goes on, escapes resolved (a tokenizer's escape is data)."""
    if byte in b'\\"':
        return  # would change the string's syntax, not what this is about
    data = PAD + bytes([byte]) + b'", "v": "\\u0120"}'
    assert "MLV302" not in rules(scan_bytes(data, "tokenizer.json"))
    hidden = PAD + bytes([byte]) + b'", "\\u005ftarget_": "os.system"}'
    assert "MLV302" in rules(scan_bytes(hidden, "tokenizer.json"))


@pytest.mark.parametrize(
    "payload",
    [
        b', "_target_": "os.system"}',  # as written
        b', "\\u005ftarget_": "os.system"}',  # an escape a lenient reader resolves
        b', "auto_map": {"AutoModel": "m.M"}}',
        b', "x": "${oc.decode:x}"}',
    ],
)
def test_a_payload_after_a_nul_is_never_passed(scan_bytes: Scan, payload: bytes) -> None:
    """json.loads(strict=False) reads a NUL inside a string and the key after it: the rest
    past a stop is searched raw, and a config so hidden is a finding, never data."""
    data = PAD + b'\x00"' + payload
    text = data.decode()
    assert json.loads(text, strict=False)  # a real loader reads it to its end
    for name in ("config.json", "model.sig"):  # by name, and opening like JSON
        report = scan_bytes(data, name)
        assert "MLV302" in rules(report) and report.status.value != "data"


def test_a_payload_before_the_stop_is_found(scan_bytes: Scan) -> None:
    """A loader that stops at a NUL (a C string) reads what precedes it."""
    data = PAD + b'", "_target_": "os.system"}\x00' + bytes(8000)
    assert "MLV302" in rules(scan_bytes(data, "config.json"))


def test_utf16_text_stops_at_a_nul_character_too(
    scan_bytes: Scan, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = '{"pad": "' + "x" * 5000
    clean = (head + "\x00" + '"}').encode("utf-16")
    assert "MLV302" not in rules(scan_bytes(clean, "config.json"))
    hidden = (head + "\x00" + '", "_target_": "os.system"}').encode("utf-16")
    assert "MLV302" in rules(scan_bytes(hidden, "config.json"))
    escaped = (head + "\x00" + '", "\\u005ftarget_": "os.system"}').encode("utf-16-be")
    assert "MLV302" in rules(scan_bytes(escaped, "config.json"))


def test_data_that_is_no_config_still_gets_every_other_check(scan_bytes: Scan) -> None:
    """Bytes the config search gives up on are judged as any data: a zip appended after
    the zeros is found by its end record, and the pickle in it judged."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b.p0(b.call0("os", "system", "true")))
    data = PAD + bytes(10000) + buf.getvalue()
    report = scan_bytes(data, "model.sig")
    assert "MLV302" not in rules(report)
    assert max(f.severity for f in report.findings) >= Severity.HIGH, report.findings


def test_the_raw_utf8_search_equals_the_decoded_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path searches UTF-8 in its raw bytes, the general one decodes: the same
    answer on hints, escapes, stop bytes and invalid or cut sequences, across chunk ends."""
    import random

    from mlverify._internal.scan.dispatch import general_path
    from mlverify._internal.scan.source import FileContent, FileSource

    monkeypatch.setattr(configs, "_CHUNK", 64)
    rng = random.Random(11)
    pieces = [*configs._HINTS, b"\\", b"\\u005f", b"\\x5f", b"\\\n", b"$", b"{", b"_"]
    pieces += [b"\xc3", b"\xa9", b"\xff", b"\xe2\x82", b"\xf0\x9f\x98", b"a", b" ", b"\n"]
    pieces += [bytes([c]) for c in STOPS[:4]] + [b"\x0c", b"\x1f", b"\x7f", b"\t"]
    for _ in range(3000):
        parts = [rng.choice(pieces) for _ in range(rng.randrange(0, 40))]
        if rng.random() < 0.5:  # a hint cut by another piece
            h = rng.choice(configs._HINTS)
            i = rng.randrange(1, len(h))
            parts.insert(rng.randrange(len(parts) + 1), h[:i] + rng.choice(pieces) + h[i:])
        data = b" " * rng.randrange(0, 70) + b"".join(parts)
        for enc in ("utf-8", "utf-8-sig"):
            src = FileSource(FileContent(data), 0, len(data), "")
            fast = configs._hinted_to_end(src, enc)
            with general_path():
                want = configs._hinted_to_end(src, enc)
            assert fast == want, (data, enc)


@pytest.mark.parametrize("enc", ["utf-8", "utf-16-le", "utf-16-be", "utf-32-le"])
def test_the_raw_search_past_a_stop_finds_a_hint_across_every_chunk_end(
    monkeypatch: pytest.MonkeyPatch, enc: str
) -> None:
    from mlverify._internal.scan.source import FileContent, FileSource

    monkeypatch.setattr(configs, "_CHUNK", 64)
    for hint in ("_target_", "\\", "${", "_diffusers_version"):
        for at in range(0, 200, 3):
            data = ("{" + "x" * 10 + "\x00" + "y" * at + hint + "y" * 100).encode(enc)
            src = FileSource(FileContent(data), 0, len(data), "")
            assert configs._hinted_to_end(src, enc), (hint, at)
        clean = ("{" + "x" * 10 + "\x00" + "y" * 300).encode(enc)
        assert not configs._hinted_to_end(FileSource(FileContent(clean), 0, len(clean), ""), enc)


def test_escapes_are_resolved_up_to_a_budget_then_the_file_is_claimed(
    scan_bytes: Scan, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each escape of a hint's character resolved is a Python call: text dense with them
    (``\\u005f``, ~100 s per GiB) is claimed once it holds more than MAX_ESCAPES, never
    searched at that cost to its end, never passed. Other escapes (line breaks, quotes,
    letters no hint has, non-ASCII) are not resolved: however many, the text is data."""
    monkeypatch.setattr(configs, "MAX_ESCAPES", 2000)
    monkeypatch.setattr(configs, "_CHUNK", 4096)
    few = PAD + b"\\u005f" * 300 + b'"}'
    assert "MLV302" not in rules(scan_bytes(few, "tokenizer.json"))  # resolved: data
    others = PAD + b'\\u0041\\n\\"\\u4e2d\\x41' * 50_000 + b'"}'
    assert "MLV302" not in rules(scan_bytes(others, "tokenizer.json"))  # none resolved: data
    seen = _count(monkeypatch)
    dense = PAD + b"\\u005F" * 200_000 + b'"}'  # 1.2 MB of escapes, no hint
    report = scan_bytes(dense, "tokenizer.json")
    assert "MLV302" in rules(report) and report.status.value != "data"
    # the fast path and the general one: each stopped within a chunk of the budget
    assert sum(seen) <= 2 * (len(PAD) + 6 * 2000 + 2 * 4096)


@pytest.mark.parametrize("brk", ["\n", "\r", "\r\n", "\x85", "\u2028", "\u2029"])
def test_a_key_joined_by_any_yaml_escaped_line_break_is_claimed(
    scan_bytes: Scan, monkeypatch: pytest.MonkeyPatch, brk: str
) -> None:
    """red-team r8: past the decode bound, ``"_tar\\<break>get_"`` is ``_target_`` to
    PyYAML for every YAML line break after the backslash, not only LF."""
    monkeypatch.setattr(configs, "MAX_CONFIG", 4096)
    doc = "# " + "a" * 5000 + '\n? "_tar\\' + brk + 'get_"\n: os.system\n'
    assert "MLV302" in rules(scan_bytes(doc.encode(), "params.yaml"))


def test_a_config_with_del_in_a_string_is_judged(scan_bytes: Scan) -> None:
    """red-team r8: json.loads takes DEL (0x7f) in a string: such a config is text."""
    doc = b'{"pad": "\x7f", "_target_": "os.system", "_args_": ["id"]}'
    assert "MLV1001" in rules(scan_bytes(doc, "config.json"))
