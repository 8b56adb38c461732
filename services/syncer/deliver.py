"""LogiSense writes of a batch: upserts keyed by the Salesforce id, parents first, bounded concurrency.

- Upsert: every LogiSense account carries the Salesforce id in the `sfdcid` custom field, every
  contact in its `sfdcid` contact point (the link field is a setting). Before writing, one bulk
  search per chunk finds what already exists; existing records are updated with only the fields
  that differ (nothing is sent when nothing differs), missing ones are created. A create that
  fails transiently searches again before it retries, so a POST that reached LogiSense but whose
  answer was lost is never repeated: redelivery and retries never duplicate.
- Order: an account waits for the accounts it references (parent, invoice recipient) that are
  not in LogiSense yet. Such an account outside the batch is read from Salesforce and synced
  first, so a child never lands before its parent, even across batches.
- Contacts: a new contact is created with all its points, the link point included, in one
  `PATCH Account/{id}` (`contacts` -> `contactPoints`), which LogiSense applies as one transaction:
  a crash leaves either nothing or a linked contact. With `sync.atomic_contact_create` off it is
  `POST Contact`, then `POST Contact/Point` per point; a contact left without its link point by a
  crash in between is taken over (same name and type) by the account's next sync.
- Concurrency: at most `sync.concurrency` accounts are written at once; an account's contacts are
  written in sequence after it.
- Failures: a permanent error (validation, mapping, retries exhausted) fails its account only,
  and the accounts that wait for it (with DependencyFailedError, naming the account they waited
  for and its error class); the caller dead-letters their records.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from services.syncer.references import References
from services.syncer.snapshot import Snapshot, id15
from shared.errors import DependencyFailedError, MappingError, PermanentError, RetriesExhaustedError, TransientError
from shared.mapping import MappedAccount, MappedContact, map_account, map_contact
from shared.retry import RetryPolicy, call_with_retries
from shared.settings import Settings

log = structlog.get_logger(__name__)
SEARCH_CHUNK = 100
SEARCH_TOP = 10_000

Records = list[dict[str, Any]]

# The Salesforce account whose sync issues the current LogiSense request (for the request log).
current_account: contextvars.ContextVar[str] = contextvars.ContextVar("current_account", default="")


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
    record: dict[str, Any]
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def identity(self) -> int:
        return int(self.record["identity"])


@dataclass
class DeliveryReport:
    """Per batch: which accounts failed and what was written."""

    failures: dict[str, PermanentError] = field(default_factory=dict)  # 15-char account id -> error
    synced: set[str] = field(default_factory=set)
    pulled_in: set[str] = field(default_factory=set)  # dependencies synced although not in the batch
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


def _same(current: Any, wanted: Any) -> bool:
    if current in (None, "") and wanted in (None, ""):
        return True
    if isinstance(wanted, bool) or isinstance(current, bool):
        return bool(current) == bool(wanted) and type(current) is type(wanted)
    if isinstance(wanted, int | float) and isinstance(current, int | float):
        return float(current) == float(wanted)
    return bool(current == wanted)


def _diff(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in wanted.items() if not _same(current.get(k), v)}


def _error_class(exc: PermanentError) -> str:
    """The class a dead letter of `exc` carries (the last transient error's when retries ran out)."""
    return type(exc.last).__name__ if isinstance(exc, RetriesExhaustedError) else type(exc).__name__


def _chunks(values: Sequence[Any], size: int = SEARCH_CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


class Deliverer:
    """Writes one batch's Salesforce state to LogiSense; one instance per syncer process."""

    def __init__(
        self,
        client: LogisenseApi,
        once: LogisenseApi,
        settings: Settings,
        references: References,
        *,
        policy: RetryPolicy,
        on_retry: Callable[[str], None] = lambda _resource: None,
    ) -> None:
        self._client = client  # retries every call itself
        self._once = once  # single attempts: creates retry through _create_once instead
        self._settings = settings
        self._refs = references
        self._policy = policy
        self._on_retry = on_retry
        self._link = settings.logisense.link_field
        self._in_supported = True
        # Per-batch state, reset by deliver(): who waits for whom, and the prefetched contacts.
        self._waits_for: dict[str, tuple[str, ...]] = {}
        self._under: dict[int, list[LsContact]] = {}
        self._batch_contact_ids: set[str] = set()

    # --- the batch ------------------------------------------------------------------------------

    async def deliver(
        self, account_ids: Sequence[str], snapshot: Snapshot, read_more: Callable[[list[str]], Awaitable[Snapshot]]
    ) -> DeliveryReport:
        report = DeliveryReport()
        await self._refs.refresh_if_stale(self._client)
        mapped: dict[str, MappedAccount] = {}
        batch = [id15(a) for a in account_ids]
        for sid in batch:
            if snapshot.exists(sid):
                self._map(sid, snapshot, mapped, report)
        known = await self._find_accounts([self._sf_id(s, snapshot) for s in batch] + self._deps(mapped))
        await self._pull_in_dependencies(snapshot, mapped, known, report, read_more)
        contacts = await self._prefetch_contacts(snapshot, mapped, known)
        self._waits_for = {
            sid: tuple(id15(d) for d in m.dependencies if id15(d) not in known) for sid, m in mapped.items()
        }
        ls_ids: dict[str, asyncio.Future[int]] = {}
        loop = asyncio.get_running_loop()
        for sid in mapped:
            ls_ids[sid] = loop.create_future()
        semaphore = asyncio.Semaphore(self._settings.sync.concurrency)
        tasks = [
            asyncio.create_task(
                self._sync_one(
                    sid,
                    mapped=m,
                    snapshot=snapshot,
                    known=known,
                    contacts=contacts,
                    ls_ids=ls_ids,
                    semaphore=semaphore,
                    report=report,
                )
            )
            for sid, m in mapped.items()
            if sid not in report.failures
        ]
        tasks += [
            asyncio.create_task(self._deleted(sid, known.get(sid), semaphore, report))
            for sid in batch
            if not snapshot.exists(sid) and sid not in report.failures
        ]
        for sid, future in ls_ids.items():
            if sid in report.failures and not future.done():
                future.set_exception(report.failures[sid])
        await asyncio.gather(*tasks)
        for future in ls_ids.values():
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warnings
        return report

    def _map(self, sid: str, snapshot: Snapshot, mapped: dict[str, MappedAccount], report: DeliveryReport) -> None:
        try:
            mapped[sid] = map_account(snapshot.accounts[sid], self._settings, self._refs)
        except MappingError as exc:
            report.failures[sid] = exc

    def _sf_id(self, sid: str, snapshot: Snapshot) -> str:
        record = snapshot.accounts.get(sid)
        return str(record["Id"]) if record else sid

    @staticmethod
    def _deps(mapped: dict[str, MappedAccount]) -> list[str]:
        return sorted({d for m in mapped.values() for d in m.dependencies})

    async def _pull_in_dependencies(
        self,
        snapshot: Snapshot,
        mapped: dict[str, MappedAccount],
        known: dict[str, dict[str, Any]],
        report: DeliveryReport,
        read_more: Callable[[list[str]], Awaitable[Snapshot]],
    ) -> None:
        """Parents and invoice recipients missing from LogiSense are synced first, batch or not."""
        tried: set[str] = set()
        while True:
            missing = [
                d for d in self._deps(mapped) if id15(d) not in mapped and id15(d) not in known and id15(d) not in tried
            ]
            if not missing:
                return
            tried.update(id15(d) for d in missing)
            extra = await read_more(missing)
            snapshot.merge(extra)
            for dep in missing:
                if snapshot.exists(dep):
                    self._map(id15(dep), snapshot, mapped, report)
                    report.pulled_in.add(id15(dep))
            new_deps = [d for d in self._deps(mapped) if id15(d) not in known and id15(d) not in tried]
            known.update(await self._find_accounts(new_deps))

    async def _sync_one(
        self,
        sid: str,
        *,
        mapped: MappedAccount,
        snapshot: Snapshot,
        known: dict[str, dict[str, Any]],
        contacts: dict[str, LsContact],
        ls_ids: dict[str, asyncio.Future[int]],
        semaphore: asyncio.Semaphore,
        report: DeliveryReport,
    ) -> None:
        token = current_account.set(mapped.sfdc_id)
        future = ls_ids[sid]
        try:
            deps = await self._dependency_ids(mapped, known, ls_ids, report)
            async with semaphore:
                identity = await self._upsert_account(sid, mapped, deps, known.get(sid), report)
                future.set_result(identity)
                await self._sync_contacts(identity, snapshot.contacts.get(sid, []), contacts, report)
            report.synced.add(sid)
        except PermanentError as exc:
            report.failures[sid] = exc
            if not future.done():
                future.set_exception(exc)
            log.warning("account_failed", account_id=mapped.sfdc_id, error=str(exc))
        finally:
            current_account.reset(token)

    async def _dependency_ids(
        self,
        mapped: MappedAccount,
        known: dict[str, dict[str, Any]],
        ls_ids: dict[str, asyncio.Future[int]],
        report: DeliveryReport,
    ) -> dict[str, int]:
        result: dict[str, int] = {}
        for dep in mapped.dependencies:
            key = id15(dep)
            if key in known:
                result[key] = int(known[key]["identity"])
            elif key in ls_ids:
                if self._waits_on_itself(mapped.sfdc_id, key):
                    raise MappingError(
                        f"Salesforce account {mapped.sfdc_id} and {dep} reference each other as parent or "
                        "invoice recipient and neither exists in LogiSense yet; clear one of the references"
                    )
                try:
                    result[key] = await asyncio.shield(ls_ids[key])
                except PermanentError as exc:
                    cause = _error_class(exc)
                    raise DependencyFailedError(
                        f"account {dep}, which Salesforce account {mapped.sfdc_id} references as parent or invoice "
                        f"recipient, could not be synced ({cause}): {exc}",
                        dependency=dep,
                        dependency_error_class=cause,
                    ) from exc
            else:
                raise MappingError(
                    f"Salesforce account {mapped.sfdc_id} references account {dep} as parent or invoice recipient, "
                    "which exists neither in Salesforce nor in LogiSense"
                )
        return result

    def _waits_on_itself(self, start: str, dep: str) -> bool:
        """True when `dep` (transitively) waits for `start`: a cycle no order can satisfy."""
        seen: set[str] = set()
        stack = [dep]
        while stack:
            node = stack.pop()
            if node == id15(start):
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(self._waits_for.get(node, ()))
        return False

    async def _upsert_account(
        self,
        sid: str,
        mapped: MappedAccount,
        deps: dict[str, int],
        existing: dict[str, Any] | None,
        report: DeliveryReport,
    ) -> int:
        body = dict(mapped.body)
        body["parentAccountId"] = deps.get(id15(mapped.parent_sfdc_id)) if mapped.parent_sfdc_id else None
        invoicer = deps.get(id15(mapped.invoicer_sfdc_id)) if mapped.invoicer_sfdc_id else None
        if mapped.invoicer_sfdc_id and id15(mapped.invoicer_sfdc_id) == sid and existing is not None:
            invoicer = int(existing["identity"])
        body["invoicerAccountId"] = body["usageInvoicerAccountId"] = invoicer
        if (
            self._settings.sync.on_account_delete == "flag"
            and existing
            and existing.get(self._settings.sync.deleted_flag_field)
        ):
            body[self._settings.sync.deleted_flag_field] = False
        if existing is not None:
            changes = _diff(existing, body)
            if changes:
                await self._client.update("Account", int(existing["identity"]), changes)
                report.count("account_updates")
            else:
                report.count("account_unchanged")
            return int(existing["identity"])
        if invoicer is None and mapped.invoicer_sfdc_id:  # invoiced to itself: set once it has an id
            body.pop("invoicerAccountId")
            body.pop("usageInvoicerAccountId")
        for kind, target in (("currency", "currencyId"),):
            default = self._refs.default(kind)
            if default is not None:
                body.setdefault(target, default)
        created = await self._create_once(
            "Account", lambda: self._once.create("Account", body), lambda: self._find_account(mapped.sfdc_id)
        )
        report.count("account_creates")
        identity = int(created["identity"])
        if mapped.invoicer_sfdc_id and id15(mapped.invoicer_sfdc_id) == sid:
            await self._client.update(
                "Account", identity, {"invoicerAccountId": identity, "usageInvoicerAccountId": identity}
            )
            report.count("account_updates")
        return identity

    async def _deleted(
        self, sid: str, existing: dict[str, Any] | None, semaphore: asyncio.Semaphore, report: DeliveryReport
    ) -> None:
        """A Salesforce account that is deleted: close, flag or ignore its LogiSense account."""
        mode = self._settings.sync.on_account_delete
        if existing is None or mode == "ignore":
            report.count("deleted_ignored")
            return
        token = current_account.set(str(existing.get(self._link) or sid))
        try:
            if mode == "close":
                closed = self._refs("account_status_type", self._settings.sync.closed_status_name)
                changes = _diff(existing, {"accountStatusTypeId": closed})
            else:
                changes = _diff(existing, {self._settings.sync.deleted_flag_field: True})
            if changes:
                async with semaphore:
                    await self._client.update("Account", int(existing["identity"]), changes)
            report.count("accounts_closed" if mode == "close" else "accounts_flagged")
            report.synced.add(sid)
        except PermanentError as exc:
            report.failures[sid] = exc
        finally:
            current_account.reset(token)

    # --- contacts -------------------------------------------------------------------------------

    async def _sync_contacts(
        self,
        account_identity: int,
        sf_contacts: list[dict[str, Any]],
        by_link: dict[str, LsContact],
        report: DeliveryReport,
    ) -> None:
        wanted = [
            map_contact(c, self._settings, self._refs, default_contact_type=self._settings.sync.default_contact_type)
            for c in sf_contacts
        ]
        under = list(self._under.get(account_identity, []))
        wanted_ids = {id15(m.sfdc_id) for m in wanted}
        for contact in wanted:
            existing = by_link.get(id15(contact.sfdc_id)) or self._adoptable(under, contact)
            if existing is None and self._settings.sync.atomic_contact_create:
                await self._create_contact_with_points(account_identity, contact, report)
                continue  # created whole: every mapped point is already there
            if existing is None:
                existing = await self._create_contact(account_identity, contact, report)
            else:
                changes = _diff(existing.record, {**contact.body, "accountId": account_identity})
                if changes:
                    await self._client.update("Contact", existing.identity, changes)
                    existing.record.update(changes)
                    report.count("contact_updates")
            await self._sync_points(existing, contact, report)
        for stale in under:
            link = self._link_value(stale)
            if link and id15(link) not in wanted_ids and id15(link) not in self._batch_contact_ids:
                await self._client.delete("Contact", stale.identity)
                report.count("contact_deletes")

    def _adoptable(self, under: list[LsContact], contact: MappedContact) -> LsContact | None:
        """A contact of this account without a link point and with the same name and type (an
        interrupted earlier create): adopt it instead of creating a second one."""
        for candidate in under:
            if self._link_value(candidate) is None and not _diff(
                candidate.record,
                {k: contact.body[k] for k in ("firstName", "lastName", "contactTypeId")},
            ):
                under.remove(candidate)
                return candidate
        return None

    def _link_value(self, contact: LsContact) -> str | None:
        for point in contact.points:
            if self._refs.point_names.get(int(point["contactPointTypeId"])) == self._link and point.get("value"):
                return str(point["value"])
        return None

    async def _create_contact(self, account_identity: int, contact: MappedContact, report: DeliveryReport) -> LsContact:
        body = {**contact.body, "accountId": account_identity}

        earlier: LsContact | None = None

        async def find() -> dict[str, Any] | None:
            nonlocal earlier
            found = await self._contacts_of([account_identity])
            linked = [c for c in found if self._link_value(c) == contact.sfdc_id]
            earlier = linked[0] if linked else self._adoptable(found, contact)
            return earlier.record if earlier else None

        record = await self._create_once("Contact", lambda: self._once.create("Contact", body), find)
        if earlier is not None and earlier.record is record:
            return earlier  # an earlier attempt had created it after all
        report.count("contact_creates")
        return LsContact(record=record, points=[])

    async def _create_contact_with_points(
        self, account_identity: int, contact: MappedContact, report: DeliveryReport
    ) -> None:
        """One `PATCH Account/{id}` creating the contact and all its points in one transaction."""
        points = [{"contactPointTypeId": type_id, **wanted} for type_id, wanted in self._point_bodies(contact)]
        body = {"contacts": [{**contact.body, "accountId": account_identity, "contactPoints": points}]}
        created = True

        async def find() -> dict[str, Any] | None:
            nonlocal created
            found = await self._contacts_of([account_identity])
            linked = [c for c in found if (link := self._link_value(c)) and id15(link) == id15(contact.sfdc_id)]
            if linked:
                created = False  # an earlier attempt went through after all
                return linked[0].record
            return None

        await self._create_once("Account", lambda: self._once.patch("Account", account_identity, body), find)
        if created:
            report.count("contact_creates")
            report.count("point_creates", len(points))

    def _point_bodies(self, mapped: MappedContact) -> list[tuple[int, dict[str, Any]]]:
        """(contact point type id, fields) of each mapped point, the link point first."""
        result = []
        for name, wanted in sorted(mapped.points.items(), key=lambda item: item[0] != self._link):
            type_id = self._refs.point_type(mapped.contact_type_id, name)
            if type_id is None:
                raise MappingError(
                    f"LogiSense contact type {mapped.contact_type_id} has no contact point {name!r}; "
                    "fix mappings.contact_points"
                )
            result.append((type_id, wanted))
        return result

    async def _sync_points(self, contact: LsContact, mapped: MappedContact, report: DeliveryReport) -> None:
        by_type = {int(p["contactPointTypeId"]): p for p in contact.points}
        keep: set[int] = set()
        for type_id, wanted in self._point_bodies(mapped):
            keep.add(type_id)
            current = by_type.get(type_id)
            if current is None:
                body = {"contactId": contact.identity, "contactPointTypeId": type_id, **wanted}
                await self._client.create("Contact/Point", body)
                report.count("point_creates")
            else:
                changes = _diff(current, wanted)
                if changes:
                    await self._client.update("Contact/Point", int(current["identity"]), changes)
                    report.count("point_updates")
        for type_id, point in by_type.items():
            if type_id not in keep:
                await self._client.delete("Contact/Point", int(point["identity"]))
                report.count("point_deletes")

    # --- bulk reads -----------------------------------------------------------------------------

    async def _prefetch_contacts(
        self, snapshot: Snapshot, mapped: dict[str, MappedAccount], known: dict[str, dict[str, Any]]
    ) -> dict[str, LsContact]:
        """LogiSense contacts of the batch's accounts, and any contact holding a batch contact's id."""
        account_identities = sorted(int(known[s]["identity"]) for s in mapped if s in known)
        under = await self._contacts_of(account_identities)
        self._under = {}
        for contact in under:
            self._under.setdefault(int(contact.record["accountId"]), []).append(contact)
        by_link = {id15(link): c for c in under if (link := self._link_value(c))}
        sf_ids = sorted(str(c["Id"]) for s in mapped for c in snapshot.contacts.get(s, []))
        self._batch_contact_ids = {id15(i) for i in sf_ids}
        missing = [i for i in sf_ids if id15(i) not in by_link]
        if missing:
            link_types = self._refs.link_point_types(self._link)
            points = await self._search_in("Contact/Point", "value", missing)
            owners = sorted({int(p["contactId"]) for p in points if int(p["contactPointTypeId"]) in link_types})
            elsewhere = await self._contacts_by_identity(owners)
            by_link.update({id15(link): c for c in elsewhere if (link := self._link_value(c))})
        return by_link

    async def _contacts_of(self, account_identities: list[int]) -> list[LsContact]:
        records = await self._search_in("Contact", "accountId", account_identities)
        return await self._with_points(records)

    async def _contacts_by_identity(self, identities: list[int]) -> list[LsContact]:
        records = await self._search_in("Contact", "identity", identities)
        return await self._with_points(records)

    async def _with_points(self, records: list[dict[str, Any]]) -> list[LsContact]:
        contacts = {int(r["identity"]): LsContact(record=r) for r in records}
        for point in await self._points_of(sorted(contacts)):
            contact = contacts.get(int(point["contactId"]))
            if contact is not None:
                contact.points.append(point)
        return list(contacts.values())

    async def _points_of(self, contact_identities: list[int]) -> list[dict[str, Any]]:
        return await self._search_in("Contact/Point", "contactId", contact_identities)

    async def _find_accounts(self, sf_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """LogiSense accounts by 15-char Salesforce id, found by the link field."""
        unique = sorted({id15(i): i for i in sf_ids}.values())
        found: dict[str, dict[str, Any]] = {}
        for record in await self._search_in("Account", self._link, unique):
            link = record.get(self._link)
            if link:
                found.setdefault(id15(str(link)), record)
        return found

    async def _find_account(self, sf_id: str) -> dict[str, Any] | None:
        found = await self._once.search("Account", [{"name": self._link, "operator": "eq", "value": sf_id}], top=2)
        return found[0] if found else None

    async def _search_in(self, resource: str, name: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        """Every record whose `name` is one of `values`: bulk `in` searches, or one `eq` per value."""
        results: list[dict[str, Any]] = []
        for part in _chunks(list(values)):
            if self._in_supported:
                try:
                    results += await self._client.search(
                        resource, [{"name": name, "operator": "in", "value": part}], top=SEARCH_TOP
                    )
                    continue
                except PermanentError as exc:  # a LogiSense without the `in` operator answers 400
                    if exc.status != 400:
                        raise
                    log.warning("search_in_unsupported", resource=resource, error=str(exc))
                    self._in_supported = False
            for value in part:
                results += await self._client.search(
                    resource, [{"name": name, "operator": "eq", "value": value}], top=SEARCH_TOP
                )
        return results

    # --- creates that never duplicate -----------------------------------------------------------

    async def _create_once(
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
            self._on_retry(resource)

        return await call_with_retries(once, self._policy, on_retry=retried)
