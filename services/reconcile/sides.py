"""The two sides of `sfls reconcile --scope accounts`, each read once into sorted runs (services/reconcile/merge.py).

- LogiSense accounts (paged search), the linked ones sorted by (15-character link, identity); on the way, the
  compact indexes the comparison needs across the whole org: link -> lowest identity (`identity_of`, for parents,
  invoice recipients and a Salesforce contact's account) and identity -> link (`owner_of`, a contact's account).
- LogiSense contacts with their contact points: contacts and points are each sorted by contact, merged into
  contacts-with-points, and those sorted by the 15-character Salesforce id of their link point.
- Salesforce accounts and contacts (deleted ones included), sorted by 15-character id; read by REST query pages,
  or through one Bulk API 2.0 query job when `SELECT COUNT()` reaches `reconcile.bulk_threshold`.
Memory: one sort buffer per side being read (`reconcile.sort_chunk_records`) and the two indexes, 23 bytes per
linked LogiSense account; everything else is in temporary files.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from services.reconcile.merge import KeyIndex, NumberIndex, SortedRuns, groups
from services.syncer.lookups import LsContact, link_value
from services.syncer.references import References
from services.syncer.snapshot import id15
from shared.logisense import LogisenseClient
from shared.salesforce import SalesforceRest
from shared.settings import Settings

Progress = Callable[[str, int], None]  # (system, records read so far)
PROGRESS_EVERY = 500
LINK_WIDTH = 18  # a Salesforce id as LogiSense holds it: 15 or 18 characters, kept padded to 18 in `owner_of`


@dataclass
class Sides:
    """What both systems hold, sorted for the merge; close it to remove the temporary files."""

    settings: Settings
    logisense_accounts: SortedRuns
    logisense_contacts: SortedRuns
    salesforce_accounts: SortedRuns
    salesforce_contacts: SortedRuns
    identity_of: KeyIndex = field(default_factory=KeyIndex)
    owners: NumberIndex = field(default_factory=lambda: NumberIndex(LINK_WIDTH))

    @classmethod
    def empty(cls, settings: Settings) -> Sides:
        link = settings.logisense.link_field
        chunk, where = settings.reconcile.sort_chunk_records, settings.reconcile.work_dir

        def runs(key: Callable[[dict[str, Any]], Any]) -> SortedRuns:
            return SortedRuns(key, chunk=chunk, work_dir=where)

        return cls(
            settings,
            logisense_accounts=runs(lambda r: (id15(str(r[link])), int(r["identity"]))),
            logisense_contacts=runs(lambda c: (id15(str(c["link"])), int(c["record"]["identity"]))),
            salesforce_accounts=runs(lambda r: id15(str(r["Id"]))),
            salesforce_contacts=runs(lambda r: id15(str(r["Id"]))),
        )

    def close(self) -> None:
        for runs in (
            self.logisense_accounts,
            self.logisense_contacts,
            self.salesforce_accounts,
            self.salesforce_contacts,
        ):
            runs.close()

    def owner_of(self, identity: int) -> str | None:
        found = self.owners.get(identity)
        return found.rstrip() if found else None

    def account_groups(self) -> Iterator[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]]:
        link = self.settings.logisense.link_field
        return groups(
            self.salesforce_accounts,
            self.logisense_accounts,
            lambda r: id15(str(r["Id"])),
            lambda r: id15(str(r[link])),
        )

    def contact_groups(self) -> Iterator[tuple[str, list[dict[str, Any]], list[LsContact]]]:
        pairs = groups(
            self.salesforce_contacts,
            self.logisense_contacts,
            lambda r: id15(str(r["Id"])),
            lambda c: id15(str(c["link"])),
        )
        for key, salesforce, logisense in pairs:
            yield key, salesforce, [LsContact(record=c["record"], points=c["points"]) for c in logisense]


async def read_logisense(
    sides: Sides, client: LogisenseClient, refs: References, on_progress: Progress | None
) -> dict[str, int]:
    """Both LogiSense sides into `sides`; the records read, by kind."""
    settings = sides.settings
    link = settings.logisense.link_field
    counts = {"logisense": 0, "logisense_contacts": 0}
    async for record in client.search_paged("Account"):
        counts["logisense"] += 1
        value = record.get(link)
        if value:
            sides.logisense_accounts.add(record)
            sides.owners.add(int(record["identity"]), str(value).ljust(LINK_WIDTH))
        _tick(on_progress, "logisense", counts["logisense"])
    sides.owners.freeze()
    for record in sides.logisense_accounts:  # in link order: the lowest identity of a link is its first
        sides.identity_of.add(id15(str(record[link])), int(record["identity"]))
    chunk, where = settings.reconcile.sort_chunk_records, settings.reconcile.work_dir
    with (
        SortedRuns(lambda r: int(r["identity"]), chunk=chunk, work_dir=where) as contacts,
        SortedRuns(lambda p: int(p.get("contactId") or 0), chunk=chunk, work_dir=where) as points,
    ):
        async for record in client.search_paged("Contact"):
            contacts.add(record)
            counts["logisense_contacts"] += 1
            _tick(on_progress, "logisense contacts", counts["logisense_contacts"])
        async for point in client.search_paged("Contact/Point"):
            points.add(point)
        joined = groups(contacts, points, lambda r: int(r["identity"]), lambda p: int(p.get("contactId") or 0))
        for _, found, its_points in joined:
            for record in found:  # a point of no contact we read is left out
                contact = LsContact(record=record, points=its_points)
                value = link_value(contact, refs, link)
                if value:
                    sides.logisense_contacts.add({"link": value, "record": record, "points": its_points})
    return counts


@dataclass(frozen=True)
class Query:
    """A Salesforce read: the object, its fields and an optional condition (the operator's own `--where`)."""

    sobject: str
    fields: tuple[str, ...]
    where: str = ""

    @property
    def from_where(self) -> str:
        return f"FROM {self.sobject}" + (f" WHERE ({self.where})" if self.where else "")

    def soql(self) -> str:
        return f"SELECT {', '.join(dict.fromkeys(self.fields))} {self.from_where}"


def read_salesforce(
    sides: Sides, rest: SalesforceRest, accounts: Query, contacts: Query, on_progress: Progress | None
) -> dict[str, int]:
    """Both Salesforce sides into `sides` (blocking; run it in a thread); the records read, by kind."""
    counts = {"salesforce": 0, "salesforce_contacts": 0}
    threshold = sides.settings.reconcile.bulk_threshold
    reads = (
        (accounts, sides.salesforce_accounts, "salesforce"),
        (contacts, sides.salesforce_contacts, "salesforce_contacts"),
    )
    for query, runs, system in reads:
        for row in rows(rest, query, threshold):
            runs.add(row)
            counts[system] += 1
            _tick(on_progress, system.replace("_", " "), counts[system])
    return counts


def rows(rest: SalesforceRest, query: Query, bulk_threshold: int) -> Iterator[dict[str, Any]]:
    """Every row of `query` (deleted records included): REST query pages, or one Bulk API 2.0 query job for at
    least `bulk_threshold` rows (`SELECT COUNT()` of the same FROM and WHERE decides; 0: always REST). Neither
    is ordered: the merge sorts."""
    if bulk_threshold and rest.count(query.from_where, include_deleted=True) >= bulk_threshold:
        yield from rest.bulk_query(query.sobject, query.soql(), include_deleted=True)
        return
    for row in rest.query_all_iter(query.soql(), include_deleted=True):
        row.pop("attributes", None)
        yield row


def _tick(on_progress: Progress | None, system: str, count: int) -> None:
    if on_progress is not None and count % PROGRESS_EVERY == 0:
        on_progress(system, count)


async def read_both(
    settings: Settings,
    clients: tuple[SalesforceRest, LogisenseClient],
    refs: References,
    queries: tuple[Query, Query],
    on_progress: Progress | None,
) -> tuple[Sides, dict[str, int]]:
    """Read LogiSense and Salesforce at once into one `Sides` (closed by the caller); the records read, by system."""
    sides = Sides.empty(settings)
    try:
        logisense, salesforce = await asyncio.gather(
            read_logisense(sides, clients[1], refs, on_progress),
            asyncio.to_thread(read_salesforce, sides, clients[0], *queries, on_progress),
        )
        counts = {**logisense, **salesforce}
    except BaseException:
        with contextlib.suppress(Exception):
            sides.close()
        raise
    return sides, counts
