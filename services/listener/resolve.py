"""Which account a contact belongs to: a cached, batched lookup for payloads that lack AccountId.

A Contact UPDATE carries only the changed fields, and a DELETE carries none, so the listener
often does not know the contact's account. The cache is fed by every payload that does carry
AccountId (CREATE, UNDELETE, an UPDATE that moved the contact); misses of a whole batch are read
in one SOQL `Id IN (...)` query per chunk, through queryAll so deleted contacts are found too.
A contact that left its account (AccountId nulled) is keyed by the account it left while the
cache still remembers it, so that account resyncs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from services.listener.normalize import CdcMessage
from shared.events import Entity

if TYPE_CHECKING:
    from shared.salesforce import RecordReader


class AccountResolver:
    """Contact id -> AccountId, with an LRU cache of `size` entries."""

    def __init__(self, source: RecordReader, size: int = 100_000, chunk_size: int = 200) -> None:
        self._source = source
        self._size = size
        self._chunk_size = chunk_size
        self._cache: OrderedDict[str, str | None] = OrderedDict()
        self.lookups = 0  # SOQL round trips, for tests and logs

    def remember(self, contact_id: str, account_id: str | None) -> None:
        if self._size <= 0:
            return
        self._cache[contact_id] = account_id
        self._cache.move_to_end(contact_id)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    def learn(self, message: CdcMessage) -> None:
        """Remember what a Contact payload says about its account (after it was published)."""
        if message.entity is not Entity.CONTACT or "AccountId" not in message.body:
            return
        account_id = message.body["AccountId"]
        for record_id in message.record_ids:
            self.remember(record_id, account_id if isinstance(account_id, str) else None)

    def resolve(self, contact_ids: Iterable[str]) -> dict[str, str | None]:
        """The account of each contact: cached ones at once, the rest in batched queries."""
        found: dict[str, str | None] = {}
        missing: list[str] = []
        for contact_id in dict.fromkeys(contact_ids):
            if contact_id in self._cache:
                self._cache.move_to_end(contact_id)
                found[contact_id] = self._cache[contact_id]
            else:
                missing.append(contact_id)
        if missing:
            self.lookups += 1
            rows = self._source.query_by_ids(
                "Contact", ["Id", "AccountId"], missing, chunk_size=self._chunk_size, include_deleted=True
            )
            by_id = {str(row["Id"]): row.get("AccountId") for row in rows}
            for contact_id in missing:
                account_id = _match(by_id, contact_id)
                found[contact_id] = account_id
                self.remember(contact_id, account_id)
        return found


def _match(by_id: Mapping[str, Any], contact_id: str) -> str | None:
    """Look an id up by its 18- or 15-character form (queries answer 18, CDC may hold either)."""
    value = by_id.get(contact_id)
    if value is None:
        for key, account in by_id.items():
            if key[:15] == contact_id[:15]:
                value = account
                break
    return value if isinstance(value, str) and value else None
