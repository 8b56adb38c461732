"""Per-batch delivery state lives in the batch: nothing one deliver() call learns reaches the next one."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.syncer.context import DeliveryReport
from services.syncer.deliver import Deliverer
from services.syncer.references import References
from services.syncer.snapshot import Snapshot, id15
from shared.errors import DependencyFailedError, MappingError, PermanentError
from shared.retry import RetryPolicy
from shared.settings import LogisenseSettings, MappingSettings, SalesforceSettings, Settings, SyncSettings

Records = list[dict[str, Any]]
LINK_POINT_TYPE = 10


def sf_id(n: int, prefix: str = "001") -> str:
    """An 18-character Salesforce id."""
    return f"{prefix}{n:012d}AAA"


class FakeLogisense:
    """In-memory LogiSense: accounts, contacts and contact points, searched with `in` and `eq`."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[int, dict[str, Any]]] = {"Account": {}, "Contact": {}, "Contact/Point": {}}
        self.references: dict[str, Records] = {
            "ContactType": [{"identity": 1, "name": "Billing"}],
            "ContactPointType": [{"identity": LINK_POINT_TYPE, "contactTypeId": 1, "name": "sfdcid"}],
            "Account/StatusType": [{"identity": 5, "name": "Closed"}],
        }
        self.ids = itertools.count(1000)
        self.gates: dict[tuple[str, int], asyncio.Event] = {}  # (resource, identity) of an update that waits
        self.paused = asyncio.Event()  # an update is waiting at its gate

    async def list(self, resource: str) -> Records:
        await asyncio.sleep(0)
        return [dict(r) for r in self.references.get(resource, [])]

    async def search(
        self,
        resource: str,
        conditions: Records,
        *,
        fields: Sequence[str] | None = None,
        order_by: Records | None = None,
        top: int | None = None,
    ) -> Records:
        await asyncio.sleep(0)
        (condition,) = conditions
        wanted = condition["value"] if condition["operator"] == "in" else [condition["value"]]
        found = [dict(r) for r in self.tables[resource].values() if r.get(condition["name"]) in wanted]
        return found[:top] if top else found

    async def create(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        identity = next(self.ids)
        self.tables[resource][identity] = {**body, "identity": identity}
        return dict(self.tables[resource][identity])

    async def update(self, resource: str, identity: int, body: dict[str, Any]) -> Any:
        gate = self.gates.get((resource, identity))
        if gate is not None:
            self.paused.set()
            await gate.wait()
        await asyncio.sleep(0)
        self._existing(resource, identity).update(body)
        return None

    async def patch(self, resource: str, identity: int, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        self._existing(resource, identity)
        for contact in body.get("contacts", []):
            points = contact.pop("contactPoints", [])
            created = await self.create("Contact", contact)
            for point in points:
                await self.create("Contact/Point", {**point, "contactId": created["identity"]})
        return dict(self.tables[resource][identity])

    async def delete(self, resource: str, identity: int) -> Any:
        await asyncio.sleep(0)
        self._existing(resource, identity)
        del self.tables[resource][identity]
        if resource == "Contact":
            points = self.tables["Contact/Point"]
            for point_id in [i for i, p in points.items() if p["contactId"] == identity]:
                del points[point_id]
        return None

    def _existing(self, resource: str, identity: int) -> dict[str, Any]:
        record = self.tables[resource].get(identity)
        if record is None:
            raise PermanentError(f"{resource} {identity} not found", status=404)
        return record

    def account(self, salesforce_id: str) -> dict[str, Any]:
        (found,) = [a for a in self.tables["Account"].values() if a["sfdcid"] == salesforce_id]
        return found


def contact_links(ls: FakeLogisense, salesforce_account_id: str) -> list[str]:
    """The Salesforce ids (link points) of the LogiSense contacts of one account."""
    identity = ls.account(salesforce_account_id)["identity"]
    contacts = {i for i, c in ls.tables["Contact"].items() if c["accountId"] == identity}
    return sorted(p["value"] for p in ls.tables["Contact/Point"].values() if p["contactId"] in contacts)


class FakeSalesforce:
    """Salesforce state a batch reads: accounts and their contacts."""

    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {}
        self.contacts: dict[str, Records] = {}

    def add_account(self, record_id: str, name: str, *, parent: str | None = None) -> None:
        self.accounts[id15(record_id)] = {"Id": record_id, "Name": name, "ParentId": parent, "IsDeleted": False}
        self.contacts.setdefault(id15(record_id), [])

    def add_contact(self, record_id: str, account_id: str, last_name: str) -> None:
        contact = {"Id": record_id, "AccountId": account_id, "FirstName": "Pat", "LastName": last_name}
        self.contacts.setdefault(id15(account_id), []).append(contact)

    def snapshot(self, account_ids: Sequence[str]) -> Snapshot:
        snap = Snapshot()
        for account_id in account_ids:
            record = self.accounts.get(id15(account_id))
            if record is not None:
                snap.accounts[id15(account_id)] = dict(record)
                if not record["IsDeleted"]:
                    snap.contacts[id15(account_id)] = [dict(c) for c in self.contacts.get(id15(account_id), [])]
        return snap

    def read_more(self) -> Callable[[list[str]], Awaitable[Snapshot]]:
        async def read(more: list[str]) -> Snapshot:
            return self.snapshot(more)

        return read


def deliverer(ls: FakeLogisense) -> Deliverer:
    settings = Settings(
        salesforce=SalesforceSettings(), logisense=LogisenseSettings(), sync=SyncSettings(), mappings=MappingSettings()
    )
    return Deliverer(ls, ls, settings, References(), policy=RetryPolicy(max_attempts=2, base_seconds=0))


async def deliver(target: Deliverer, sf: FakeSalesforce, account_ids: list[str]) -> DeliveryReport:
    return await target.deliver(account_ids, sf.snapshot(account_ids), sf.read_more())


async def test_a_contact_deleted_between_batches_is_deleted_once() -> None:
    """Batch 3 deletes the contact Salesforce dropped: batch 1's contact ids and batch 2's contacts are gone."""
    ls, sf = FakeLogisense(), FakeSalesforce()
    account, kept, dropped = sf_id(1), sf_id(1, "003"), sf_id(2, "003")
    sf.add_account(account, "Acme")
    sf.add_contact(kept, account, "Kept")
    sf.add_contact(dropped, account, "Dropped")
    target = deliverer(ls)

    first = await deliver(target, sf, [account])
    assert first.failures == {}
    assert first.counts == {"account_creates": 1, "contact_creates": 2, "point_creates": 2}
    second = await deliver(target, sf, [account])
    assert second.failures == {}
    assert second.counts == {"account_unchanged": 1}  # both contacts found, nothing to write

    sf.contacts[id15(account)] = [c for c in sf.contacts[id15(account)] if c["Id"] != dropped]
    third = await deliver(target, sf, [account])

    assert third.failures == {}
    assert third.counts == {"account_unchanged": 1, "contact_deletes": 1}
    assert contact_links(ls, account) == [kept]


async def test_cycle_detection_sees_only_the_batch_s_own_dependencies() -> None:
    """A dependency that waited in an earlier batch is no cycle now: the child fails with its dependency."""
    ls, sf = FakeLogisense(), FakeSalesforce()
    child, middle, orphan = sf_id(1), sf_id(2), sf_id(3)
    sf.add_account(orphan, "Orphan", parent=child)  # its parent does not exist yet anywhere
    target = deliverer(ls)

    first = await deliver(target, sf, [orphan])
    assert isinstance(first.failures[id15(orphan)], MappingError)  # it waited for `child`, which is nowhere

    sf.accounts[id15(orphan)]["IsDeleted"] = True
    sf.add_account(child, "Child", parent=middle)
    sf.add_account(middle, "Middle", parent=orphan)
    second = await deliver(target, sf, [child, middle])

    assert isinstance(second.failures[id15(middle)], MappingError)  # its parent was deleted in Salesforce
    failed = second.failures[id15(child)]
    assert isinstance(failed, DependencyFailedError), failed
    assert failed.dependency == middle
    assert failed.dependency_error_class == "MappingError"


async def test_overlapping_batches_keep_their_own_contacts() -> None:
    """A batch that runs while another one is mid-way still deletes its own stale contact, and only that one."""
    ls, sf = FakeLogisense(), FakeSalesforce()
    first_account, second_account = sf_id(1), sf_id(2)
    first_stale, second_kept = sf_id(1, "003"), sf_id(2, "003")
    sf.add_account(first_account, "First")
    sf.add_contact(first_stale, first_account, "Stale")
    sf.add_account(second_account, "Second")
    sf.add_contact(second_kept, second_account, "Kept")
    target = deliverer(ls)
    seeded = await deliver(target, sf, [first_account, second_account])
    assert seeded.failures == {}

    sf.accounts[id15(first_account)]["Name"] = "First renamed"
    sf.contacts[id15(first_account)] = []
    gate = asyncio.Event()
    ls.gates[("Account", ls.account(first_account)["identity"])] = gate  # the first batch pauses at its update
    first = asyncio.create_task(deliver(target, sf, [first_account]))
    await ls.paused.wait()  # the first batch has read its contacts and waits for its account update
    second = await deliver(target, sf, [second_account])
    gate.set()
    first_report = await first

    assert second.failures == {}
    assert second.counts == {"account_unchanged": 1}
    assert first_report.failures == {}
    assert first_report.counts == {"account_updates": 1, "contact_deletes": 1}
    assert contact_links(ls, first_account) == []
    assert contact_links(ls, second_account) == [second_kept]
