"""The automatic path: the opportunities of one syncer batch, pushed (or marked) after their accounts.

services/syncer/process.py calls `AutomaticPush.run` once per batch, after the batch's accounts were
written (an account that LogiSense did not have yet was pulled in first, services/syncer/deliver.py), with
the opportunities of every account whose sync did not fail. The batch's opportunities are read in bulk
(services/opportunity/opportunities.py); accounts run concurrently (at most `sync.concurrency`), the
opportunities of one account one after the other, since they share its price plan.

Per opportunity (`opportunity.auto_push` on: push; only `opportunity.watch` on: mark):
- deleted: skipped;
- not won: `Withdrawn` (with the not_won reason) when it was pushed, nothing deleted in LogiSense; a `Ready`
  or `Stale` mark is cleared; otherwise skipped;
- won, but not on the LogiSense price book: skipped (the org sells other things too), a mark cleared; with
  `opportunity.other_price_books: refuse`, refused like any other reason (not_logisense_price_book);
- won on the book without lines yet: skipped (the events of the lines added next bring it back);
- won on the book: pushed exactly as `sfls opportunity push` does (services/opportunity/app.py); a refusal is
  written to the opportunity (`Failed` and the reason) and returned as the opportunity's failure, which the
  syncer dead-letters. Marking only: `Ready`, or `Stale` when it was pushed and its lines changed since;
  a refusal is written (`Failed`, reason) but not dead-lettered, since nothing was attempted.
Other permanent errors (a Salesforce write refused, LogiSense retries exhausted) fail that opportunity
only; transient ones fail the batch, which the syncer retries (every step is idempotent).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from services.opportunity import opportunities as sf
from services.opportunity.app import PushResult, count, is_unchanged, push_read, request_record
from services.opportunity.plan import CodeNames, PushCache, plan_push
from services.opportunity.refusals import PushRefusedError, Reason
from shared.errors import PermanentError
from shared.logisense import LogisenseClient
from shared.requests import RequestLog
from shared.salesforce import SalesforceRest
from shared.settings import Settings

log = structlog.get_logger(__name__)
MARKS = ("Ready", "Stale")


@dataclass
class AutomaticReport:
    """What one batch's opportunities came to: outcome per opportunity, failures to dead-letter."""

    results: dict[str, PushResult] = field(default_factory=dict)  # 15-character opportunity id -> result
    failures: dict[str, PermanentError] = field(default_factory=dict)  # 15-character opportunity id -> error
    salesforce_queries: int = 0

    def outcomes(self) -> dict[str, int]:
        counted: dict[str, int] = {}
        for result in self.results.values():
            counted[f"opportunities_{result.outcome}"] = counted.get(f"opportunities_{result.outcome}", 0) + 1
        return counted


class AutomaticPush:
    """The syncer's opportunity step; one per syncer process (CodeNames is process-wide)."""

    def __init__(
        self,
        settings: Settings,
        rest: SalesforceRest,
        client: LogisenseClient,
        request_log: RequestLog,
        *,
        on_account: Callable[[str], Callable[[], None]] = lambda _account: lambda: None,
    ) -> None:
        self._settings = settings
        self._rest = rest
        self._client = client
        self._log = request_log
        self._names = CodeNames()
        self._on_account = on_account  # sets the request log's account key; returns the reset

    async def run(self, by_account: Mapping[str, Sequence[str]]) -> AutomaticReport:
        """Handle the opportunities (15-character ids) of each account (module docstring)."""
        report = AutomaticReport()
        ids = sorted({o for opportunities in by_account.values() for o in opportunities})
        if not ids:
            return report
        before = self._rest.counts.get("query", 0)
        settings = self._settings
        found = await asyncio.to_thread(sf.read_opportunities, self._rest, ids, sf.org_currency(settings))
        book_id = await asyncio.to_thread(sf.find_price_book, self._rest, sf.price_book_name(settings))
        report.salesforce_queries = self._rest.counts.get("query", 0) - before
        cache = PushCache()
        semaphore = asyncio.Semaphore(settings.sync.concurrency)

        async def account(account_id: str, opportunities: Sequence[str]) -> None:
            async with semaphore:
                reset = self._on_account(account_id)
                try:
                    for opportunity_id in sorted(set(opportunities)):
                        await self._one(opportunity_id, found.get(opportunity_id), book_id, cache, report)
                finally:
                    reset()

        await asyncio.gather(*(account(a, o) for a, o in by_account.items()))
        return report

    async def _one(
        self,
        opportunity_id: str,
        opp: sf.Opportunity | None,
        book_id: str | None,
        cache: PushCache,
        report: AutomaticReport,
    ) -> None:
        started_at, started = datetime.now(UTC), time.perf_counter()
        try:
            result = await self._decide(opportunity_id, opp, book_id, cache)
        except PermanentError as exc:
            report.failures[opportunity_id] = exc
            result = PushResult(opportunity_id, "failed", reason=type(exc).__name__, message=str(exc))
            log.warning("opportunity_failed", opportunity_id=opportunity_id, error=str(exc))
        report.results[opportunity_id] = result
        if result.outcome == "refused" and self._settings.opportunity.auto_push and result.error is not None:
            report.failures[opportunity_id] = result.error
        count(result, trigger="automatic")
        if result.outcome in ("pushed", "unchanged", "refused", "failed") and self._settings.opportunity.auto_push:
            self._log.write(request_record(result, started_at, time.perf_counter() - started, service="syncer"))

    async def _decide(
        self, opportunity_id: str, opp: sf.Opportunity | None, book_id: str | None, cache: PushCache
    ) -> PushResult:
        if opp is None:
            return PushResult(opportunity_id, "skipped", reason="deleted")
        if not opp.is_won:
            return await self._not_won(opp)
        if (book_id is None or opp.book_id != book_id) and self._settings.opportunity.other_price_books == "skip":
            return await self._skip(opp, Reason.NOT_LOGISENSE_PRICE_BOOK)
        if not opp.lines:  # being built: its lines' own events bring it back
            return await self._skip(opp, Reason.NO_LINES)
        if self._settings.opportunity.auto_push:
            return await push_read(
                self._settings, self._rest, self._client, opp, book_id, dry_run=False, names=self._names, cache=cache
            )
        return await self._mark(opp, book_id, cache)

    async def _not_won(self, opp: sf.Opportunity) -> PushResult:
        """Withdrawn when it was pushed (nothing in LogiSense is deleted), else skipped."""
        if opp.written.get("LogiSense_Price_Plan_Id__c") and opp.status != "Withdrawn":
            refusal = PushRefusedError(Reason.NOT_WON, f"{opp.id} is at stage {opp.stage!r}, not a won stage")
            await self._write(sf.write_refused, self._rest, opp, refusal)
            return PushResult(opp.id, "withdrawn", reason=Reason.NOT_WON.value, message=str(refusal))
        return await self._skip(opp, Reason.NOT_WON)

    async def _skip(self, opp: sf.Opportunity, reason: Reason) -> PushResult:
        if opp.status in MARKS:
            await self._write(sf.write_status, self._rest, opp.id, None, None)
        return PushResult(opp.id, "skipped", reason=reason.value)

    async def _mark(self, opp: sf.Opportunity, book_id: str | None, cache: PushCache) -> PushResult:
        """`opportunity.watch` without auto_push: Ready, Stale, or Failed with the reason; no LogiSense write."""
        try:
            sf.check_qualifies(opp, book_id, sf.price_book_name(self._settings))
            push = await plan_push(self._client, opp, self._settings.logisense.link_field, cache)
        except PushRefusedError as exc:
            if opp.status != "Failed" or opp.written.get("LogiSense_Push_Reason__c") != str(exc):
                await self._write(sf.write_refused, self._rest, opp, exc)
            return PushResult(opp.id, "refused", reason=exc.reason.value, message=str(exc))
        if is_unchanged(opp, push):
            return PushResult(opp.id, "unchanged", push_hash=push.push_hash)
        status = "Stale" if opp.status in ("Pushed", "Stale") else "Ready"
        if opp.status != status or opp.written.get("LogiSense_Push_Reason__c"):
            await self._write(sf.write_status, self._rest, opp.id, status, None)
        return PushResult(opp.id, status.lower(), push_hash=push.push_hash)

    @staticmethod
    async def _write(fn: Callable[..., None], *args: object) -> None:
        await asyncio.to_thread(fn, *args)
