"""The Requests tab's retention: requests older than `requests_tab.retention_days` are deleted in bulk.

One SOQL read of the expired ids (`Started__c` before the cutoff), then one Bulk API 2.0 delete job for all of
them; their error logs go with them (a master-detail child is deleted with its request). The writer runs it every
`requests_tab.purge_interval_seconds`; `sfls requests-tab purge` runs it once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from services.requests_tab import metrics
from shared.salesforce import SalesforceRest
from shared.salesforce_view import REQUEST_OBJECT

log = structlog.get_logger(__name__)


def cutoff_of(days: float, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=days)


def expired_ids(rest: SalesforceRest, cutoff: datetime) -> list[str]:
    stamp = cutoff.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    soql = f"SELECT Id FROM {REQUEST_OBJECT} WHERE Started__c < {stamp}"  # noqa: S608 - a formatted datetime
    return [str(row["Id"]) for row in rest.query_all_iter(soql)]


def purge(rest: SalesforceRest, days: float, *, dry_run: bool = False) -> tuple[int, list[str]]:
    """Delete the requests started more than `days` ago (0: none); (deleted or, with `dry_run`, found; errors)."""
    if days <= 0:
        return 0, []
    cutoff = cutoff_of(days)
    ids = expired_ids(rest, cutoff)
    if dry_run or not ids:
        return len(ids), []
    deleted, errors = rest.bulk_delete(REQUEST_OBJECT, ids)
    metrics.PURGED.inc(deleted)
    log.info("requests_purged", deleted=deleted, refused=len(errors), older_than=cutoff.isoformat())
    for error in errors[:5]:
        log.warning("request_purge_refused", error=error)
    return deleted, errors
