"""Keys held in an HSM or token, named by an RFC 7512 ``pkcs11:`` URI (PyKCS11, lazily).

``pkcs11:token=T;object=LABEL;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=F``

* the token: ``slot-id``, or ``token`` (label) with optional ``manufacturer``,
  ``model``, ``serial``; it must select exactly one token;
* the key: ``object`` (label) and/or ``id`` (pct-encoded bytes); it must select
  exactly one private key (and its public key object) on that token: a URI that
  could mean two keys is refused, never resolved to the first;
* the module: ``module-path`` (absolute; a library file, or a directory searched for
  ``module-name``), else ``module-name`` in the usual PKCS#11 directories;
* the PIN: ``pin-value``, or ``pin-source`` (an absolute path or ``file:`` URI; one
  trailing newline is dropped). Both at once is an error.

Unknown attributes (other than RFC 7512's ``x-`` vendor ones) are errors: a typo
must not widen which key is used. Signatures are made exactly as model_signing's
PKCS#11 signer makes them: the DSSE PAE hashed with the curve's hash (P-256:
SHA-256, P-384: SHA-384, P-521: SHA-512), ``CKM_ECDSA`` over that digest, the
raw ``r||s`` converted to DER. Each signature is checked with the token's public
key before it is used. EC keys only (tokens' EdDSA support is not portable).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mlverify._internal.errors import InputError, MlverifyError, UsageError
from mlverify._internal.files import read_bounded
from mlverify._internal.signing.keys import PublicKey, curve_hash, verify_signature
from mlverify._internal.signing.methods import SignerOptions, redact
from mlverify._internal.signing.methods.key import KeyBundleSigner
from mlverify._internal.text import shown

PATH_ATTRIBUTES = frozenset(
    {
        "token",
        "manufacturer",
        "serial",
        "model",
        "library-manufacturer",
        "library-description",
        "library-version",
        "slot-id",
        "slot-description",
        "slot-manufacturer",
        "object",
        "id",
        "type",
    }
)
QUERY_ATTRIBUTES = frozenset({"pin-source", "pin-value", "module-name", "module-path"})
#: where module-name is looked for without module-path (model_signing's, plus Debian's)
MODULE_DIRECTORIES = (
    "/usr/lib64/pkcs11",
    "/usr/lib/pkcs11",
    "/usr/lib/x86_64-linux-gnu/pkcs11",
    "/usr/lib/aarch64-linux-gnu/pkcs11",
    "/usr/local/lib/pkcs11",
)
MAX_URI = 8192
MAX_PIN_FILE = 4096

_CURVES: dict[bytes, ec.EllipticCurve] = {
    bytes.fromhex("06082a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("06052b81040022"): ec.SECP384R1(),
    bytes.fromhex("06052b81040023"): ec.SECP521R1(),
}


class Pkcs11Error(MlverifyError):
    """The token or its module refused (operational: exit 2)."""


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed RFC 7512 URI: attribute values are decoded bytes (``id``) or text."""

    text: str  #: the URI with any pin-value blanked, for messages
    path: tuple[tuple[str, bytes], ...]
    query: tuple[tuple[str, bytes], ...]

    def get(self, name: str) -> bytes | None:
        for k, v in (*self.path, *self.query):
            if k == name:
                return v
        return None

    def text_of(self, name: str) -> str | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{self.text}: attribute '{name}' is not UTF-8 text") from None


def _attributes(
    part: str, allowed: frozenset[str], sep: str, where: str
) -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    if not part:
        return found
    for item in part.split(sep):
        name, eq, value = item.partition("=")
        name = name.lower()
        if not eq or not name:
            raise UsageError(f"{where}: malformed attribute {shown(item)!r}; expected NAME=VALUE")
        if name not in allowed and not name.startswith("x-"):
            raise UsageError(
                f"{where}: unknown attribute {shown(name)!r} (RFC 7512 allows "
                f"{', '.join(sorted(allowed))}, and x- vendor attributes)"
            )
        if any(k == name for k, _ in found):
            raise UsageError(f"{where}: attribute {shown(name)!r} is given twice")
        try:
            found.append((name, unquote_to_bytes(value)))
        except ValueError:
            raise UsageError(f"{where}: attribute {shown(name)!r} is not pct-encoded") from None
    return found


def parse_uri(uri: str) -> Pkcs11Uri:
    """Parse and check a ``pkcs11:`` URI (RFC 7512); raise UsageError naming the defect."""
    if len(uri) > MAX_URI:
        raise UsageError(f"a pkcs11: URI of {len(uri)} characters is too long")
    if not uri.lower().startswith("pkcs11:"):
        raise UsageError(f"{shown(uri)!r}: not a pkcs11: URI")
    path_part, _, query_part = uri[7:].partition("?")
    masked = redact(uri)
    where = shown(masked)
    path = _attributes(path_part, PATH_ATTRIBUTES, ";", where)
    query = _attributes(query_part, QUERY_ATTRIBUTES, "&", where)
    parsed = Pkcs11Uri(masked, tuple(path), tuple(query))
    if parsed.get("pin-value") is not None and parsed.get("pin-source") is not None:
        raise UsageError(f"{where}: give pin-value or pin-source, not both")
    if parsed.get("object") is None and parsed.get("id") is None:
        raise UsageError(
            f"{where}: names no key; add object=LABEL or id=%NN (the key's CKA_LABEL or CKA_ID)"
        )
    kind = parsed.text_of("type")
    if kind is not None and kind not in ("private", "public"):
        raise UsageError(f"{where}: type={shown(kind)} is not a key; use type=private")
    slot = parsed.text_of("slot-id")
    if slot is not None and (not slot.isdigit() or int(slot) > 0xFFFFFFFF):
        raise UsageError(f"{where}: slot-id must be a decimal number, found {shown(slot)!r}")
    module_path = parsed.text_of("module-path")
    if module_path is not None and not os.path.isabs(module_path):
        raise UsageError(f"{where}: module-path must be an absolute path")
    if module_path is None and parsed.get("module-name") is None:
        raise UsageError(
            f"{where}: names no PKCS#11 module; add ?module-path=/path/to/module.so "
            "(e.g. /usr/lib/softhsm/libsofthsm2.so)"
        )
    return parsed


def module_file(uri: Pkcs11Uri) -> Path:
    """The module library the URI names (a file, or module-name found in a directory)."""
    module_path = uri.text_of("module-path")
    name = uri.text_of("module-name")
    if module_path is not None and os.path.isfile(module_path):
        return Path(module_path)
    if module_path is not None and not os.path.isdir(module_path):
        raise InputError(f"{uri.text}: module-path {shown(module_path)} does not exist")
    dirs = [module_path] if module_path is not None else list(MODULE_DIRECTORIES)
    if name is None:
        raise UsageError(f"{uri.text}: module-path is a directory; add module-name=NAME")
    wanted = name.lower()
    for d in dirs:
        try:
            entries = sorted(os.listdir(d))
        except OSError:
            continue
        for entry in entries:
            low = entry.lower()
            if low == wanted or low.startswith(wanted + "."):
                return Path(d) / entry
    raise InputError(f"{uri.text}: no PKCS#11 module {shown(name)!r} in {', '.join(dirs)}")


def pin_of(uri: Pkcs11Uri) -> str | None:
    value = uri.text_of("pin-value")
    if value is not None:
        return value
    source = uri.text_of("pin-source")
    if source is None:
        return None
    parsed = urlparse(source)
    if parsed.scheme not in ("", "file") or not os.path.isabs(parsed.path):
        raise UsageError(
            f"{uri.text}: pin-source must be an absolute path or file: URI, found {shown(source)!r}"
        )
    data = read_bounded(Path(parsed.path), what="PIN file", limit=MAX_PIN_FILE)
    text = data.decode("utf-8", "replace")
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


def _pykcs11() -> Any:
    try:
        import PyKCS11  # type: ignore[import-untyped]
    except ImportError:
        raise UsageError(
            "signing with a pkcs11: key needs PyKCS11; install it with "
            "pip install 'mlverify[pkcs11]'"
        ) from None
    return PyKCS11


_LIBRARIES: dict[str, Any] = {}


def _library(path: Path, uri: Pkcs11Uri) -> Any:
    key = str(path)
    if key not in _LIBRARIES:
        lib = _pykcs11().PyKCS11Lib()
        try:
            lib.load(key)
        except Exception as e:
            raise Pkcs11Error(f"{uri.text}: cannot load the PKCS#11 module {path} ({e})") from None
        _LIBRARIES[key] = lib
    return _LIBRARIES[key]


def _label(value: Any) -> str:
    return str(value).rstrip(" \x00")


def _select_slot(lib: Any, uri: Pkcs11Uri) -> int:
    slot_id = uri.text_of("slot-id")
    wanted = {name: uri.text_of(name) for name in ("token", "manufacturer", "model", "serial")}
    matches = []
    for slot in lib.getSlotList(tokenPresent=True):
        if slot_id is not None and slot != int(slot_id):
            continue
        info = lib.getTokenInfo(slot)
        found = {
            "token": _label(info.label),
            "manufacturer": _label(info.manufacturerID),
            "model": _label(info.model),
            "serial": _label(info.serialNumber),
        }
        if all(v is None or found[k] == v for k, v in wanted.items()):
            matches.append(slot)
    if len(matches) != 1:
        what = "no token" if not matches else f"{len(matches)} tokens"
        raise InputError(
            f"{uri.text}: {what} match(es) the URI's token attributes; name one token "
            "(token=LABEL or slot-id=N; list them with 'pkcs11-tool --list-slots')"
        )
    return int(matches[0])


@contextmanager
def _session(uri: Pkcs11Uri, *, login: bool) -> Iterator[Any]:
    pk = _pykcs11()
    lib = _library(module_file(uri), uri)
    try:
        slot = _select_slot(lib, uri)
        session = lib.openSession(slot, pk.CKF_SERIAL_SESSION)
    except pk.PyKCS11Error as e:
        raise Pkcs11Error(f"{uri.text}: cannot open a session on the token ({e})") from None
    try:
        pin = pin_of(uri)
        if login:
            if pin is None:
                raise UsageError(
                    f"{uri.text}: the private key needs the token's user PIN; add "
                    "pin-source=/path/to/pin-file (or pin-value=PIN) to the URI"
                )
            try:
                session.login(pin)
            except pk.PyKCS11Error as e:
                raise Pkcs11Error(f"{uri.text}: login to the token failed ({e})") from None
        yield session
    finally:
        try:
            if login:
                session.logout()
        except pk.PyKCS11Error:
            pass
        session.closeSession()


def _find_one(session: Any, uri: Pkcs11Uri, cls: int, what: str) -> Any:
    pk = _pykcs11()
    template: list[tuple[int, Any]] = [(pk.CKA_CLASS, cls)]
    label = uri.text_of("object")
    if label is not None:
        template.append((pk.CKA_LABEL, label))
    key_id = uri.get("id")
    if key_id is not None:
        template.append((pk.CKA_ID, tuple(key_id)))
    try:
        objects = session.findObjects(template)
    except pk.PyKCS11Error as e:
        raise Pkcs11Error(f"{uri.text}: the token cannot search for keys ({e})") from None
    if len(objects) != 1:
        found = "no" if not objects else str(len(objects))
        raise InputError(
            f"{uri.text}: {found} {what} object(s) match object/id on the token; the URI must "
            "name exactly one key (list them with 'pkcs11-tool --list-objects')"
        )
    return objects[0]


def _der_octet_string(data: bytes, where: str) -> bytes:
    """The content of a DER OCTET STRING (how CKA_EC_POINT holds the point)."""
    if len(data) < 2 or data[0] != 0x04:
        raise InputError(f"{where}: the token's CKA_EC_POINT is not a DER OCTET STRING")
    n, i = data[1], 2
    if n & 0x80:
        size = n & 0x7F
        if size == 0 or size > 2 or len(data) < 2 + size:
            raise InputError(f"{where}: the token's CKA_EC_POINT has a bad length")
        n, i = int.from_bytes(data[2 : 2 + size], "big"), 2 + size
    if len(data) != i + n:
        raise InputError(f"{where}: the token's CKA_EC_POINT has a bad length")
    return data[i:]


def _public_key(session: Any, uri: Pkcs11Uri) -> PublicKey:
    pk = _pykcs11()
    obj = _find_one(session, uri, pk.CKO_PUBLIC_KEY, "public key")
    try:
        key_type, params, point = session.getAttributeValue(
            obj, [pk.CKA_KEY_TYPE, pk.CKA_EC_PARAMS, pk.CKA_EC_POINT]
        )
    except pk.PyKCS11Error as e:
        raise Pkcs11Error(f"{uri.text}: cannot read the public key ({e})") from None
    if key_type != pk.CKK_EC:
        raise InputError(
            f"{uri.text}: the key is not an EC key (CKA_KEY_TYPE {key_type}); use an EC "
            "P-256, P-384 or P-521 key"
        )
    curve = _CURVES.get(bytes(params or ()))
    if curve is None:
        raise InputError(
            f"{uri.text}: the key's curve (CKA_EC_PARAMS {bytes(params or ()).hex()}) is not "
            "supported; use P-256, P-384 or P-521"
        )
    encoded = _der_octet_string(bytes(point or ()), uri.text)
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, encoded)
    except ValueError:
        raise InputError(f"{uri.text}: the token's EC point is not on the curve") from None


@dataclass(frozen=True)
class Pkcs11Key:
    """A private key on a token; each signature is made in its own session."""

    uri: Pkcs11Uri
    public_key: ec.EllipticCurvePublicKey

    def sign(self, data: bytes) -> bytes:
        pk = _pykcs11()
        algorithm = curve_hash(self.public_key)
        assert isinstance(algorithm, hashes.HashAlgorithm)
        h = hashes.Hash(algorithm)
        h.update(data)
        digest = h.finalize()
        with _session(self.uri, login=True) as session:
            key = _find_one(session, self.uri, pk.CKO_PRIVATE_KEY, "private key")
            try:
                raw = bytes(session.sign(key, digest, pk.Mechanism(pk.CKM_ECDSA, None)))
            except pk.PyKCS11Error as e:
                raise Pkcs11Error(f"{self.uri.text}: the token refused to sign ({e})") from None
        half = len(raw) // 2
        if len(raw) % 2 or half == 0:
            raise Pkcs11Error(f"{self.uri.text}: the token returned a malformed ECDSA signature")
        der = encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )
        if not verify_signature(self.public_key, der, data):
            raise Pkcs11Error(
                f"{self.uri.text}: the token's signature does not verify with its public key "
                "object (the private and public objects with this label/id are not a pair)"
            )
        return der


def load_key(uri: str) -> Pkcs11Key:
    parsed = parse_uri(uri)
    with _session(parsed, login=pin_of(parsed) is not None) as session:
        public = _public_key(session, parsed)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return Pkcs11Key(parsed, public)


def load_signer(uri: str, options: SignerOptions) -> KeyBundleSigner:
    return KeyBundleSigner(load_key(uri))


def load_public_key(uri: str) -> PublicKey:
    parsed = parse_uri(uri)
    with _session(parsed, login=pin_of(parsed) is not None) as session:
        return _public_key(session, parsed)
