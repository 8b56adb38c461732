"""The metrics of one `sfls reconcile` run (pushed to `reconcile.pushgateway_url` when set; its CronJob's)."""

from __future__ import annotations

from prometheus_client import Gauge

from services.reconcile.drift import Kind

DRIFT = Gauge("sfls_reconcile_drift", "Differences the last reconcile run found, by kind.", ["kind"])
RECORDS = Gauge("sfls_reconcile_records", "Records the last reconcile run read, by system.", ["system"])
REPAIRED = Gauge("sfls_reconcile_repaired_accounts", "Accounts the last run resynced through the syncer (--repair).")
DURATION = Gauge("sfls_reconcile_run_duration_seconds", "How long the last reconcile run read and compared.")
LAST_RUN = Gauge("sfls_reconcile_last_run_timestamp_seconds", "When the last reconcile run finished (Unix time).")


def record(drift: dict[str, int], records: dict[str, int], repaired: int, seconds: float) -> None:
    """Set the gauges from a run's report: every kind, a zero for the kinds not found."""
    for kind in Kind:
        DRIFT.labels(kind=kind.value).set(drift.get(kind.value, 0))
    for system, count in records.items():
        RECORDS.labels(system=system).set(count)
    REPAIRED.set(repaired)
    DURATION.set(seconds)
    LAST_RUN.set_to_current_time()
