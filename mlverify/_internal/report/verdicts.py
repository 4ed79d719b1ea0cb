"""Verdicts as check-result documents: what the posture page (``serve``'s ``/report``,
``report --store``) and the event stream (``serve --events``, ``worker --events``) are
built from. One conversion for the verdicts a service reaches in process and for the
verdict store's rows.

A verdict with a policy decision is its ``CheckResult`` JSON (evidence and all); one
without (the bytes failed verification, the check failed, a dead-lettered job, a
verdict that could not be queued) becomes an undecided result (outcome ``error``)
carrying its reasons, its reference and its digest: never an allow.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlverify._internal.report.events import EventStream
    from mlverify._internal.serve.service import Verdict
    from mlverify._internal.serve.store.base import StoredVerdict, VerdictStore

#: The most verdicts one posture page renders (the newest): a store of millions never
#: makes a page, nor the memory it takes, grow without bound.
PAGE_LIMIT = 1000


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")


def undecided(ref: str, message: str, digest: str, when: float) -> dict[str, Any]:
    """The check-result document of a verdict reached without a policy decision."""
    from mlverify._internal.check import CheckResult

    artifact: dict[str, Any] = {"ref": ref}
    if digest:
        artifact["digest"] = digest
    evidence = {"time": _iso(when), "artifact": artifact}
    return CheckResult(ref, (), evidence, "error", message or "denied").to_json()


def stored_document(v: StoredVerdict) -> dict[str, Any]:
    """The check-result document of a stored verdict."""
    if v.kind == "decided":
        try:
            doc = v.result_json()
        except ValueError:  # a row we cannot read is shown as what it says: not admitted
            doc = None
        if doc is not None and isinstance(doc.get("decisions"), list) and "artifact" in doc:
            evidence = doc.get("evidence")
            if isinstance(evidence, dict) and not evidence.get("time"):
                doc["evidence"] = {**evidence, "time": _iso(v.decided_at)}
            return doc
    reasons = "; ".join(v.reasons) or (
        "stored decision unreadable" if v.kind == "decided" else v.kind
    )
    return undecided(v.ref, reasons, v.digest, v.decided_at)


def verdict_document(v: Verdict, when: float | None = None) -> dict[str, Any]:
    """The check-result document of a verdict a service reached."""
    if v.result is not None:
        return v.result.to_json()
    return undecided(v.ref, v.error or v.note, v.digest, time.time() if when is None else when)


def store_documents(
    store: VerdictStore, limit: int = PAGE_LIMIT
) -> tuple[list[dict[str, Any]], bool]:
    """The newest ``limit`` verdicts of ``store`` as documents, and whether there are more."""
    rows = store.verdicts(limit=limit + 1, newest=True)
    return [stored_document(v) for v in rows[:limit]], len(rows) > limit


def limit_note(shown: int, more: bool) -> str:
    """What the page says about its bound."""
    if not more:
        return ""
    return (
        f"The store holds more verdicts than one page renders: the newest {shown} are shown "
        "(`mlverify verdicts` lists them all)."
    )


def reached(verdict: Verdict, store: VerdictStore | None, events: EventStream | None) -> None:
    """A verdict the service reached in process: recorded in its store (for ``/report``,
    the latest per reference; never reused as a verdict: it is stored already expired)
    and written to the event stream. Neither can change the verdict nor raise."""
    try:
        _record(verdict, store, events)
    except Exception as e:  # the page loses a row, the stream an event; the verdict stands
        import logging

        logging.getLogger("mlverify._internal.serve").warning(
            "verdict not recorded for /report or events",
            extra={"error": f"{type(e).__name__}: {e}"[:300]},
        )


def _record(verdict: Verdict, store: VerdictStore | None, events: EventStream | None) -> None:
    from mlverify._internal.serve.store.base import StoredVerdict

    now = time.time()
    doc = verdict_document(verdict, now)
    if events is not None:
        events.emit(doc)
    if store is None:
        return
    import json

    decided = verdict.result is not None
    stored = StoredVerdict(
        key=f"in-process:{verdict.ref}",
        ref=verdict.ref,
        digest=verdict.digest,
        allowed=verdict.allowed,
        kind="decided" if decided else "failed",
        decided_at=now,
        valid_until=now,  # a record for the page, never a cached verdict
        reasons=tuple(verdict.messages()),
        result=json.dumps(doc, sort_keys=True) if decided else "",
    )
    store.put(stored, now=now)


def emit_stored(events: EventStream, store: VerdictStore, key: str) -> None:
    """The events of the verdict a worker just stored under ``key``; never raises (the
    verdict is stored: the stream cannot change it, nor make the job run again)."""
    try:
        v = store.get(key)
        if v is not None:
            events.emit(stored_document(v))
    except Exception as e:
        import logging

        logging.getLogger("mlverify._internal.events").error(
            "event stream: verdict not read back",
            extra={"key": key, "error": f"{type(e).__name__}: {e}"[:300]},
        )
