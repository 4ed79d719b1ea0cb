"""The public API: what `import mlverify` offers, how its errors read, and that it is cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mlverify
from mlverify._internal.errors import MlverifyError, Remedy, UsageError


def test_every_public_name_resolves() -> None:
    for name in mlverify.__all__:
        assert getattr(mlverify, name) is not None, name
    with pytest.raises(AttributeError):
        _ = mlverify.no_such_thing  # type: ignore[attr-defined]


def test_import_is_cheap() -> None:
    code = (
        "import sys, mlverify; heavy = [m for m in ('mlverify._internal.scan.engine',"
        " 'mlverify._internal.check', 'sigstore', 'cryptography', 'numpy', 'yaml')"
        " if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_error_codes_are_stable_and_distinct() -> None:
    from mlverify._internal import errors

    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, MlverifyError) and c is not MlverifyError
    ]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)) and all(codes)


def test_a_setting_is_spelled_by_the_front_end() -> None:
    e = UsageError("must be at least 1, found 0", setting="threshold", remedy=Remedy("raise it"))
    assert str(e) == "threshold: must be at least 1, found 0; raise it"
    assert e.render(lambda s: f"--{s}") == "--threshold: must be at least 1, found 0; raise it"
    r = Remedy("follow links inside the model", "allow_symlinks")
    assert r.render(lambda s: "--" + s.replace("_", "-")).endswith("(--allow-symlinks)")


def test_library_messages_name_no_cli_flag(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"x")
    with pytest.raises(UsageError) as e:
        mlverify.hash(tmp_path / "m", ignore=["../up"])
    assert "--" not in e.value.message and e.value.setting == "ignore"


def test_the_cli_renders_settings_as_flags(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"x")
    out = subprocess.run(
        [sys.executable, "-m", "mlverify", "hash", str(tmp_path / "m"), "--ignore", "/abs"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and out.stderr.startswith("mlverify: error: --ignore: '/abs'")


def test_check_of_a_missing_artifact_is_an_error_result(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = mlverify.check(tmp_path / "nothing")
    assert r.status == "error" and not r.allowed and r.exit_code == 2


def test_load_policy_rejects_an_unknown_name() -> None:
    with pytest.raises(mlverify.InputError) as e:
        mlverify.load_policy("no-such-policy")
    assert e.value.code == "policy"


def test_hash_rejects_an_unknown_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(UsageError) as e:
        mlverify.hash(tmp_path / "f", mode="blocks")
    assert e.value.setting == "mode"


def test_the_file_listing_is_opt_in() -> None:
    model = "fixtures/models/tiny-classifier"
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    counted = mlverify.check(root / model).evidence["artifact"]
    assert "files" not in counted and counted["file_count"] == 4
    listed = mlverify.check(root / model, list_files=True).evidence["artifact"]
    manifest = mlverify.hash(root / model)
    by_name = {r.path: r.digest for r in manifest.resources}
    assert {f["name"]: f["sha256"] for f in listed["files"]} == by_name
    assert listed["files_digest"] == counted["files_digest"]


def test_a_copy_is_checked_under_its_name() -> None:
    from pathlib import Path

    model = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "tiny-classifier"
    r = mlverify.check(model, name="models:/classifier/3", environment="mlflow-registry")
    assert r.artifact == "models:/classifier/3"
    assert r.evidence["artifact"]["ref"] == "models:/classifier/3"
    assert r.evidence["environment"] == "mlflow-registry"


def test_rules_restrict_what_may_be_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"x")
    rules = mlverify.AdmissionRules(roots=(tmp_path / "elsewhere",))
    r = mlverify.check(tmp_path / "m", rules=rules)
    assert r.status == "error" and not r.allowed
