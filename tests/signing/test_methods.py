"""The signer registry: one place maps URI schemes to methods; KMS URIs without network."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

from mlverify._internal.errors import UsageError
from mlverify._internal.signing.keys import key_fingerprint
from mlverify._internal.signing.methods import SCHEMES, load_public_key, load_signer, scheme_of
from mlverify._internal.signing.methods.kms import BACKENDS, parse_uri
from mlverify._internal.signing.methods.x509 import with_certificate
from tests.core.helpers import write_key_pair


def test_every_scheme_has_a_module_with_both_loaders() -> None:
    for scheme, name in SCHEMES.items():
        module = importlib.import_module(f"mlverify._internal.signing.methods.{name}")
        assert callable(module.load_signer) and callable(module.load_public_key), scheme


def test_bare_paths_and_file_uris_are_key_files(tmp_path: Path) -> None:
    private, public = write_key_pair(tmp_path, "p256")
    odd = tmp_path / "ab:cd.pub"  # an existing file that looks like a URI stays a file
    odd.write_bytes(public.read_bytes())
    assert scheme_of("C:/keys/k.pem") == "file"
    assert scheme_of(str(odd)) == "file"
    fingerprints = {
        key_fingerprint(load_public_key(u))
        for u in (str(public), f"file:{public}", f"file://{public}", f"FILE:{public}", str(odd))
    }
    assert len(fingerprints) == 1
    assert load_signer(f"file:{private}").name == load_signer(str(private)).name
    with pytest.raises(UsageError, match="'s3:' is not supported"):
        scheme_of("s3://bucket/key.pem")


def test_sigstore_uris(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no long-lived public key"):
        load_public_key("sigstore:")
    with pytest.raises(UsageError, match="unknown Sigstore instance"):
        load_signer("sigstore:elsewhere")


def test_a_certificate_needs_a_key_signer() -> None:
    class Keyless:
        name = "sigstore (x)"

        def sign_statement(self, payload: bytes) -> bytes:
            return b""

    with pytest.raises(UsageError, match="a certificate needs a key signer"):
        with_certificate(Keyless(), [])


@pytest.mark.parametrize(
    "uri",
    [
        "awskms:1234abcd-12ab-34cd-56ef-1234567890ab",
        "awskms:arn:aws:kms:us-east-1:111122223333:key/1234abcd",
        "gcpkms:projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
        "azurekms://myvault.vault.azure.net/keys/signing/0123abcd",
        "hv:release-key",
    ],
)
def test_kms_uris_parse_without_network(uri: str) -> None:
    parsed = parse_uri(uri)
    assert parsed.backend.scheme == uri.split(":", 1)[0] and parsed.import_args


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("awskms:", "expected awskms:KEY_ID"),
        ("gcpkms:projects/p/keyRings/r", "expected gcpkms:projects/P/locations/L"),
        ("azurekms://myvault.example.com/keys/k", "expected azurekms://VAULT.vault.azure.net"),
        ("azurekms://v.vault.azure.net/secrets/k", "expected azurekms://VAULT.vault.azure.net"),
        ("hv:", "expected hv:KEY_NAME"),
    ],
)
def test_malformed_kms_uris_are_refused(uri: str, expected: str) -> None:
    with pytest.raises(UsageError, match=expected):
        parse_uri(uri)


_PACKAGES = {
    "awskms": "boto3",
    "gcpkms": "google.cloud.kms",
    "azurekms": "azure.keyvault.keys",
    "hv": "hvac",
}
_EXAMPLES = {
    "awskms": "awskms:alias/release",
    "gcpkms": "gcpkms:projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
    "azurekms": "azurekms://v.vault.azure.net/keys/k",
    "hv": "hv:release",
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("scheme", sorted(BACKENDS))
def test_kms_without_its_package_says_what_to_install(scheme: str) -> None:
    if _installed(_PACKAGES[scheme]):
        pytest.skip(f"{_PACKAGES[scheme]} is installed: the missing-extra path cannot run")
    with pytest.raises(UsageError) as e:
        load_signer(_EXAMPLES[scheme])
    assert f"pip install {BACKENDS[scheme].packages}" in str(e.value)
    assert "Traceback" not in str(e.value)
