"""The in-process verdict store (``memory://``): one replica, forgotten on restart."""

from __future__ import annotations

import threading
from collections import OrderedDict

from mlverify._internal.serve.store.base import FileEvidence, ScanRequest, StoredVerdict


class MemoryStore:
    """Bounded: the oldest verdicts and scan requests go first beyond ``capacity``."""

    url = "memory://"

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._verdicts: OrderedDict[str, StoredVerdict] = OrderedDict()
        self._jobs: OrderedDict[str, list[object]] = OrderedDict()
        self._scans: OrderedDict[str, ScanRequest] = OrderedDict()
        self._evidence: OrderedDict[str, FileEvidence] = OrderedDict()

    def _trim(self, d: OrderedDict[str, object] | OrderedDict[str, StoredVerdict]) -> None:
        while len(d) > self.capacity:
            d.popitem(last=False)

    def get(self, key: str) -> StoredVerdict | None:
        with self._lock:
            return self._verdicts.get(key)

    def get_many(self, keys: list[str]) -> dict[str, StoredVerdict]:
        with self._lock:
            return {k: self._verdicts[k] for k in keys if k in self._verdicts}

    def states(self, keys: list[str]) -> dict[str, tuple[bool, float]]:
        return {k: (v.allowed, v.valid_until) for k, v in self.get_many(keys).items()}

    def put(self, verdict: StoredVerdict, *, now: float) -> bool:
        with self._lock:
            old = self._verdicts.get(verdict.key)
            if old is not None and old.current(now):
                return False
            self._verdicts.pop(verdict.key, None)
            self._verdicts[verdict.key] = verdict
            self._trim(self._verdicts)
            return True

    def deliver(self, key: str, ref: str, now: float) -> int:
        with self._lock:
            v = self._verdicts.get(key)
            if v is not None and v.current(now):
                return 0
            job = self._jobs.setdefault(key, [ref, 0, "", now])
            new_round = v is not None and v.decided_at >= float(str(job[3]))
            job[1] = 1 if new_round else int(str(job[1])) + 1
            job[3] = now
            self._trim(self._jobs)  # type: ignore[arg-type]
            return int(str(job[1]))

    def note_error(self, key: str, error: str, now: float) -> None:
        with self._lock:
            if key in self._jobs:
                self._jobs[key][2] = error
                self._jobs[key][3] = now

    def deliveries(self, key: str) -> int:
        with self._lock:
            job = self._jobs.get(key)
            return int(str(job[1])) if job else 0

    def verdicts(
        self, *, denied: bool = False, limit: int = 100_000, newest: bool = False
    ) -> list[StoredVerdict]:
        with self._lock:
            out = [v for v in self._verdicts.values() if not (denied and v.allowed)]
        return sorted(out, key=lambda v: (v.decided_at, v.key), reverse=newest)[:limit]

    def add_scan(self, scan: ScanRequest) -> None:
        with self._lock:
            self._scans.setdefault(scan.id, scan)
            self._trim(self._scans)  # type: ignore[arg-type]

    def get_scan(self, scan_id: str) -> ScanRequest | None:
        with self._lock:
            return self._scans.get(scan_id)

    def get_evidence(self, keys: list[str]) -> dict[str, FileEvidence]:
        with self._lock:
            return {k: self._evidence[k] for k in keys if k in self._evidence}

    def put_evidence(self, evidence: FileEvidence) -> bool:
        with self._lock:
            if evidence.key in self._evidence:
                return False
            self._evidence[evidence.key] = evidence
            self._trim(self._evidence)  # type: ignore[arg-type]
            return True

    def close(self) -> None:
        pass
