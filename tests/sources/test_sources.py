"""Artifact sources: one registry by scheme, settings handed in (never read from the
environment by a source), admission rules, pinning."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlverify._internal.errors import UsageError
from mlverify._internal.sources import SCHEMES, SourceSettings, is_reference, resolve, source_for
from mlverify._internal.sources.oci import Registry, credentials_for
from mlverify._internal.sources.settings import AdmissionRules, HfSettings, OciSettings

DIGEST = "sha256:" + "a" * 64
COMMIT = "b" * 40


@pytest.mark.parametrize(
    ("ref", "kind", "pinned"),
    [
        ("models/classifier", "path", False),
        (f"oci://registry.example.com/models/clf@{DIGEST}", "oci", True),
        ("oci://registry.example.com/models/clf:v1", "oci", False),
        (f"hf://acme/clf@{COMMIT}", "hf", True),
        ("hf://acme/clf@main", "hf", False),
        ("hf://acme/clf", "hf", False),
        ("models:/clf/3", "mlflow", False),
        ("models:/clf@champion", "mlflow", False),
        ("models:/m-0123abcd", "mlflow", False),
        ("runs:/0123456789abcdef/model", "mlflow", False),
    ],
)
def test_registry_picks_the_source_by_scheme(ref: str, kind: str, pinned: bool) -> None:
    source = source_for(ref, SourceSettings())
    assert (source.kind, source.pinned, source.reference) == (kind, pinned, ref)
    assert is_reference(ref) == (kind != "path")
    assert source.pin_hint


@pytest.mark.parametrize(
    "ref",
    [
        "s3://bucket/model",
        "gs://b/m",
        "pvc://x/y",
        "file:///etc",
        "http://h/m",
        "mlflow-artifacts:/0/x",
    ],
)
def test_unknown_schemes_are_refused_not_read_as_paths(ref: str) -> None:
    with pytest.raises(UsageError, match="unknown reference scheme"):
        source_for(ref, SourceSettings())


def test_every_scheme_module_exists() -> None:
    import importlib

    for module in set(SCHEMES.values()):
        parse = importlib.import_module(f"mlverify._internal.sources.{module}").parse
        assert callable(parse)


def test_settings_come_from_a_mapping_not_from_constructors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf"),
        "MLVERIFY_HF_DOWNLOAD": "1",
        "MLVERIFY_OCI_PLAIN_HTTP": "1",
        "MLVERIFY_OCI_TOKEN_HOSTS": "auth.example.com, other.example.com",
        "MLVERIFY_OCI_MAX_BYTES": "1000",
        "MLVERIFY_OCI_USERNAME": "alice",
        "MLVERIFY_OCI_PASSWORD": "pw",
        "MLVERIFY_OCI_REGISTRY": "registry.example.com",
    }
    s = SourceSettings.from_environment(env)
    assert s.hf == HfSettings(cache=tmp_path / "hf" / "hub", download=True)
    assert s.oci.plain_http and s.oci.max_bytes == 1000
    assert s.oci.token_hosts == {"auth.example.com", "other.example.com"}
    assert s.oci.auth_file == tmp_path / ".docker" / "config.json"
    assert credentials_for("registry.example.com", s.oci) == "Basic YWxpY2U6cHc="
    assert credentials_for("elsewhere.example.com", s.oci) is None  # bound to its host
    with pytest.raises(UsageError, match="MLVERIFY_OCI_MAX_BYTES"):
        SourceSettings.from_environment({"MLVERIFY_OCI_MAX_BYTES": "lots"})
    # a source reads only what it is given: the process environment changes nothing
    monkeypatch.setenv("MLVERIFY_OCI_PLAIN_HTTP", "1")
    monkeypatch.setenv("MLVERIFY_OCI_USERNAME", "mallory")
    monkeypatch.setenv("MLVERIFY_OCI_PASSWORD", "x")
    monkeypatch.setenv("MLVERIFY_OCI_REGISTRY", "registry.example.com")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    reg = Registry("registry.example.com", OciSettings())
    assert reg.base == "https://registry.example.com" and reg._basic is None
    given = SourceSettings(hf=HfSettings(cache=tmp_path / "given"))
    # looked in the cache it was given, not in $HF_HUB_CACHE
    with pytest.raises(Exception, match=str(tmp_path / "given")), resolve("hf://acme/c", given):
        pass


def test_admission_rules(tmp_path: Path) -> None:
    root = tmp_path / "models"
    (root / "m").mkdir(parents=True)
    outside = tmp_path / "other"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    settings = SourceSettings()
    rules = AdmissionRules(
        roots=(root,),
        registries=frozenset({"registry.example.com"}),
        pinned_only=frozenset({"hf"}),
    )
    source_for(str(root / "m"), settings).admit(rules)
    for bad in (outside, root / "link", root / ".." / "other"):
        with pytest.raises(UsageError, match="not under a configured model root"):
            source_for(str(bad), settings).admit(rules)
    with pytest.raises(UsageError, match="local paths are not accepted"):
        source_for(str(root / "m"), settings).admit(AdmissionRules(roots=()))
    source_for(f"oci://registry.example.com/m@{DIGEST}", settings).admit(rules)
    source_for("oci://registry.example.com/m:v1", settings).admit(rules)  # tags allowed here
    with pytest.raises(UsageError, match=r"registry evil\.example\.com is not configured"):
        source_for(f"oci://evil.example.com/m@{DIGEST}", settings).admit(rules)
    source_for("oci://evil.example.com/m:v1", settings).admit(
        AdmissionRules(registries=frozenset({"*"}))
    )
    source_for(f"hf://acme/clf@{COMMIT}", settings).admit(rules)
    with pytest.raises(UsageError, match=r"pin it \(hf://ORG/NAME@<40-hex commit>\)"):
        source_for("hf://acme/clf@main", settings).admit(rules)
    everything = AdmissionRules(pinned_only=frozenset({"oci", "hf", "mlflow", "path"}))
    with pytest.raises(UsageError, match="pinned"):
        source_for("oci://registry.example.com/m:v1", settings).admit(everything)
    with pytest.raises(UsageError, match="pinned"):
        source_for(str(root / "m"), settings).admit(everything)
    # the command line admits what the user names (no rules)
    with resolve(root / "m", settings) as r:
        assert r.path == root / "m" and r.kind == "path" and r.name == str(root / "m")
