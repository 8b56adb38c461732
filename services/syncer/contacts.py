"""Contact writes of one account: contacts and their contact points, linked by the Salesforce contact id.

- A contact is found by its link point (`sfdcid`, the link field), wherever LogiSense holds it; one
  found under another account is moved to this one.
- A new contact is created with all its points, the link point included, in one
  `PATCH Account/{id}` (`contacts` -> `contactPoints`), which LogiSense applies as one transaction:
  a crash leaves either nothing or a linked contact. With `sync.atomic_contact_create` off it is
  `POST Contact`, then `POST Contact/Point` per point; a contact left without its link point by a
  crash in between is taken over (same name and type) by the account's next sync.
- A LogiSense contact of the account whose Salesforce contact is gone is deleted, unless that contact
  belongs to another account of the same batch (it is moving there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.syncer.context import BatchContext, DeliveryReport
from services.syncer.lookups import LsContact, Writer, diff
from services.syncer.references import References
from services.syncer.snapshot import id15
from shared.errors import MappingError
from shared.mapping import MappedContact, map_contact


class ContactWriter(Writer):
    """Creates, updates and deletes the contacts and points of an account; holds no per-batch state."""

    async def sync(self, account_identity: int, sf_contacts: list[dict[str, Any]], batch: BatchContext) -> None:
        """Make the LogiSense contacts of one account what Salesforce holds, in sequence."""
        report = batch.report
        wanted = [
            map_contact(c, self._settings, self._refs, default_contact_type=self._settings.sync.default_contact_type)
            for c in sf_contacts
        ]
        under = list(batch.contacts.under.get(account_identity, []))
        wanted_ids = {id15(m.sfdc_id) for m in wanted}
        for contact in wanted:
            existing = batch.contacts.by_link.get(id15(contact.sfdc_id)) or self._adoptable(under, contact)
            if existing is None and self._settings.sync.atomic_contact_create:
                await self._create_with_points(account_identity, contact, report)
                continue  # created whole: every mapped point is already there
            if existing is None:
                existing = await self._create(account_identity, contact, report)
            else:
                changes = diff(existing.record, {**contact.body, "accountId": account_identity})
                if changes:
                    await self._client.update("Contact", existing.identity, changes)
                    existing.record.update(changes)
                    report.count("contact_updates")
            await self._sync_points(existing, contact, report)
        for stale in under:
            link = self._lookups.link_value(stale)
            if link and id15(link) not in wanted_ids and id15(link) not in batch.contacts.batch_ids:
                await self._client.delete("Contact", stale.identity)
                report.count("contact_deletes")

    def _adoptable(self, under: list[LsContact], contact: MappedContact) -> LsContact | None:
        """A contact of this account without a link point and with the same name and type (an
        interrupted earlier create): adopt it instead of creating a second one."""
        for candidate in under:
            if self._lookups.link_value(candidate) is None and not diff(
                candidate.record,
                {k: contact.body[k] for k in ("firstName", "lastName", "contactTypeId")},
            ):
                under.remove(candidate)
                return candidate
        return None

    async def _create(self, account_identity: int, contact: MappedContact, report: DeliveryReport) -> LsContact:
        body = {**contact.body, "accountId": account_identity}

        earlier: LsContact | None = None

        async def find() -> dict[str, Any] | None:
            nonlocal earlier
            found = await self._lookups.contacts_of([account_identity])
            linked = [c for c in found if self._lookups.link_value(c) == contact.sfdc_id]
            earlier = linked[0] if linked else self._adoptable(found, contact)
            return earlier.record if earlier else None

        record = await self._create_once("Contact", lambda: self._once.create("Contact", body), find)
        if earlier is not None and earlier.record is record:
            return earlier  # an earlier attempt had created it after all
        report.count("contact_creates")
        return LsContact(record=record, points=[])

    async def _create_with_points(self, account_identity: int, contact: MappedContact, report: DeliveryReport) -> None:
        """One `PATCH Account/{id}` creating the contact and all its points in one transaction."""
        points = [{"contactPointTypeId": type_id, **wanted} for type_id, wanted in self._point_bodies(contact)]
        body = {"contacts": [{**contact.body, "accountId": account_identity, "contactPoints": points}]}
        created = True

        async def find() -> dict[str, Any] | None:
            nonlocal created
            found = await self._lookups.contacts_of([account_identity])
            linked = [c for c in found if (link := self._lookups.link_value(c)) and id15(link) == id15(contact.sfdc_id)]
            if linked:
                created = False  # an earlier attempt went through after all
                return linked[0].record
            return None

        await self._create_once("Account", lambda: self._once.patch("Account", account_identity, body), find)
        if created:
            report.count("contact_creates")
            report.count("point_creates", len(points))

    def _point_bodies(self, mapped: MappedContact) -> list[tuple[int, dict[str, Any]]]:
        return point_bodies(mapped, self._refs, self._link)

    async def _sync_points(self, contact: LsContact, mapped: MappedContact, report: DeliveryReport) -> None:
        plan = plan_points(contact.points, mapped, self._refs, self._link)
        for type_id, wanted in plan.creates:
            body = {"contactId": contact.identity, "contactPointTypeId": type_id, **wanted}
            await self._client.create("Contact/Point", body)
            report.count("point_creates")
        for current, changes in plan.updates:
            await self._client.update("Contact/Point", int(current["identity"]), changes)
            report.count("point_updates")
        for point in plan.deletes:
            await self._client.delete("Contact/Point", int(point["identity"]))
            report.count("point_deletes")


def point_bodies(mapped: MappedContact, refs: References, link: str) -> list[tuple[int, dict[str, Any]]]:
    """(contact point type id, fields) of each mapped point, the link point first."""
    result = []
    for name, wanted in sorted(mapped.points.items(), key=lambda item: item[0] != link):
        type_id = refs.point_type(mapped.contact_type_id, name)
        if type_id is None:
            raise MappingError(
                f"LogiSense contact type {mapped.contact_type_id} has no contact point {name!r}; "
                "fix mappings.contact_points"
            )
        result.append((type_id, wanted))
    return result


@dataclass
class PointPlan:
    """What makes a LogiSense contact's points the mapped ones: the syncer writes it, `sfls reconcile` reports it."""

    creates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (point type id, fields)
    updates: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # (point, changed fields)
    deletes: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.creates or self.updates or self.deletes)


def plan_points(points: list[dict[str, Any]], mapped: MappedContact, refs: References, link: str) -> PointPlan:
    """The point writes that make `points` (a LogiSense contact's) what `mapped` maps from Salesforce."""
    by_type = {int(p["contactPointTypeId"]): p for p in points}
    plan = PointPlan()
    keep: set[int] = set()
    for type_id, wanted in point_bodies(mapped, refs, link):
        keep.add(type_id)
        current = by_type.get(type_id)
        if current is None:
            plan.creates.append((type_id, wanted))
        elif changes := diff(current, wanted):
            plan.updates.append((current, changes))
    plan.deletes.extend(point for type_id, point in by_type.items() if type_id not in keep)
    return plan
