"""Syncer metrics, hung off the consume loop's batch hooks (nothing else in the loop counts).

LogiSense request durations and statuses (`sfls_logisense_request*`) live in the client.
"""

from __future__ import annotations

import time

import structlog
from prometheus_client import Counter, Gauge, Histogram

from services.syncer.batch import Coalesced
from services.syncer.hooks import BatchResult

log = structlog.get_logger(__name__)

BATCH_EVENTS = Histogram(
    "sfls_syncer_batch_events",
    "Change events per batch.",
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000),
)
BATCH_ACCOUNTS = Histogram(
    "sfls_syncer_batch_accounts",
    "Distinct accounts per batch (after coalescing).",
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000),
)
COALESCING_RATIO = Gauge("sfls_syncer_coalescing_ratio", "Change events per account synced, last batch.")
BATCH_SECONDS = Histogram(
    "sfls_syncer_batch_duration_seconds",
    "Time to process, dead-letter and commit one batch.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
EVENTS = Counter("sfls_syncer_events_total", "Change events by outcome.", ["outcome"])
ACCOUNTS = Counter("sfls_syncer_accounts_total", "Account syncs by outcome.", ["outcome"])
WRITES = Counter("sfls_syncer_logisense_writes_total", "LogiSense writes by kind.", ["kind"])
RETRIES = Counter("sfls_syncer_retries_total", "LogiSense request retries by resource.", ["resource"])
BATCHES = Counter("sfls_syncer_batches_total", "Batches by outcome (committed, failed).", ["outcome"])
SOQL = Counter("sfls_syncer_salesforce_queries_total", "SOQL queries issued for batch snapshots.")
LAG = Gauge("sfls_syncer_consumer_lag", "Records behind the high watermark, per partition.", ["partition"])
RETRY_PAUSE = Gauge(
    "sfls_syncer_batch_retry_delay_seconds", "Backoff before a failed batch is retried; 0 once a batch commits."
)
LAST_BATCH = Gauge("sfls_syncer_last_batch_timestamp_seconds", "Unix time the last batch was committed.")


class BatchMetrics:
    """The consume loop's hooks: metrics and one log line per batch."""

    def batch_started(self, batch: Coalesced) -> None:
        BATCH_EVENTS.observe(batch.size)
        BATCH_ACCOUNTS.observe(len(batch.accounts))
        COALESCING_RATIO.set(batch.ratio)

    def batch_finished(self, batch: Coalesced, result: BatchResult, dead_letters: int, seconds: float) -> None:
        failed_events = sum(len(batch.accounts[a].records) for a in result.failures) + len(result.record_failures)
        EVENTS.labels(outcome="synced").inc(batch.size - failed_events - len(batch.malformed))
        EVENTS.labels(outcome="dead_lettered").inc(dead_letters)
        ACCOUNTS.labels(outcome="synced").inc(result.synced_accounts)
        ACCOUNTS.labels(outcome="failed").inc(len(result.failures))
        for kind, n in result.stats.items():
            if kind.endswith(("_creates", "_updates", "_deletes")):
                WRITES.labels(kind=kind).inc(n)
        SOQL.inc(result.stats.get("soql_queries", 0))
        BATCH_SECONDS.observe(seconds)
        BATCHES.labels(outcome="committed").inc()
        LAST_BATCH.set(time.time())
        log.info(
            "batch_done",
            events=batch.size,
            accounts=len(batch.accounts),
            ratio=round(batch.ratio, 2),
            failed_accounts=len(result.failures),
            dead_letters=dead_letters,
            seconds=round(seconds, 3),
            **result.stats,
        )

    def batch_failed(self, batch: Coalesced, error: BaseException) -> None:
        BATCHES.labels(outcome="failed").inc()

    def lag(self, topic: str, partition: int, lag: int) -> None:
        LAG.labels(partition=str(partition)).set(lag)

    def retry_pause(self, seconds: float) -> None:
        RETRY_PAUSE.set(seconds)

    def late_commit(self) -> None:
        """A delivered batch whose commit had failed is committed now: the syncer is current again."""
        LAST_BATCH.set(time.time())
