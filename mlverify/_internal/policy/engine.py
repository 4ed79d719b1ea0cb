"""Stage 6: evaluate a policy over an evidence document into a decision.

Fail closed by construction: every check that cannot find its evidence denies
with "missing evidence: X"; a rule that errors denies; an artifact that no
policy matches is denied by :func:`decide`. Every reason is collected; nothing
stops at the first.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mlverify._internal.attest.intoto import SLSA_PROVENANCE_V1
from mlverify._internal.evidence import Evidence, FindingEvidence
from mlverify._internal.policy.model import SEVERITIES, Exemption, Policy

Level = Literal["deny", "warn", "info"]


@dataclass(frozen=True)
class Reason:
    level: Level
    code: str
    message: str
    remedy: str = ""
    #: the file of the artifact the reason is about (relative to its root), and the
    #: member inside that file (an archive's); "" when about the artifact as a whole
    file: str = ""
    member: str = ""

    def to_json(self) -> dict[str, str]:
        out = {
            "level": self.level,
            "code": self.code,
            "message": self.message,
            "remedy": self.remedy,
        }
        if self.file:
            out.update(file=self.file, member=self.member)
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Reason:
        """Read back what :meth:`to_json` wrote; keys added by reports (``atlas``) are
        annotations, not part of the reason."""
        level = doc["level"]
        if level not in ("deny", "warn", "info"):
            raise ValueError(f"unknown reason level {level!r}")
        return cls(
            level,
            str(doc["code"]),
            str(doc["message"]),
            str(doc.get("remedy", "")),
            str(doc.get("file", "")),
            str(doc.get("member", "")),
        )


@dataclass(frozen=True)
class Decision:
    artifact: str
    policy: str  #: policy name ("" when none matched)
    policy_source: str
    mode: str
    allowed: bool
    reasons: tuple[Reason, ...]

    @property
    def would_deny(self) -> bool:
        return any(r.level == "deny" for r in self.reasons)

    def to_json(self) -> dict[str, object]:
        return {
            "artifact": self.artifact,
            "policy": self.policy,
            "policy_source": self.policy_source,
            "mode": self.mode,
            "allowed": self.allowed,
            "reasons": [r.to_json() for r in self.reasons],
        }


def matches(policy: Policy, evidence: Evidence) -> bool:
    """Does ``policy`` govern this artifact? (No match block: it governs all.)"""
    return governs(policy, evidence.artifact.ref, evidence.artifact.formats)


def governs(policy: Policy, ref: str, formats: Sequence[str]) -> bool:
    """Does ``policy`` govern the artifact named ``ref`` holding ``formats``?"""
    if policy.match_paths and not any(
        fnmatch.fnmatchcase(ref, p) or fnmatch.fnmatchcase(ref.rstrip("/") + "/", p)
        for p in policy.match_paths
    ):
        return False
    return not policy.match_formats or bool(set(policy.match_formats) & set(formats))


def _severity_rank(name: str) -> int:
    return SEVERITIES.index(name) if name in SEVERITIES else len(SEVERITIES)


def _exemption_for(finding: FindingEvidence, exemptions: Sequence[Exemption]) -> Exemption | None:
    for ex in exemptions:
        if ex.rule not in (finding.rule_id, "*"):
            continue
        if ex.subject and ex.subject != finding.subject:
            continue
        if ex.file and not fnmatch.fnmatchcase(finding.file, ex.file):
            continue
        return ex
    return None


#: File name extensions of model weights and serialised objects: content with one of
#: them is model content even when the scanner recognises no format in it ("data").
MODEL_EXTENSIONS = (
    ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dill", ".safetensors",
    ".gguf", ".ggml", ".onnx", ".h5", ".hdf5", ".keras", ".pb", ".tflite", ".npy", ".npz",
    ".msgpack", ".model", ".mar", ".pte", ".pt2", ".mlmodel", ".llamafile", ".nemo",
)  # fmt: skip


def is_model_content(name: str, status: str | None) -> bool:
    """Recognised by the scanner (anything but "data"), or named like a model file."""
    return status != "data" or name.lower().endswith(MODEL_EXTENSIONS)


def _names(names: Sequence[str], limit: int = 10) -> str:
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")


def _signature_reasons(policy: Policy, ev: Evidence) -> list[Reason]:
    rules = policy.signatures
    out: list[Reason] = []
    # distinct people: the same signature given twice, or one owner's old and new key,
    # count once
    verified = {s.owner or s.signer for s in ev.signatures if s.verified}
    for s in ev.signatures:
        if s.verified:
            out.append(Reason("info", "signature.verified", f"signed by {s.signer} ({s.source})"))
        elif s.status == "mismatch":
            out.append(
                Reason(
                    "deny",
                    "signature.mismatch",
                    s.reason,
                    "the files changed after signing: restore them or re-sign after review",
                )
            )
        else:
            level: Level = "deny" if rules.required else "warn"
            out.append(Reason(level, f"signature.{s.status}", s.reason))
    if verified and ev.unsigned_files:
        loadable = [n for n in ev.unsigned_files if is_model_content(n, ev.scan_status.get(n))]
        other = [n for n in ev.unsigned_files if n not in loadable]
        if loadable:
            out.append(
                Reason(
                    "deny" if rules.required else "warn",
                    "signature.unsigned_content",
                    f"unsigned content: {_names(loadable)} ride(s) along with the signature "
                    "but is not covered by it (a loader can be pointed at it)",
                    "remove it, or re-sign the model so that the signature covers it",
                )
            )
        if other:
            out.append(
                Reason(
                    "info",
                    "signature.unsigned_data",
                    f"not covered by the signature (no model format, no model file "
                    f"extension): {_names(other)}",
                )
            )
    if not ev.signatures:
        if rules.required:
            out.append(
                Reason(
                    "deny",
                    "evidence.missing",
                    "missing evidence: signature (no signature file found)",
                    "sign the model (mlverify sign) and keep model.sig with it",
                )
            )
        else:
            out.append(
                Reason(
                    "warn",
                    "signature.absent",
                    "unsigned: nothing proves who produced these bytes",
                    "sign it (mlverify sign)",
                )
            )
    elif (
        rules.required
        and len(verified) < rules.threshold
        and (rules.threshold > 1 or not any(r.level == "deny" for r in out))
    ):
        out.append(
            Reason(
                "deny",
                "signature.threshold",
                f"{len(verified)} distinct trusted signer(s)"
                + (f" ({', '.join(sorted(verified))})" if verified else "")
                + f", {rules.threshold} required",
                "add signatures by other trusted signers",
            )
        )
    return out


def _provenance_reasons(policy: Policy, ev: Evidence) -> list[Reason]:
    if not policy.provenance.required:
        return []
    slsa = [a for a in ev.attestations if a.predicate_type == SLSA_PROVENANCE_V1]
    if slsa:
        return [
            Reason("info", "provenance.verified", f"provenance by {a.signer} ({a.source})")
            for a in slsa
        ]
    why = "; ".join(f"{f.source}: {f.reason}" for f in ev.failed_attestations)
    return [
        Reason(
            "deny",
            "evidence.missing",
            "missing evidence: verified SLSA provenance" + (f" (rejected: {why})" if why else ""),
            "attach provenance (mlverify attest provenance) signed by a trusted signer",
        )
    ]


def _format_reasons(policy: Policy, ev: Evidence) -> list[Reason]:
    out: list[Reason] = []
    formats = set(ev.artifact.formats)
    if policy.allowed_formats:
        # Unrecognised bytes named like a model file: a loader will read them as one
        # (a format the scanner does not know is not an allowed format).
        unknown = [
            name
            for name, status in sorted(ev.scan_status.items())
            if status == "data"
            and is_model_content(name, status)
            and not any(fnmatch.fnmatchcase(name, g) for g in policy.allowed_data)
        ]
        if unknown:
            out.append(
                Reason(
                    "deny",
                    "format.unrecognised",
                    f"{_names(unknown)}: named like a model file but in no format the scanner "
                    f"recognises (allowed: {', '.join(policy.allowed_formats)})",
                    "convert it to an allowed format, or list it in formats.allow_data "
                    "if it is plain data",
                )
            )
        extra = sorted(formats - set(policy.allowed_formats))
        if extra:
            out.append(
                Reason(
                    "deny",
                    "format.not_allowed",
                    f"format(s) {', '.join(extra)} not allowed "
                    f"(allowed: {', '.join(policy.allowed_formats)})",
                    "convert the model to an allowed format (e.g. safetensors)",
                )
            )
    denied = sorted(formats & set(policy.denied_formats))
    if denied:
        out.append(
            Reason(
                "deny",
                "format.denied",
                f"format(s) {', '.join(denied)} denied by policy",
                "convert the model to a format that cannot carry code (e.g. safetensors)",
            )
        )
    return out


def _scan_reasons(policy: Policy, ev: Evidence, today: dt.date) -> list[Reason]:
    if not any(ev.scan_counts.values()) and not ev.scan_status:
        return [Reason("deny", "evidence.missing", "missing evidence: scan results")]
    out: list[Reason] = []
    limit = _severity_rank(policy.max_severity)
    for f in ev.findings:
        if _severity_rank(f.severity) <= limit:
            continue
        where = (
            f.file
            + (f"!{f.member}" if f.member else "")
            + (f" @{f.offset}" if f.offset is not None else "")
        )
        text = f"{f.severity} {f.rule_id} in {where}: {f.message}" + (
            f" [{f.chain}]" if f.chain else ""
        )
        ex = _exemption_for(f, policy.exemptions)
        if ex and ex.expires >= today:
            out.append(
                Reason(
                    "info",
                    "scan.exempted",
                    f"{text} (exempted by {ex.owner} until {ex.expires}: {ex.reason})",
                )
            )
            continue
        remedy = "do not load this file; obtain it from a trusted source or convert to safetensors"
        if ex:
            text += f" (exemption by {ex.owner} expired on {ex.expires})"
            remedy = "renew the exemption after review, or remove the file"
        out.append(Reason("deny", "scan.finding", text, remedy, f.file, f.member))
    if not policy.allow_unsupported:
        for path, status in sorted(ev.scan_status.items()):
            if status == "unsupported":
                out.append(
                    Reason(
                        "deny",
                        "scan.unsupported",
                        f"{path}: recognised but could not be fully checked (unsupported)",
                        "re-save it in a supported form, or set formats.allow_unsupported",
                        path,
                    )
                )
    return out


def _rule_reasons(policy: Policy, ev: Evidence) -> list[Reason]:
    if not policy.rules:
        return []
    from mlverify._internal.policy.cel import CompiledRule, RuleError

    doc = ev.to_json()
    out: list[Reason] = []
    for rule in policy.rules:
        try:
            result = CompiledRule(rule.expr).evaluate(doc)
        except RuleError as e:
            out.append(Reason("deny", "rule.error", f"rule {rule.name} does not compile: {e}"))
            continue
        if result.error:
            out.append(
                Reason(
                    "deny", "rule.error", f"rule {rule.name} could not be evaluated: {result.error}"
                )
            )
        elif not result.passed:
            out.append(Reason("deny", "rule.failed", f"{rule.name}: {rule.message}"))
    return out


def evaluate(policy: Policy, evidence: Evidence, today: dt.date | None = None) -> Decision:
    """The decision of one policy on one evidence document."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    reasons: list[Reason] = []
    checks: list[Callable[[], list[Reason]]] = [
        lambda: _signature_reasons(policy, evidence),
        lambda: _provenance_reasons(policy, evidence),
        lambda: _format_reasons(policy, evidence),
        lambda: _scan_reasons(policy, evidence, today),
        lambda: _rule_reasons(policy, evidence),
    ]
    for check in checks:
        try:
            reasons.extend(check())
        except Exception as e:  # an evaluation error denies, it never admits
            reasons.append(
                Reason("deny", "policy.error", f"evaluation error: {type(e).__name__}: {e}")
            )
    for s in evidence.failed_attestations:
        reasons.append(Reason("info", "attestation.rejected", f"{s.source}: {s.reason}"))
    denies = any(r.level == "deny" for r in reasons)
    return Decision(
        artifact=evidence.artifact.ref,
        policy=policy.name,
        policy_source=policy.source,
        mode=policy.mode,
        allowed=not denies or policy.mode == "warn",
        reasons=tuple(reasons),
    )


def decide(
    policies: Sequence[Policy], evidence: Evidence, today: dt.date | None = None
) -> list[Decision]:
    """Decisions of every policy that governs the artifact; denied if none does."""
    governing = [p for p in policies if matches(p, evidence)]
    if not governing:
        names = ", ".join(p.name for p in policies) or "none loaded"
        return [
            Decision(
                artifact=evidence.artifact.ref,
                policy="",
                policy_source="",
                mode="enforce",
                allowed=False,
                reasons=(
                    Reason(
                        "deny",
                        "policy.no_match",
                        f"no policy governs this artifact (policies: {names})",
                        "add a policy whose match block covers it",
                    ),
                ),
            )
        ]
    return [evaluate(p, evidence, today) for p in governing]
