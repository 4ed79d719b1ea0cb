"""What docs/signatures.md states: `--mode shards` follows the OMS schema, which
model_signing 1.1.1 cannot verify (its own shard form fails that schema)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.helpers import write_key_pair
from tests.signing.helpers import make_model, run

MODEL_SIGNING = Path(sys.executable).parent / "model_signing"


@pytest.mark.skipif(not MODEL_SIGNING.exists(), reason="model_signing CLI not installed")
def test_model_signing_1_1_1_cannot_verify_oms_shard_signatures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    private, public = write_key_pair(tmp_path, "p256")
    assert run(capsys, "sign", model, "--key", private, "--mode", "shards").code == 0
    assert run(capsys, "verify", model, "--key", public).code == 0
    done = subprocess.run(
        [str(MODEL_SIGNING), "verify", "key", "--signature", str(model / "model.sig"),
         "--public_key", str(public), str(model)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Signature mismatch" in done.stdout + done.stderr
