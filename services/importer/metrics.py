"""The importer's metrics (pushed to a Pushgateway by the Job, see services/importer/app.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OUTCOMES = ("fetched", "published", "created", "updated", "unchanged", "failed", "deleted", "skipped")
ITEMS = Counter("sfls_importer_items", "Imported items by entity and outcome.", ["entity", "outcome"])
RUN_DURATION = Gauge("sfls_importer_run_duration_seconds", "Duration of the last import of the entity.", ["entity"])
BULK_JOBS = Counter(
    "sfls_importer_bulk_jobs",
    "Bulk API 2.0 ingest jobs by entity and outcome (complete: rows landed or were rejected one by one; "
    "failed: Salesforce failed the whole job).",
    ["entity", "outcome"],
)
LAST_SUCCESS = Gauge(
    "sfls_importer_last_success_timestamp_seconds",
    "When the entity last imported with every record landed (Unix time).",
    ["entity"],
)
