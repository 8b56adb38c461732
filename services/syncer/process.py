"""One batch of the syncer: a bulk Salesforce read, LogiSense delivery, one request-log record per account.

services/syncer/consume.py decides when a batch runs and commits; services/syncer/deliver.py writes
LogiSense; this module joins them and turns the outcome into request-log records and a BatchResult.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from services.syncer.batch import Coalesced
from services.syncer.consume import SERVICE, BatchResult
from services.syncer.deliver import Deliverer
from services.syncer.snapshot import Snapshot, id15, read_snapshot_async
from shared.deadletter import Failure
from shared.events import RequestRecord, RequestStatus
from shared.requests import RequestLog
from shared.salesforce import RecordReader
from shared.settings import Settings


class BatchProcessor:
    """One batch: bulk Salesforce read, LogiSense delivery, one request-log line per account."""

    def __init__(
        self,
        settings: Settings,
        salesforce: RecordReader,
        deliverer: Deliverer,
        request_log: RequestLog,
        *,
        multi_currency: bool = False,
    ) -> None:
        self._settings = settings
        self._multi_currency = multi_currency  # accounts are read with their CurrencyIsoCode
        self._sf = salesforce
        self._deliverer = deliverer
        self._log = request_log

    async def __call__(self, batch: Coalesced) -> BatchResult:
        started_at = datetime.now(UTC)
        started = time.monotonic()
        ids = list(batch.accounts)
        snapshot = await read_snapshot_async(self._sf, self._settings, ids, multi_currency=self._multi_currency)
        extra_queries = 0

        async def read_more(more: list[str]) -> Snapshot:
            nonlocal extra_queries
            found = await read_snapshot_async(self._sf, self._settings, more, multi_currency=self._multi_currency)
            extra_queries += found.queries
            return found

        soql = snapshot.queries
        report = await self._deliverer.deliver(ids, snapshot, read_more)
        seconds = time.monotonic() - started
        failures: dict[str, Failure] = {}
        for account_id, work in batch.accounts.items():
            error = report.failures.get(id15(account_id))
            if error is not None:
                failures[account_id] = Failure.from_exception(error)
            self._log.write(
                RequestRecord(
                    request_id=uuid.uuid4().hex,
                    service=SERVICE,
                    kind="account_sync",
                    status=RequestStatus.FAILED if error else RequestStatus.SUCCESS,
                    key=account_id,
                    started_at=started_at,
                    duration_seconds=seconds,
                    attempts=failures[account_id].attempts if error else 1,
                    reason=str(error)[:2000] if error else "",
                    counts={"events": len(work.records)},
                    event_ids=work.event_ids,
                )
            )
        stats = dict(report.counts)
        stats["soql_queries"] = soql + extra_queries
        stats["pulled_in_accounts"] = len(report.pulled_in)
        synced = len([a for a in batch.accounts if id15(a) in report.synced])
        return BatchResult(failures=failures, synced_accounts=synced, stats=stats)
