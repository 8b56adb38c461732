"""The push's metrics: outcomes (with the refusal reason) and LogiSense writes per push (dry runs count neither)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PUSHES = Counter(
    "sfls_opportunity_pushes",
    "Opportunities handled, by outcome (pushed, unchanged, refused; the automatic path also ready, stale, "
    "withdrawn, skipped), refusal or skip reason, and trigger (command, automatic).",
    ["outcome", "reason", "trigger"],
)
LOGISENSE_WRITES = Histogram(
    "sfls_opportunity_push_logisense_writes",
    "LogiSense writes (creates, PATCHes, deletes) one opportunity push made.",
    buckets=(0, 1, 2, 3, 5, 10, 20, 50),
)
