"""An import run: for each entity, in landing order, fetch -> publish -> land, then report.

Per entity the fetch (async LogiSense paging) and the landing (simple-salesforce, in a worker
thread) overlap through a queue of at most `importer.in_flight_batches` batches of
`importer.batch_size` records, so memory is bounded by those two settings (plus the set of ids
used for tombstones), whatever the size of the catalogue.

What a run writes, per entity:
- every fetched item to its compacted topic, keyed by LogiSense id; tombstones for ids that the
  topic had and the fetch did not return (full runs whose fetch completed only: a fetch cut short
  by an outage publishes none, see publish.py);
- changed records to Salesforce (see land.py); a rejected record to the importer's dead-letter
  topic with the entity, the LogiSense id and Salesforce's reason;
- one request-log record (`sfls.requests`) with status, counts, duration and the first reasons.
A dry run fetches, reads stored hashes and the topic's ids, and reports what it would write.

The price book's two entities (`price_book`, `price_book_entry`) are not fetched item by item:
they are derived from the catalogue after its entities ran, and land through the same Lander,
counting, dead letters, metrics and request log (services/importer/price_book.py says how).

An entity that fails as a whole (LogiSense unreachable after retries) is reported and the run
goes on with the next; the run is `ok` only if every record of every entity landed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import structlog

from services.importer import fetch
from services.importer.entities import PRICE_BOOK_NAMES
from services.importer.land import Landed, Lander
from services.importer.metrics import BULK_JOBS, ITEMS, LAST_SUCCESS, OUTCOMES, RUN_DURATION
from services.importer.model import ImportEntity
from services.importer.price_book import BOOK, ENTRY, PriceBook, PriceBookWriter, catalogue_entries
from services.importer.publish import Publisher, live_ids
from services.importer.targets import resolve
from services.importer.transform import Key, Prepared, logisense_id, to_record
from shared.errors import MappingError, SflsError
from shared.events import RequestRecord, RequestStatus
from shared.kafka import Topics
from shared.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

MAX_REASONS = 5


@dataclass
class EntityReport:
    """One row of the run summary."""

    entity: str
    fetched: int = 0
    published: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    deleted: int = 0
    skipped: int = 0  # planned but not sent (a price book entry in a currency the org does not have)
    duration_seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not sent and why (not a failure)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.error

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in OUTCOMES}

    def note(self, reason: str) -> None:
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class RunReport:
    entities: list[EntityReport]
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entities)


class Progress(Protocol):
    def start(self, entity: str) -> None: ...

    def advance(self, entity: str, fetched: int) -> None: ...

    def finish(self, report: EntityReport) -> None: ...


class LogProgress:
    """Progress as JSON log lines (one per entity start and end), for pods and pipes."""

    def start(self, entity: str) -> None:
        log.info("import_started", entity=entity)

    def advance(self, entity: str, fetched: int) -> None:
        return

    def finish(self, report: EntityReport) -> None:
        log.info("import_finished", **report.as_dict())


class AccountLinks(Protocol):
    async def __call__(self, account_ids: Sequence[int]) -> dict[int, str | None]: ...


class Importer:
    """Runs entities one after another with shared clients; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        logisense: fetch.LogisenseReader,
        salesforce: PriceBookWriter,
        publisher: Publisher | None,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
        account_links: AccountLinks | None = None,
    ) -> None:
        self.settings = settings
        self._ls = logisense
        self._sf = salesforce
        self._publisher = publisher
        self._dry_run = dry_run or publisher is None
        self._progress = progress or LogProgress()
        self._account_links = account_links
        self._topics = Topics(settings.kafka.topic_prefix)

    async def run(self, names: Sequence[str], *, invoice_conditions: Sequence[dict[str, Any]] = ()) -> RunReport:
        reports = []
        for name in names:
            if name in PRICE_BOOK_NAMES:
                continue
            entity = resolve(name, self.settings)
            conditions = invoice_conditions if entity.name == "invoice" else ()
            reports.append(await self.import_entity(entity, conditions))
        if any(name in PRICE_BOOK_NAMES for name in names):
            reports.extend(await self._price_book(names))
        return RunReport(reports, dry_run=self._dry_run)

    async def _price_book(self, names: Sequence[str]) -> list[EntityReport]:
        """The price book, then its entries (services/importer/price_book.py), after the catalogue landed."""
        book = PriceBook(self.settings, self._sf, dry_run=self._dry_run)

        async def land_book(report: EntityReport) -> None:
            report.fetched = 1
            self._count(BOOK, report, await asyncio.to_thread(book.land_book))

        async def land_entries(report: EntityReport) -> None:
            entries = await catalogue_entries(self._ls, page_size=self.settings.logisense.page_size)
            plan = await asyncio.to_thread(book.plan, entries)
            report.fetched, report.skipped = plan.planned, sum(plan.skipped.values())
            if plan.skipped:
                listed = ", ".join(f"{code} {count}" for code, count in sorted(plan.skipped.items()))
                report.notes.append(f"{report.skipped} entries not sent, currencies the org does not have: {listed}")
            for landed in await asyncio.to_thread(book.land_entries, plan):
                self._count(ENTRY, report, landed)
            self._progress.advance(ENTRY.name, report.fetched)

        reports = []
        if BOOK.name in names:
            reports.append(await self.import_entity(BOOK, body=land_book))
        if ENTRY.name in names:
            reports.append(await self.import_entity(ENTRY, body=land_entries))
        return reports

    async def import_entity(
        self,
        entity: ImportEntity,
        conditions: Sequence[dict[str, Any]] = (),
        *,
        body: Callable[[EntityReport], Awaitable[None]] | None = None,
    ) -> EntityReport:
        """Import one entity (or run `body`, for the price book) with its timing, metrics and request record."""
        report = EntityReport(entity.name)
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        self._progress.start(entity.name)
        try:
            await (body(report) if body is not None else self._import(entity, conditions, report))
        except SflsError as exc:
            report.error = str(exc)
            log.error("import_entity_failed", entity=entity.name, error=str(exc))  # noqa: TRY400 - the reason is the message; no traceback for an expected outage
        report.duration_seconds = time.perf_counter() - started
        self._record(entity, report, started_at)
        self._progress.finish(report)
        return report

    async def _import(self, entity: ImportEntity, conditions: Sequence[dict[str, Any]], report: EntityReport) -> None:
        cfg = self.settings.importer
        topic = entity.topic(self._topics)
        full = not conditions
        live = await asyncio.to_thread(live_ids, self.settings.kafka, topic) if full else None
        if full and live is None:
            log.warning("no_tombstone_state", entity=entity.name, topic=topic, reason="topic missing")
        lander = Lander(
            self._sf,
            entity,
            external_id_field=cfg.external_id_field,
            hash_field=cfg.hash_field,
            parents={r.entity: resolve(r.entity, self.settings).sobject for r in entity.relations},
            dry_run=self._dry_run,
            bulk_threshold=cfg.bulk_threshold,
        )
        queue: asyncio.Queue[list[Prepared] | None] = asyncio.Queue(maxsize=cfg.in_flight_batches)
        landing = asyncio.create_task(self._land_all(queue, lander, report))
        try:
            pending: list[dict[str, Any]] = []
            async for item in fetch.items(
                self._ls, entity, page_size=self.settings.logisense.page_size, conditions=conditions
            ):
                report.fetched += 1
                pending.append(item)
                if len(pending) >= cfg.batch_size:
                    await self._guarded(queue.put(await self._prepare(entity, pending, report, live, topic)), landing)
                    self._progress.advance(entity.name, report.fetched)
                    pending = []
            if pending:
                await self._guarded(queue.put(await self._prepare(entity, pending, report, live, topic)), landing)
                self._progress.advance(entity.name, report.fetched)
            await self._guarded(queue.put(None), landing)
            await landing
        finally:
            if not landing.done():
                landing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await landing
        if live:
            report.deleted = len(live)
            if self._publisher is not None and not self._dry_run:
                for identity in sorted(live):
                    self._publisher.tombstone(topic, entity.name, identity)
        if self._publisher is not None and not self._dry_run:
            await asyncio.to_thread(self._publisher.flush)

    @staticmethod
    async def _guarded(step: Awaitable[T], landing: asyncio.Task[None]) -> T:
        """Await `step` unless the landing task dies first (then raise its error instead of waiting forever)."""
        task = asyncio.ensure_future(step)
        done, _ = await asyncio.wait({task, landing}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        landing.result()
        raise SflsError("the landing of this entity stopped early")

    async def _prepare(
        self,
        entity: ImportEntity,
        items: list[dict[str, Any]],
        report: EntityReport,
        live: set[int] | None,
        topic: str,
    ) -> list[Prepared]:
        cfg = self.settings.importer
        links: dict[int, str | None] = {}
        if entity.name == "invoice" and self._account_links is not None:
            links = await self._account_links(sorted({int(i["accountId"]) for i in items if i.get("accountId")}))
        prepared = []
        for item in items:
            try:
                account = links.get(int(item["accountId"])) if item.get("accountId") else None
                one = to_record(
                    entity, item, external_id_field=cfg.external_id_field, hash_field=cfg.hash_field, account_id=account
                )
            except (MappingError, ValueError) as exc:
                self._reject(entity, report, _safe_id(item), record=item, error=f"cannot map: {exc}", response="")
                continue
            if live is not None:
                live.discard(int(one.logisense_id))
            if self._publisher is not None and not self._dry_run:
                self._publisher.item(
                    topic, entity.name, one.logisense_id, self._published_value(entity, item), one.hash
                )
                report.published += 1
            prepared.append(one)
        return prepared

    def _published_value(self, entity: ImportEntity, item: dict[str, Any]) -> dict[str, Any]:
        if entity.name != "invoice":
            return item
        labels = {c.column: c.label or c.column for c in self.settings.mappings.invoice_columns}
        columns = [c.logisense for c in entity.columns if c.logisense != "accountId"]
        return {
            **item,
            "displayColumns": [{"column": c, "label": labels.get(c, c), "value": item.get(c)} for c in columns],
        }

    async def _land_all(
        self, queue: asyncio.Queue[list[Prepared] | None], lander: Lander, report: EntityReport
    ) -> None:
        while (batch := await queue.get()) is not None:
            self._count(lander.entity, report, await asyncio.to_thread(lander.land, batch))
        self._count(lander.entity, report, await asyncio.to_thread(lander.finish))

    def _count(self, entity: ImportEntity, report: EntityReport, landed: Landed) -> None:
        report.created += landed.created
        report.updated += landed.updated
        report.unchanged += landed.unchanged
        if landed.bulk_jobs:
            BULK_JOBS.labels(entity=entity.name, outcome="complete").inc(landed.bulk_jobs - landed.bulk_jobs_failed)
            BULK_JOBS.labels(entity=entity.name, outcome="failed").inc(landed.bulk_jobs_failed)
            log.info("import_bulk_jobs", entity=entity.name, jobs=landed.bulk_jobs, failed=landed.bulk_jobs_failed)
        for rejection in landed.rejections:
            self._reject(
                entity,
                report,
                rejection.logisense_id,
                record=rejection.record,
                error=rejection.error,
                response=rejection.response,
            )

    def _reject(
        self,
        entity: ImportEntity,
        report: EntityReport,
        identity: Key,
        *,
        record: dict[str, Any],
        error: str,
        response: str,
    ) -> None:
        report.failed += 1
        report.note(f"{entity.name} {identity}: {error}")
        log.warning("import_record_failed", entity=entity.name, logisense_id=identity, error=error)
        if self._publisher is not None and not self._dry_run:
            self._publisher.dead_letter(
                self._topics.importer_dlt, entity.name, identity, record=record, error=error, response=response
            )

    def _record(self, entity: ImportEntity, report: EntityReport, started_at: datetime) -> None:
        for outcome, count in report.counts().items():
            if count:
                ITEMS.labels(entity=entity.name, outcome=outcome).inc(count)
        RUN_DURATION.labels(entity=entity.name).set(report.duration_seconds)
        if report.ok and not self._dry_run:
            LAST_SUCCESS.labels(entity=entity.name).set(time.time())
        if self._publisher is None or self._dry_run:
            return
        reason = report.error or "; ".join(report.reasons)
        record = RequestRecord(
            request_id=uuid.uuid4().hex,
            service="importer",
            kind=f"import:{entity.name}",
            status=RequestStatus.SUCCESS if report.ok else RequestStatus.FAILED,
            key=entity.name,
            started_at=started_at,
            duration_seconds=report.duration_seconds,
            reason=reason[:2000],
            counts=report.counts(),
        )
        self._publisher.request(self._topics.requests, record)
        with contextlib.suppress(SflsError):
            self._publisher.flush()


def _safe_id(item: dict[str, Any]) -> int:
    try:
        return logisense_id(item)
    except MappingError:
        return 0


def summary_dict(report: RunReport) -> dict[str, Any]:
    return {"ok": report.ok, "dry_run": report.dry_run, "entities": [e.as_dict() for e in report.entities]}
