"""Key files: ``file:PATH``, ``file:///PATH`` or a bare path to a PEM key.

Private keys are PKCS#8/traditional PEM (encrypted ones ask for their password
only when needed); public keys are PEM SubjectPublicKeyInfo. Reads are bounded.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlverify._internal.files import read_bounded
from mlverify._internal.signing.keys import (
    MAX_KEY_FILE,
    KeySigner,
    PublicKey,
    load_private_key_pem,
    load_public_key_pem,
)
from mlverify._internal.signing.methods import SignerOptions
from mlverify._internal.signing.methods.key import KeyBundleSigner


def key_path(uri: str) -> Path:
    """The file behind a key URI (``file:PATH``, ``file:///PATH`` or a bare path)."""
    if uri[:5].lower() == "file:" and not os.path.exists(uri):
        parsed = urlparse(uri)
        return Path(unquote(parsed.path if parsed.netloc in ("", "localhost") else uri[5:]))
    return Path(uri)


def load_key_signer(uri: str, options: SignerOptions) -> KeySigner:
    path = key_path(uri)
    data = read_bounded(path, what="private key", limit=MAX_KEY_FILE)
    return KeySigner(load_private_key_pem(data, where=str(path), password=options.password))


def load_signer(uri: str, options: SignerOptions) -> KeyBundleSigner:
    return KeyBundleSigner(load_key_signer(uri, options))


def load_public_key(uri: str) -> PublicKey:
    path = key_path(uri)
    return load_public_key_pem(
        read_bounded(path, what="public key", limit=MAX_KEY_FILE), where=str(path)
    )
