"""The bulk Salesforce read of a batch: current state of its accounts and of their contacts.

Change events only say *that* something changed; the syncer writes what Salesforce holds *now*,
so a batch with 50 changes to one account reads that account once. Accounts are read by
`Id IN (...)` including deleted rows (queryAll, `IsDeleted`), contacts by `AccountId IN (...)`,
both in chunks of `sync.soql_chunk_size`, selecting only the fields the mapping needs.
Salesforce calls are blocking (simple-salesforce), so they run in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.mapping import account_query_fields, contact_query_fields
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.salesforce import RecordReader


def id15(record_id: str) -> str:
    """Salesforce ids compare on their case-sensitive 15-character form."""
    return record_id[:15]


@dataclass
class Snapshot:
    """Salesforce state keyed by 15-character account id."""

    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    queries: int = 0

    def exists(self, account_id: str) -> bool:
        record = self.accounts.get(id15(account_id))
        return record is not None and not record.get("IsDeleted")

    def merge(self, other: Snapshot) -> None:
        self.accounts.update(other.accounts)
        self.contacts.update(other.contacts)
        self.queries += other.queries


def _chunks(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _quote(record_id: str) -> str:
    if not record_id.isalnum():
        raise ValueError(f"not a Salesforce id: {record_id!r}")
    return f"'{record_id}'"


def read_snapshot(
    sf: RecordReader, settings: Settings, account_ids: Iterable[str], *, multi_currency: bool = False
) -> Snapshot:
    """Read the accounts (deleted ones too, with CurrencyIsoCode in a multi-currency org) and their live contacts."""
    ids = sorted({id15(i): i for i in account_ids}.values())
    chunk = settings.sync.soql_chunk_size
    snap = Snapshot()
    if not ids:
        return snap
    account_fields = [*account_query_fields(settings, multi_currency=multi_currency), "IsDeleted"]
    for record in sf.query_by_ids("Account", account_fields, ids, chunk_size=chunk, include_deleted=True):
        snap.accounts[id15(str(record["Id"]))] = record
    snap.queries += -(-len(ids) // chunk)
    live = sorted(record["Id"] for record in snap.accounts.values() if not record.get("IsDeleted"))
    contact_fields = ", ".join(contact_query_fields(settings))
    for account_id in live:
        snap.contacts[id15(account_id)] = []
    for part in _chunks(live, chunk):
        # Ids are checked to be alphanumeric by _quote, so nothing can escape the literal.
        soql = f"SELECT {contact_fields} FROM Contact WHERE AccountId IN ({', '.join(map(_quote, part))})"  # noqa: S608
        for record in sf.query_all_iter(soql):
            snap.contacts.setdefault(id15(str(record["AccountId"])), []).append(record)
        snap.queries += 1
    return snap


async def read_snapshot_async(
    sf: RecordReader, settings: Settings, account_ids: Iterable[str], *, multi_currency: bool = False
) -> Snapshot:
    return await asyncio.to_thread(read_snapshot, sf, settings, list(account_ids), multi_currency=multi_currency)
