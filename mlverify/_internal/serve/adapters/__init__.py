"""Admission adapters: each file offers its routes (``routes(service, max_body)``)."""

from __future__ import annotations

#: the adapters, in the order their routes are mounted
ADAPTERS = (
    "mlverify._internal.serve.adapters.check",
    "mlverify._internal.serve.adapters.kubernetes",
    "mlverify._internal.serve.adapters.registry",
    "mlverify._internal.serve.adapters.harbor",
    "mlverify._internal.serve.adapters.report",
)
