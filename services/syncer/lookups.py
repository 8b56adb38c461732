"""What delivery reads from LogiSense, how it compares, and the create that never duplicates.

- Reads are bulk: one `in` search per chunk of `SEARCH_CHUNK` values. A LogiSense without the `in`
  operator answers 400; from then on this process searches with one `eq` per value.
- Records are found by the Salesforce id in the link field (`logisense.link_field`): an account's
  custom field, a contact's link contact point.
- `diff` gives only the fields that differ, so an unchanged record is never written.
- `CreateOnce` sends a create once per attempt and, after a transient failure, searches for its
  result before trying again: a create that reached LogiSense but whose answer was lost is not repeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from services.syncer.references import References
from services.syncer.snapshot import Snapshot, id15
from shared.errors import PermanentError, RetriesExhaustedError, TransientError
from shared.mapping import MappedAccount
from shared.retry import RetryPolicy, call_with_retries
from shared.settings import Settings

log = structlog.get_logger(__name__)
SEARCH_CHUNK = 100
SEARCH_TOP = 10_000

Records = list[dict[str, Any]]


class LogisenseApi(Protocol):
    """The part of shared.logisense.LogisenseClient the syncer uses."""

    async def list(self, resource: str) -> Records: ...

    async def search(
        self,
        resource: str,
        conditions: Records,
        *,
        fields: Sequence[str] | None = None,
        order_by: Records | None = None,
        top: int | None = None,
    ) -> Records: ...

    async def create(self, resource: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def update(self, resource: str, identity: int, body: dict[str, Any]) -> Any: ...

    async def patch(self, resource: str, identity: int, body: dict[str, Any]) -> dict[str, Any]: ...

    async def delete(self, resource: str, identity: int) -> Any: ...


@dataclass
class LsContact:
    """A LogiSense contact and its contact points."""

    record: dict[str, Any]
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def identity(self) -> int:
        """The contact's LogiSense id."""
        return int(self.record["identity"])


@dataclass
class PrefetchedContacts:
    """The LogiSense contacts one batch starts from, read in bulk before any write."""

    by_link: dict[str, LsContact] = field(default_factory=dict)  # 15-char Salesforce contact id -> contact
    under: dict[int, list[LsContact]] = field(default_factory=dict)  # LogiSense account id -> its contacts
    batch_ids: set[str] = field(default_factory=set)  # 15-char ids of every Salesforce contact in the batch


def _same(current: Any, wanted: Any) -> bool:
    if current in (None, "") and wanted in (None, ""):
        return True
    if isinstance(wanted, bool) or isinstance(current, bool):
        return bool(current) == bool(wanted) and type(current) is type(wanted)
    if isinstance(wanted, int | float) and isinstance(current, int | float):
        return float(current) == float(wanted)
    return bool(current == wanted)


def diff(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The fields of `wanted` whose value the LogiSense record `current` does not hold already."""
    return {k: v for k, v in wanted.items() if not _same(current.get(k), v)}


def _chunks(values: Sequence[Any], size: int = SEARCH_CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def with_points(records: Iterable[dict[str, Any]], points: Iterable[dict[str, Any]]) -> list[LsContact]:
    """LogiSense contact records with their contact points (points of other contacts are left out)."""
    contacts = {int(r["identity"]): LsContact(record=r) for r in records}
    for point in points:
        contact = contacts.get(int(point.get("contactId") or 0))
        if contact is not None:
            contact.points.append(point)
    return list(contacts.values())


def link_value(contact: LsContact, refs: References, link: str) -> str | None:
    """The Salesforce id in a LogiSense contact's link point (the point type named `link`), if it has one."""
    for point in contact.points:
        if refs.point_names.get(int(point["contactPointTypeId"])) == link and point.get("value"):
            return str(point["value"])
    return None


class Lookups:
    """Bulk LogiSense reads by Salesforce id; one per process (it remembers whether `in` works)."""

    def __init__(
        self, client: LogisenseApi, once: LogisenseApi, references: References, link: str, *, concurrency: int = 1
    ) -> None:
        self._client = client  # retries every call itself
        self._once = once  # single attempts: the search between two tries of a create
        self._refs = references
        self._link = link
        self._in_supported = True
        self._concurrency = max(1, concurrency)  # bulk searches in flight at once (sync.concurrency)

    def link_value(self, contact: LsContact) -> str | None:
        """The Salesforce id in the contact's link point, if it has one."""
        return link_value(contact, self._refs, self._link)

    async def prefetch_contacts(
        self, snapshot: Snapshot, mapped: dict[str, MappedAccount], known: dict[str, dict[str, Any]]
    ) -> PrefetchedContacts:
        """LogiSense contacts of the batch's accounts, and any contact holding a batch contact's id."""
        account_identities = sorted(int(known[s]["identity"]) for s in mapped if s in known)
        found = await self.contacts_of(account_identities)
        under: dict[int, list[LsContact]] = {}
        for contact in found:
            under.setdefault(int(contact.record["accountId"]), []).append(contact)
        by_link = {id15(link): c for c in found if (link := self.link_value(c))}
        sf_ids = sorted(str(c["Id"]) for s in mapped for c in snapshot.contacts.get(s, []))
        missing = [i for i in sf_ids if id15(i) not in by_link]
        if missing:
            link_types = self._refs.link_point_types(self._link)
            points = await self.search_in("Contact/Point", "value", missing)
            owners = sorted({int(p["contactId"]) for p in points if int(p["contactPointTypeId"]) in link_types})
            elsewhere = await self.contacts_by_identity(owners)
            by_link.update({id15(link): c for c in elsewhere if (link := self.link_value(c))})
        return PrefetchedContacts(by_link=by_link, under=under, batch_ids={id15(i) for i in sf_ids})

    async def contacts_of(self, account_identities: list[int]) -> list[LsContact]:
        """The contacts, with their points, of these LogiSense accounts."""
        records = await self.search_in("Contact", "accountId", account_identities)
        return await self._with_points(records)

    async def contacts_by_identity(self, identities: list[int]) -> list[LsContact]:
        """These LogiSense contacts, with their points."""
        records = await self.search_in("Contact", "identity", identities)
        return await self._with_points(records)

    async def _with_points(self, records: list[dict[str, Any]]) -> list[LsContact]:
        identities = sorted({int(r["identity"]) for r in records})
        return with_points(records, await self._points_of(identities))

    async def _points_of(self, contact_identities: list[int]) -> list[dict[str, Any]]:
        return await self.search_in("Contact/Point", "contactId", contact_identities)

    async def find_accounts(self, sf_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """LogiSense accounts by 15-char Salesforce id, found by the link field."""
        unique = sorted({id15(i): i for i in sf_ids}.values())
        found: dict[str, dict[str, Any]] = {}
        for record in await self.search_in("Account", self._link, unique):
            link = record.get(self._link)
            if link:
                found.setdefault(id15(str(link)), record)
        return found

    async def find_account(self, sf_id: str) -> dict[str, Any] | None:
        """The LogiSense account linked to one Salesforce id, in a single attempt."""
        found = await self._once.search("Account", [{"name": self._link, "operator": "eq", "value": sf_id}], top=2)
        return found[0] if found else None

    async def search_in(self, resource: str, name: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        """Every record whose `name` is one of `values`: bulk `in` searches (the first alone, to learn whether
        LogiSense knows `in`; the rest `concurrency` at a time), or one `eq` per value."""
        parts = list(_chunks(list(values)))
        if not parts:
            return []
        results = await self._search_part(resource, name, parts[0])
        semaphore = asyncio.Semaphore(self._concurrency)

        async def bounded(part: list[Any]) -> list[dict[str, Any]]:
            async with semaphore:
                return await self._search_part(resource, name, part)

        for found in await asyncio.gather(*(bounded(part) for part in parts[1:])):
            results += found
        return results

    async def _search_part(self, resource: str, name: str, part: list[Any]) -> list[dict[str, Any]]:
        if self._in_supported:
            try:
                return await self._client.search(
                    resource, [{"name": name, "operator": "in", "value": part}], top=SEARCH_TOP
                )
            except PermanentError as exc:  # a LogiSense without the `in` operator answers 400
                if exc.status != 400:
                    raise
                log.warning("search_in_unsupported", resource=resource, error=str(exc))
                self._in_supported = False
        results: list[dict[str, Any]] = []
        for value in part:
            results += await self._client.search(
                resource, [{"name": name, "operator": "eq", "value": value}], top=SEARCH_TOP
            )
        return results


@dataclass(frozen=True)
class CreateOnce:
    """Creates that never duplicate, shared by account and contact writes."""

    policy: RetryPolicy
    on_retry: Callable[[str], None] = lambda _resource: None

    async def __call__(
        self,
        resource: str,
        send: Callable[[], Awaitable[dict[str, Any]]],
        find: Callable[[], Awaitable[dict[str, Any] | None]],
    ) -> dict[str, Any]:
        """Send a single-attempt create; after a transient failure, look for its result before trying again."""
        attempt = 0

        async def once() -> dict[str, Any]:
            nonlocal attempt
            attempt += 1
            try:
                if attempt > 1:
                    found = await find()
                    if found is not None:
                        return found
                return await send()
            except RetriesExhaustedError as exc:  # the single-attempt client's transient failure
                raise exc.last from exc

        def retried(_exc: TransientError, _attempt: int, _wait: float) -> None:
            self.on_retry(resource)

        return await call_with_retries(once, self.policy, on_retry=retried)


class Writer:
    """What an account or a contact writer works with; it holds no per-batch state (that is BatchContext's)."""

    def __init__(
        self,
        client: LogisenseApi,
        once: LogisenseApi,
        settings: Settings,
        references: References,
        *,
        lookups: Lookups,
        create_once: CreateOnce,
    ) -> None:
        self._client = client  # retries every call itself
        self._once = once  # single attempts: creates retry through create_once instead
        self._settings = settings
        self._refs = references
        self._lookups = lookups
        self._create_once = create_once
        self._link = settings.logisense.link_field
