"""The library functions behind mlverify.sign / mlverify.verify: typed results and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlverify._internal.errors import (
    ArtifactMismatchError,
    SignatureNotFoundError,
    UntrustedSignerError,
)
from mlverify._internal.signing.api import (
    Verification,
    default_signature_path,
    load_signer,
    sign_artifact,
    verify_artifact,
)
from mlverify._internal.signing.trust import Trust, TrustedSigstore, trusted_key
from mlverify._internal.signing.trustset import NoVerifierError
from tests.core.helpers import write_key_pair
from tests.signing.helpers import make_model


@pytest.fixture
def alice(tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "alice"
    d.mkdir()
    return write_key_pair(d, "p256")


@pytest.fixture
def bob(tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "bob"
    d.mkdir()
    return write_key_pair(d, "ed25519")


def test_sign_and_verify_round_trip(tmp_path: Path, alice: tuple[Path, Path]) -> None:
    model = make_model(tmp_path)
    signer = load_signer(f"file:{alice[0]}")
    sig = sign_artifact(model, signer, mode="shards", hash="blake3", shard_size=4096)
    assert sig == default_signature_path(model) == model / "model.sig"
    key = trusted_key(str(alice[1]))
    assert Trust.of(str(alice[1])) == Trust((key,))
    result = verify_artifact(model, Trust.of(str(alice[1])))
    assert isinstance(result, Verification)
    assert result.signer == signer.name == key.signer
    assert result.method == "key" and result.checked_files == 3
    assert result.serialization.method == "shards" and result.serialization.hash_type == "blake3"
    assert result.signatures == (sig,)


def test_outcomes_are_typed(
    tmp_path: Path, alice: tuple[Path, Path], bob: tuple[Path, Path]
) -> None:
    model = make_model(tmp_path)
    trust_alice = Trust((trusted_key(str(alice[1])),))
    with pytest.raises(SignatureNotFoundError):
        verify_artifact(model, trust_alice)
    sign_artifact(model, load_signer(str(bob[0])))
    with pytest.raises(UntrustedSignerError):
        verify_artifact(model, trust_alice)
    keyless_only = Trust((TrustedSigstore("https://issuer.example", ("alice@example.com",)),))
    with pytest.raises(NoVerifierError) as e:
        verify_artifact(model, keyless_only)
    assert e.value.kind == "publicKey"
    (model / "config.json").write_text("{}")
    with pytest.raises(ArtifactMismatchError):
        verify_artifact(model, Trust((trusted_key(str(bob[1])),)))


def test_threshold_counts_distinct_signers(
    tmp_path: Path, alice: tuple[Path, Path], bob: tuple[Path, Path]
) -> None:
    model = make_model(tmp_path)
    outside = tmp_path / "sigs"
    outside.mkdir()
    a = sign_artifact(model, load_signer(str(alice[0])), signature=outside / "a.sig")
    b = sign_artifact(model, load_signer(str(bob[0])), signature=outside / "b.sig")
    keys = (trusted_key(str(alice[1])), trusted_key(str(bob[1])))
    result = verify_artifact(model, Trust(keys, threshold=2), signature=[a, b])
    assert {s.signer for s in result.signers} == {k.signer for k in keys}
    with pytest.raises(UntrustedSignerError):
        verify_artifact(model, Trust(keys, threshold=2), signature=[a, a])
