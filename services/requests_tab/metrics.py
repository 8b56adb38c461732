"""Metrics of the Requests tab writer (its Salesforce calls are counted by shared/budget.py, service
`requests_tab`; its consumer lag by the loop's hooks below)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.syncer.hooks import BatchResult

RECORDS = Counter(
    "sfls_requests_tab_records_total",
    "Request records and dead letters by object and outcome (created, updated, skipped, rejected, malformed, "
    "created_from_dead_letter).",
    ["object", "outcome"],
)
REJECTED = Counter(
    "sfls_requests_tab_rejected_total", "Records Salesforce refused, by object and error code.", ["object", "code"]
)
LANDING_SECONDS = Histogram(
    "sfls_requests_tab_landing_seconds",
    "Time to land one batch in Salesforce.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
LAST_LANDING = Gauge("sfls_requests_tab_last_landing_timestamp_seconds", "Unix time the last batch was landed.")
BATCHES = Counter("sfls_requests_tab_batches_total", "Batches by outcome (committed, failed).", ["outcome"])
LAG = Gauge(
    "sfls_requests_tab_consumer_lag", "Records not landed yet, per topic and partition.", ["topic", "partition"]
)
PURGED = Counter("sfls_requests_tab_purged_total", "Requests deleted for being older than the retention.")
PURGE_FAILURES = Counter("sfls_requests_tab_purge_failures_total", "Purges that failed (retried next interval).")


class LoopMetrics:
    """The loop's hooks for the writer (services/syncer/consume.py BatchHooks)."""

    def batch_started(self, batch: object) -> None:
        return

    def batch_finished(self, batch: object, result: BatchResult, dead_letters: int, seconds: float) -> None:
        BATCHES.labels(outcome="committed").inc()

    def batch_failed(self, batch: object, error: BaseException) -> None:
        BATCHES.labels(outcome="failed").inc()

    def lag(self, topic: str, partition: int, lag: int) -> None:
        LAG.labels(topic=topic, partition=str(partition)).set(lag)

    def retry_pause(self, seconds: float) -> None:
        return

    def late_commit(self) -> None:
        return
