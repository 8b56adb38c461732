"""`sfls reconcile --scope catalogue`: LogiSense's catalogue against what the importer landed in Salesforce.

Every entity of `sfls import catalogue` (services/importer/entities.py `GROUPS["catalogue"]`, as configured:
services/importer/targets.py `resolve`) is compared through the importer's own code, so drift is exactly what the
next `sfls import catalogue` would write, and nothing it would not:
- LogiSense: the entity's items through services/importer/fetch.py `items` (paged, deep searches included), each
  made into the record and content hash the importer lands by services/importer/transform.py `to_record`;
- Salesforce: `SELECT Id, <ext>, <hash> FROM <object> WHERE <ext> != null ORDER BY <ext>` (`importer.external_id_field`,
  `importer.hash_field`), paged by the REST client;
- the price book (`price_book`, `price_book_entry`): services/importer/price_book.py `PriceBook` in a dry run (it
  writes nothing) finds the book and plans the entries from `catalogue_entries` against what Salesforce holds; the
  planned records' hashes are compared with the entries' stored hashes by `LogiSense_Key__c`.
The kinds (services/reconcile/drift.py), each a `CatalogueDrift` naming its entity:
- `catalogue_missing`: a LogiSense item with no Salesforce record of its external id (the book: none by its name);
- `catalogue_stale`: the record's stored hash differs from the hash the importer would write now (the book: inactive);
- `catalogue_left_behind`: a record with an external id whose LogiSense item no longer exists.
A price book entry whose catalogue pair is gone is never left behind: the importer deactivates it (it never deletes
one), so an active one is stale (the plan holds its deactivation) and an inactive one is in sync. An item the
importer cannot map (it dead-letters it on every run) is logged and not compared.

`repair_catalogue` (`--repair`) re-lands every entity with missing or stale records through services/importer/app.py
`run_import`, which writes only changed records, with the importer's request log, dead letters, topics and Kafka
principal. Left-behind records are left for a person, never deleted.

Memory: per entity, the Salesforce side as `external id -> (Id, stored hash)` (about a hundred bytes a record;
catalogues are thousands of records, not millions) while the LogiSense items stream past it page by page; the
price book holds what price_book.py's plan holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from services.importer import fetch
from services.importer.entities import GROUPS, PRICE_BOOK_NAMES
from services.importer.model import ImportEntity
from services.importer.price_book import ENTRY, KEY_FIELD, PriceBook, catalogue_entries
from services.importer.targets import check_targets, resolve
from services.importer.transform import Prepared, logisense_id, to_record
from services.reconcile.drift import Drift, Kind
from services.reconcile.run import Report
from shared.errors import MappingError
from shared.logisense import LogisenseClient
from shared.retry import RetryPolicy
from shared.salesforce import SalesforceRest
from shared.settings import Settings

log = structlog.get_logger(__name__)

LOGISENSE, SALESFORCE = "logisense_catalogue", "salesforce_catalogue"  # the report's `records` keys
REPAIRABLE = frozenset({Kind.CATALOGUE_MISSING, Kind.CATALOGUE_STALE})  # by re-landing the entity
Progress = Callable[[str, int], None]  # (entity, LogiSense items read so far)
Stored = dict[str, tuple[str, str | None]]  # external id -> (Salesforce Id, stored hash)


@dataclass(frozen=True)
class CatalogueDrift(Drift):
    """A catalogue drift: a `Drift` that also names its entity and, for a price book entry, its key.

    `logisense_id` is the item's LogiSense id (an entry's: its package frequency's), `salesforce_id` the record's
    Id when there is one, `field` stays None (no per-field values: the hash covers the whole record)."""

    entity: str = ""
    key: str | None = None  # a price book entry's LogiSense_Key__c (`std:<frequencyId>:<ISO>` or `<frequencyId>:<ISO>`)

    def to_json(self) -> dict[str, Any]:
        item = super().to_json()
        return {"kind": item.pop("kind"), "entity": self.entity, **({"key": self.key} if self.key else {}), **item}


@dataclass(frozen=True)
class Relanded:
    """What `--repair` re-landed through the importer."""

    entities: tuple[str, ...] = ()
    records: int = 0  # created + updated
    failed: int = 0  # records (or whole entities) the importer could not land; in its dead-letter topic

    def summary(self) -> dict[str, Any]:
        return {"relanded": self.records, "relanded_entities": list(self.entities), "relanding_failed": self.failed}


def stored_records(rest: SalesforceRest, sobject: str, external_field: str, hash_field: str) -> Stored:
    """Every record of `sobject` with an external id: its Id and stored hash, by external id."""
    columns, where = f"Id, {external_field}, {hash_field}", f"{external_field} != null"
    # Object and field names come from the importer's entity table and settings.
    soql = f"SELECT {columns} FROM {sobject} WHERE {where} ORDER BY {external_field}"  # noqa: S608
    return {str(row[external_field]): (str(row["Id"]), row.get(hash_field)) for row in rest.query_all_iter(soql)}


def check(entity: str, prepared: Prepared, stored: Stored) -> CatalogueDrift | None:
    """The drift of one record the importer would write, against what Salesforce holds; None when in sync."""
    key = str(prepared.logisense_id)
    found = stored.get(key)
    if found is None:
        return _drift(Kind.CATALOGUE_MISSING, entity, key, None, "not in Salesforce", prepared=prepared)
    record_id, hash_held = found
    if hash_held == prepared.hash:
        return None
    held = f"stored hash {hash_held[:8]}" if hash_held else "no stored hash"
    why = f"changed since it landed ({held}, the importer would write {prepared.hash[:8]})"
    return _drift(Kind.CATALOGUE_STALE, entity, key, record_id, why, prepared=prepared)


def left_behind(entity: str, stored: Stored, seen: set[str]) -> Iterator[CatalogueDrift]:
    """The records whose external id no LogiSense item has any more, in external-id order."""
    for key, (record_id, _) in sorted(stored.items()):
        if key not in seen:
            why = "its LogiSense item no longer exists (left for a person, never deleted)"
            yield _drift(Kind.CATALOGUE_LEFT_BEHIND, entity, key, record_id, why)


def _drift(
    kind: Kind, entity: str, key: str, record_id: str | None, why: str, *, prepared: Prepared | None = None
) -> CatalogueDrift:
    name = prepared.record.get("Name") if prepared is not None else None
    head = key.removeprefix("std:").split(":", 1)[0]
    return CatalogueDrift(
        kind,
        record_id,
        int(head) if head.isdigit() else None,
        detail=f"{entity} {key}{f' {name!r}' if name else ''}: {why}",
        entity=entity,
        key=None if key.isdigit() else key,
    )


async def reconcile_catalogue(
    settings: Settings, rest: SalesforceRest, *, on_progress: Progress | None = None
) -> Report:
    """Compare every catalogue entity, then the price book, of LogiSense with Salesforce (a `catalogue` report)."""
    started = time.monotonic()
    check_targets(settings.importer)
    report = Report(scope="catalogue")
    async with LogisenseClient(settings.logisense, retry=RetryPolicy.from_settings(settings.sync.retry)) as client:
        for name in GROUPS["catalogue"]:
            if name not in PRICE_BOOK_NAMES:
                entity = resolve(name, settings)
                await _entity(client, rest, entity, settings, report=report, on_progress=on_progress)
        await _price_book(client, rest, settings, report)
    report.seconds = time.monotonic() - started
    log.info("reconcile_catalogue_compared", **report.summary()["summary"])
    return report


async def _entity(
    client: LogisenseClient,
    rest: SalesforceRest,
    entity: ImportEntity,
    settings: Settings,
    *,
    report: Report,
    on_progress: Progress | None,
) -> None:
    cfg = settings.importer
    stored = await asyncio.to_thread(stored_records, rest, entity.sobject, cfg.external_id_field, cfg.hash_field)
    report.records[SALESFORCE] += len(stored)
    seen: set[str] = set()
    async for item in fetch.items(client, entity, page_size=settings.logisense.page_size):
        report.records[LOGISENSE] += 1
        try:
            prepared = to_record(entity, item, external_id_field=cfg.external_id_field, hash_field=cfg.hash_field)
        except (MappingError, ValueError) as exc:  # the importer dead-letters it: not compared, not left behind
            with contextlib.suppress(MappingError):
                seen.add(str(logisense_id(item)))
            log.warning("reconcile_catalogue_unmappable", entity=entity.name, error=str(exc))
            continue
        seen.add(str(prepared.logisense_id))
        if (drift := check(entity.name, prepared, stored)) is not None:
            report.drifts.append(drift)
        if on_progress is not None and len(seen) % 500 == 0:
            on_progress(entity.name, len(seen))
    if on_progress is not None:
        on_progress(entity.name, len(seen))
    report.drifts.extend(left_behind(entity.name, stored, seen))


async def _price_book(client: LogisenseClient, rest: SalesforceRest, settings: Settings, report: Report) -> None:
    """The book (found by name, active) and its entries, planned by price_book.py in a dry run (it writes nothing)."""
    book = PriceBook(settings, rest, dry_run=True)
    found = await asyncio.to_thread(book.land_book)
    name = settings.importer.price_book_name
    report.records[LOGISENSE] += 1
    if found.created:
        why = f"price_book: no Pricebook2 named {name!r}"
        report.drifts.append(CatalogueDrift(Kind.CATALOGUE_MISSING, detail=why, entity="price_book"))
    else:
        report.records[SALESFORCE] += 1
        if found.updated:
            why = f"price_book {name!r}: inactive (the importer activates it)"
            report.drifts.append(CatalogueDrift(Kind.CATALOGUE_STALE, book.book_id, detail=why, entity="price_book"))
    entries = await catalogue_entries(client, page_size=settings.logisense.page_size)
    plan = await asyncio.to_thread(book.plan, entries)
    stored = await asyncio.to_thread(stored_records, rest, ENTRY.sobject, KEY_FIELD, settings.importer.hash_field)
    report.records[LOGISENSE] += plan.planned
    report.records[SALESFORCE] += len(stored)
    for prepared in (*plan.standard, *plan.custom):
        if (drift := check(ENTRY.name, prepared, stored)) is not None:
            report.drifts.append(drift)


async def repair_catalogue(settings: Settings, report: Report) -> Relanded:
    """Re-land, through the importer, every entity with a missing or stale record; what it wrote."""
    from services.importer.app import run_import

    wanted = {d.entity for d in report.drifts if isinstance(d, CatalogueDrift) and d.kind in REPAIRABLE}
    names = tuple(name for name in GROUPS["catalogue"] if name in wanted)  # the importer's landing order
    if not names:
        return Relanded()
    run = await run_import(settings, names)
    relanded = Relanded(
        names,
        records=sum(e.created + e.updated for e in run.entities),
        failed=sum(e.failed + (1 if e.error else 0) for e in run.entities),
    )
    log.warning("reconcile_catalogue_relanded", **relanded.summary())
    return relanded
