"""One batch of the syncer: a bulk Salesforce read, LogiSense delivery, the Account link, one request-log record
per account, then the batch's opportunities.

services/syncer/consume.py decides when a batch runs and commits; services/syncer/deliver.py writes
LogiSense; this module joins them and turns the outcome into the Account link (services/syncer/link.py),
request-log records and a BatchResult. The request record of a replayed dead letter's account carries the
failed request's id (services/syncer/batch.py AccountWork.replayed_requests), and a failure's dead letters
name their request (shared/deadletter.py ERROR_REQUEST): the Requests tab joins them by it.
With opportunities followed (`opportunity.watch` or `opportunity.auto_push`), an account whose batch
holds only opportunity events is synced only if LogiSense does not have it yet (it is pulled in, like a
parent), and after the accounts, services/opportunity/automatic.py handles the opportunities of every
account that did not fail; a failed account's opportunity events are dead-lettered with it. With
opportunities not followed, their events are skipped (counted) and committed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import structlog

from services.opportunity.automatic import AutomaticPush
from services.syncer.accounts import sf_id
from services.syncer.batch import Coalesced
from services.syncer.consume import SERVICE
from services.syncer.context import DeliveryReport
from services.syncer.deliver import Deliverer
from services.syncer.hooks import BatchResult
from services.syncer.link import AccountLink
from services.syncer.snapshot import Snapshot, id15, read_snapshot_async
from shared.deadletter import Failure
from shared.events import RequestRecord, RequestStatus
from shared.requests import RequestLog
from shared.salesforce import RecordReader
from shared.settings import Settings

log = structlog.get_logger(__name__)


class BatchProcessor:
    """One batch: bulk Salesforce read, LogiSense delivery, one request-log line per account, opportunities."""

    def __init__(
        self,
        settings: Settings,
        salesforce: RecordReader,
        deliverer: Deliverer,
        request_log: RequestLog,
        *,
        multi_currency: bool = False,
        opportunities: AutomaticPush | None = None,
        link: AccountLink | None = None,
    ) -> None:
        self._settings = settings
        self._multi_currency = multi_currency  # accounts are read with their CurrencyIsoCode
        self._sf = salesforce
        self._deliverer = deliverer
        self._log = request_log
        self._opportunities = opportunities if settings.opportunity.watched else None
        self._link = link

    async def __call__(self, batch: Coalesced) -> BatchResult:
        started_at = datetime.now(UTC)
        started = time.monotonic()
        watched = self._opportunities is not None
        ensure = {a for a, work in batch.accounts.items() if work.only_opportunities}
        skipped = 0
        if not watched:
            skipped = sum(len(r) for w in batch.accounts.values() for r in w.opportunities.values())
            if skipped:
                log.warning("opportunity_events_skipped", events=skipped, why="opportunity.watch and auto_push are off")
        ids = [a for a in batch.accounts if watched or a not in ensure]
        snapshot = await read_snapshot_async(self._sf, self._settings, ids, multi_currency=self._multi_currency)
        extra_queries = 0

        async def read_more(more: list[str]) -> Snapshot:
            nonlocal extra_queries
            found = await read_snapshot_async(self._sf, self._settings, more, multi_currency=self._multi_currency)
            extra_queries += found.queries
            return found

        soql = snapshot.queries
        report = await self._deliverer.deliver(ids, snapshot, read_more, ensure_only=ensure if watched else ())
        seconds = time.monotonic() - started
        failures = self._record_requests(batch, report, started_at, seconds)
        result = BatchResult(failures=failures)
        stats = dict(report.counts)
        if self._link is not None:
            stats["account_links"] = await self._link.write(
                {sf_id(sid, snapshot): ls_id for sid, ls_id in report.logisense_ids.items()},
                {sf_id(sid, snapshot): str(exc) for sid, exc in report.failures.items() if snapshot.exists(sid)},
            )
        if self._opportunities is not None:
            by_account = {
                account_id: list(work.opportunities)
                for account_id, work in batch.accounts.items()
                if work.opportunities and account_id not in failures
            }
            pushed = await self._opportunities.run(by_account)
            extra_queries += pushed.salesforce_queries
            for account_id in by_account:
                for opportunity_id, records in batch.accounts[account_id].opportunities.items():
                    error = pushed.failures.get(opportunity_id)
                    if error is not None:
                        failure = Failure.from_exception(error)
                        result.record_failures += [(record, failure) for record in records]
            for name, n in pushed.outcomes().items():
                stats[name] = stats.get(name, 0) + n
        elif skipped:
            stats["opportunity_events_skipped"] = skipped
        stats["soql_queries"] = soql + extra_queries
        stats["pulled_in_accounts"] = len(report.pulled_in)
        result.synced_accounts = len([a for a in batch.accounts if id15(a) in report.synced])
        result.stats = stats
        return result

    def _record_requests(
        self, batch: Coalesced, report: DeliveryReport, started_at: datetime, seconds: float
    ) -> dict[str, Failure]:
        """One request-log record per account synced or failed; the failures, each naming its request."""
        failures: dict[str, Failure] = {}
        for account_id, work in batch.accounts.items():
            sid = id15(account_id)
            error = report.failures.get(sid)
            if error is None and work.only_opportunities and sid not in report.synced:
                continue  # present in LogiSense (or not followed): nothing was synced for it
            # A replayed dead letter's outcome goes under the request that failed (the Requests tab shows that
            # record turn from Failed into Success); everything else is a new request.
            replayed = work.replayed_requests
            request_ids = replayed or [uuid.uuid4().hex]
            if error is not None:
                failures[account_id] = replace(Failure.from_exception(error), request_id=request_ids[0])
            for request_id in request_ids:
                self._log.write(
                    RequestRecord(
                        request_id=request_id,
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
                        replayed=bool(replayed),
                    )
                )
        return failures
