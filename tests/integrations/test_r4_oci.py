"""Red-team r4 (a9, host spelling): the name policies match is the name of what is judged.

- ``oci://H/R:TAG@DIGEST``: the tag must name the digest at the registry (else anyone picks
  the policy by picking a tag);
- one registry has one spelling: ``LocalHost:0PORT`` is matched as ``localhost:PORT``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlverify._internal.errors import UsageError
from mlverify._internal.sources.oci import parse_ref
from tests.core.helpers import run
from tests.integrations.conftest import Registry, make_clean_model, make_evil_model
from tests.integrations.conftest import oci_registry as OciRegistry

HEAD = "apiVersion: mlverify.dev/v1\nkind: Policy\n"


def _policies(tmp_path: Path, strict: str) -> Path:
    """A lenient catch-all (warn) and a strict policy for names matching ``strict``."""
    pols = tmp_path / "pols"
    pols.mkdir()
    (pols / "all.yaml").write_text(HEAD + "metadata: {name: lenient}\nspec: {mode: warn}\n")
    (pols / "strict.yaml").write_text(
        HEAD + "metadata: {name: strict}\nspec:\n  mode: enforce\n"
        f"  match: {{paths: ['{strict}']}}\n  scan: {{max_severity: low}}\n"
    )
    return pols


def _push(capsys: pytest.CaptureFixture[str], model: Path, target: str) -> str:
    r = run(capsys, "oci", "push", model, target)
    assert r.code == 0, r.err
    return r.out.strip().rsplit("@", 1)[1]


def _check(capsys: pytest.CaptureFixture[str], pols: Path, ref: str) -> tuple[int, str, str]:
    r = run(capsys, "check", "--policy", pols, "--format", "json", ref)
    return r.code, r.out, r.err


def _policies_of(out: str) -> list[str]:
    doc = json.loads(out)
    return [d["policy"] for r in doc["results"] for d in r["decisions"]]


def test_a_tag_beside_a_digest_must_name_it(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """r4 a9: ``release-1`` names the evil digest (release names are judged strictly);
    ``:dev-1@D`` (dev-1 names a clean model) and ``:dev-never-pushed@D`` were judged by
    the lenient policy their tag chose, and allowed. Now: an error naming both digests,
    never allowed; the true tag is judged (and denied)."""
    repo = f"{registry.host}/r4tags/m"
    evil = _push(capsys, make_evil_model(tmp_path, "evil"), f"oci://{repo}:release-1")
    clean = _push(capsys, make_clean_model(tmp_path, "clean"), f"oci://{repo}:dev-1")
    pols = _policies(tmp_path, "oci://*:release-*")

    code, out, err = _check(capsys, pols, f"oci://{repo}:release-1@{evil}")
    assert code == 1 and "strict" in _policies_of(out), (out, err)

    for tag, current in (("dev-1", clean), ("dev-never-pushed", "no manifest")):
        code, out, err = _check(capsys, pols, f"oci://{repo}:{tag}@{evil}")
        assert code == 1, (tag, code, out, err)  # the name does not hold: not allowed
        doc = json.loads(out)
        assert doc["allowed"] is False and doc["results"][0]["allowed"] is False
        said = out + err
        assert f"names {current}" in said and evil in said and "Traceback" not in said, said
    code, out, err = _check(capsys, pols, f"oci://{repo}:dev-1@{clean}")
    assert code == 0, (out, err)  # a tag that names its digest passes


def test_a_tag_naming_an_index_that_lists_the_digest_passes(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kubernetes runs ``repo:tag@sha256:...`` by the digest; a multi-platform tag names
    an index whose member is that digest: the tag does name it."""
    from mlverify._internal.sources.oci import OCI_INDEX, check_tag

    repo = "r4tags/indexed"
    evil = _push(capsys, make_evil_model(tmp_path, "e"), f"oci://{registry.host}/{repo}:one")
    reg = OciRegistry(registry.host)
    data, media, _ = reg.get_manifest(repo, evil)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": media, "digest": evil, "size": len(data)}],
    }
    reg.push_manifest(repo, "multi", json.dumps(index).encode(), OCI_INDEX)
    check_tag(reg, parse_ref(f"oci://{registry.host}/{repo}:multi@{evil}"))  # no error
    check_tag(reg, parse_ref(f"oci://{registry.host}/{repo}:one@{evil}"))


def test_one_registry_has_one_spelling(
    registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """r4 suspected: a policy for ``oci://localhost:PORT/*`` was escaped by writing the
    host in another case (or the port with a leading zero)."""
    port = registry.host.rsplit(":", 1)[1]
    evil = _push(capsys, make_evil_model(tmp_path, "evil"), f"oci://{registry.host}/r4case/m:v1")
    pols = _policies(tmp_path, f"oci://localhost:{port}/*")
    monkeypatch.setenv("MLVERIFY_OCI_PLAIN_HTTP", "1")
    for host in (f"localhost:{port}", f"LocalHost:{port}", f"LOCALHOST:0{port}"):
        code, out, err = _check(capsys, pols, f"oci://{host}/r4case/m@{evil}")
        assert code == 1 and "strict" in _policies_of(out), (host, out, err)
        artifact = json.loads(out)["results"][0]["artifact"]
        assert artifact.startswith(f"oci://localhost:{port}/"), artifact


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("Registry.Example.COM", "registry.example.com"),
        ("registry.example.com:00443", "registry.example.com:443"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("[0:0::1]:5000", "[::1]:5000"),
        ("[::FFFF:7f00:1]", "[::ffff:7f00:1]"),
    ],
)
def test_canonical_host(given: str, canonical: str) -> None:
    from mlverify._internal.sources.oci import canonical_host

    assert canonical_host(given) == canonical


@pytest.mark.parametrize(
    "host",
    ["registry.example.com.", "a..b", "-a.example", "127.000.000.001", "2130706433",
     "0x7f.1", "h:0", "h:65536", "h:" + "9" * 5000],
)  # fmt: skip
def test_host_spellings_that_are_refused(host: str) -> None:
    with pytest.raises(UsageError):
        parse_ref(f"oci://{host}/a/b")
