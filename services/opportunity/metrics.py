"""The push's metrics: outcomes (with the refusal reason) and LogiSense writes per push (dry runs count neither)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PUSHES = Counter(
    "sfls_opportunity_pushes",
    "Opportunity pushes by outcome (pushed, unchanged, refused) and refusal reason ('' unless refused).",
    ["outcome", "reason"],
)
LOGISENSE_WRITES = Histogram(
    "sfls_opportunity_push_logisense_writes",
    "LogiSense writes (creates and PATCHes) one opportunity push made.",
    buckets=(0, 1, 2, 3, 5, 10, 20, 50),
)
