"""Which account a record belongs to: a cached, batched lookup for payloads that lack AccountId.

A Contact or Opportunity UPDATE carries only the changed fields, and a DELETE carries none, so the
listener often does not know the record's account. An OpportunityLineItem never carries it: its
event is keyed by its opportunity's AccountId, so the line's OpportunityId (in the payload of a
CREATE, else looked up) and that opportunity's account are both needed.
The cache is fed by every payload that does carry the parent (CREATE, UNDELETE, an UPDATE that
moved the record); misses of a whole batch are read in one SOQL `Id IN (...)` query per entity and
chunk, through queryAll so deleted records are found too. A contact that left its account
(AccountId nulled) is keyed by the account it left while the cache still remembers it, so that
account resyncs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.listener.message import CdcMessage
from shared.events import Entity

if TYPE_CHECKING:
    from shared.salesforce import RecordReader

# What each entity's lookup selects: its account, and for a line, its opportunity.
_PARENTS: dict[Entity, tuple[str, ...]] = {
    Entity.CONTACT: ("Id", "AccountId"),
    Entity.OPPORTUNITY: ("Id", "AccountId"),
    Entity.OPPORTUNITY_LINE: ("Id", "OpportunityId", "Opportunity.AccountId"),
}


@dataclass
class Resolved:
    """Record id -> its AccountId (None: it has none), and line id -> its OpportunityId."""

    accounts: dict[str, str | None] = field(default_factory=dict)
    opportunities: dict[str, str | None] = field(default_factory=dict)


class AccountResolver:
    """Record id -> AccountId (and line id -> OpportunityId), with an LRU cache of `size` entries each."""

    def __init__(self, source: RecordReader, size: int = 100_000, chunk_size: int = 200) -> None:
        self._source = source
        self._size = size
        self._chunk_size = chunk_size
        self._cache: OrderedDict[str, str | None] = OrderedDict()
        self._lines: OrderedDict[str, str | None] = OrderedDict()
        self.lookups = 0  # SOQL round trips, for tests and logs

    def _put(self, cache: OrderedDict[str, str | None], record_id: str, parent: str | None) -> None:
        if self._size <= 0:
            return
        cache[record_id] = parent
        cache.move_to_end(record_id)
        while len(cache) > self._size:
            cache.popitem(last=False)

    def remember(self, record_id: str, account_id: str | None) -> None:
        self._put(self._cache, record_id, account_id)

    def learn(self, message: CdcMessage) -> None:
        """Remember what a payload says about its parent (after it was published)."""
        parent = "OpportunityId" if message.entity is Entity.OPPORTUNITY_LINE else "AccountId"
        if message.entity not in _PARENTS or parent not in message.body:
            return
        value = message.body[parent]
        for record_id in message.record_ids:
            cache = self._lines if message.entity is Entity.OPPORTUNITY_LINE else self._cache
            self._put(cache, record_id, value if isinstance(value, str) else None)

    def resolve(self, wanted: Iterable[tuple[Entity, str]]) -> Resolved:
        """The parents of each record: cached ones at once, the rest in batched queries (one per entity)."""
        found = Resolved()
        missing: dict[Entity, list[str]] = {}
        for entity, record_id in dict.fromkeys(wanted):
            cache = self._lines if entity is Entity.OPPORTUNITY_LINE else self._cache
            if record_id in cache and (entity is not Entity.OPPORTUNITY_LINE or cache[record_id] in self._cache):
                cache.move_to_end(record_id)
                if entity is Entity.OPPORTUNITY_LINE:
                    opportunity = found.opportunities[record_id] = cache[record_id]
                    if opportunity is not None:
                        found.accounts[opportunity] = self._cache[opportunity]
                else:
                    found.accounts[record_id] = cache[record_id]
            else:
                missing.setdefault(entity, []).append(record_id)
        for entity, ids in missing.items():
            self.lookups += 1
            rows = self._source.query_by_ids(
                entity.value, _PARENTS[entity], ids, chunk_size=self._chunk_size, include_deleted=True
            )
            by_id = {str(row["Id"]): row for row in rows}
            for record_id in ids:
                row = _match(by_id, record_id)
                if entity is Entity.OPPORTUNITY_LINE:
                    opportunity = _text(row.get("OpportunityId"))
                    parent = row.get("Opportunity") or {}
                    account = _text(parent.get("AccountId")) if isinstance(parent, Mapping) else None
                    found.opportunities[record_id] = opportunity
                    self._put(self._lines, record_id, opportunity)
                    if opportunity is not None:
                        found.accounts[opportunity] = account
                        self.remember(opportunity, account)
                else:
                    account = _text(row.get("AccountId"))
                    found.accounts[record_id] = account
                    self.remember(record_id, account)
        return found


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _match(by_id: Mapping[str, dict[str, Any]], record_id: str) -> dict[str, Any]:
    """Look an id up by its 18- or 15-character form (queries answer 18, CDC may hold either)."""
    row = by_id.get(record_id)
    if row is None:
        row = next((r for key, r in by_id.items() if key[:15] == record_id[:15]), None)
    return row or {}
