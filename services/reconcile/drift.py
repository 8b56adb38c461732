"""The comparison of `sfls reconcile`: Salesforce accounts against the LogiSense accounts linked to them.

Both sides go through the syncer's own rules, so what counts as drift is exactly what the syncer would write:
`shared/mapping.py` maps the Salesforce record, services/syncer/accounts.py `account_body` adds the LogiSense ids
of its parent and invoice recipient, and services/syncer/lookups.py `diff` compares (a field the syncer never
sends is never drift). The kinds:
- `account_missing`: a Salesforce account with no LogiSense account linked to it (repaired by a resync);
- `account_field_mismatch`: one drift per field the syncer would change, with both values (repaired by a resync);
- `account_unmappable`: the syncer could not map it (it would dead-letter it), with the reason; for a person;
- `account_orphan`: a LogiSense account whose link names no Salesforce account, or a deleted one it was not
  closed or flagged for (`sync.on_account_delete`); reported, never deleted;
- `account_duplicate_link`: two or more LogiSense accounts linked to one Salesforce id; reported.
Contacts (of the accounts linked in LogiSense; services/syncer/contacts.py decides what the syncer writes):
- `contact_missing`: a Salesforce contact with no LogiSense contact linked to it (its link point);
- `contact_field_mismatch` and `contact_point_mismatch` (the point's name as the field; a point to create, change
  or delete): one drift per difference the syncer would write;
- `contact_orphan`: a LogiSense contact whose link names no Salesforce contact, or a deleted one;
- `contact_unmappable`: the syncer could not map it;
all repaired by a resync of the Salesforce account they belong to (the syncer creates, updates and deletes an
account's contacts), except an orphan under a LogiSense account linked to no Salesforce account.
The catalogue (`--scope catalogue`; services/reconcile/catalogue.py compares through the importer's own code):
- `catalogue_missing`: a LogiSense catalogue item with no Salesforce record of its external id;
- `catalogue_stale`: the record's stored content hash differs from the one the importer would write now;
both repaired by re-landing their entity through the importer (catalogue.py `repair_catalogue`, not an account
resync: they are not in REPAIRABLE, so `Drift.repair_account` stays None for them);
- `catalogue_left_behind`: a Salesforce record whose LogiSense item no longer exists; reported, never deleted.
Price plans (`--scope price_plans`; services/reconcile/price_plans.py plans each pushed opportunity's push through
services/opportunity/plan.py `plan_push` and `entry_changes`, writing nothing):
- `price_plan_missing`: the account's price plan the push wrote (`LogiSense_Price_Plan_Id__c`) is gone;
- `price_plan_entry_missing`: an entry the push would create (a line with no entry);
- `price_plan_entry_mismatch`: an entry the push would update, one drift per charge field it would change;
- `price_plan_entry_left_behind`: an entry the push would delete (its line was removed);
- `price_plan_code_missing`: a line's product code (`LogiSense_Product_Code_Id__c`) is gone from LogiSense;
- `price_plan_unplannable`: the push would refuse the opportunity now (the refusal's reason), so nothing is compared.
All reported only: not in REPAIRABLE (`Drift.repair_account` stays None); a person re-pushes the opportunity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.syncer.accounts import account_body
from services.syncer.contacts import plan_points
from services.syncer.lookups import LsContact, diff
from services.syncer.references import References
from services.syncer.snapshot import id15
from shared.errors import MappingError
from shared.mapping import map_account, map_contact
from shared.settings import Settings


class Kind(StrEnum):
    ACCOUNT_MISSING = "account_missing"
    ACCOUNT_FIELD_MISMATCH = "account_field_mismatch"
    ACCOUNT_UNMAPPABLE = "account_unmappable"
    ACCOUNT_ORPHAN = "account_orphan"
    ACCOUNT_DUPLICATE_LINK = "account_duplicate_link"
    CONTACT_MISSING = "contact_missing"
    CONTACT_FIELD_MISMATCH = "contact_field_mismatch"
    CONTACT_POINT_MISMATCH = "contact_point_mismatch"
    CONTACT_ORPHAN = "contact_orphan"
    CONTACT_UNMAPPABLE = "contact_unmappable"
    CATALOGUE_MISSING = "catalogue_missing"
    CATALOGUE_STALE = "catalogue_stale"
    CATALOGUE_LEFT_BEHIND = "catalogue_left_behind"
    PRICE_PLAN_MISSING = "price_plan_missing"
    PRICE_PLAN_ENTRY_MISSING = "price_plan_entry_missing"
    PRICE_PLAN_ENTRY_MISMATCH = "price_plan_entry_mismatch"
    PRICE_PLAN_ENTRY_LEFT_BEHIND = "price_plan_entry_left_behind"
    PRICE_PLAN_CODE_MISSING = "price_plan_code_missing"
    PRICE_PLAN_UNPLANNABLE = "price_plan_unplannable"


REPAIRABLE = frozenset(
    {
        Kind.ACCOUNT_MISSING,
        Kind.ACCOUNT_FIELD_MISMATCH,
        Kind.CONTACT_MISSING,
        Kind.CONTACT_FIELD_MISMATCH,
        Kind.CONTACT_POINT_MISMATCH,
        Kind.CONTACT_ORPHAN,
    }
)
_VALUES = frozenset({Kind.ACCOUNT_FIELD_MISMATCH, Kind.CONTACT_FIELD_MISMATCH, Kind.CONTACT_POINT_MISMATCH})


@dataclass(frozen=True)
class Drift:
    """One difference between the two systems."""

    kind: Kind
    salesforce_id: str | None = None
    logisense_id: int | None = None
    field: str | None = None
    salesforce: Any = None  # the value the syncer would write
    logisense: Any = None  # the value LogiSense holds
    detail: str = ""
    account_id: str | None = None  # the Salesforce account a repair resyncs (a contact's)

    @property
    def repair_account(self) -> str | None:
        """The Salesforce account whose resync repairs this drift, or None when a person must."""
        if self.kind not in REPAIRABLE:
            return None
        return self.account_id if self.kind.value.startswith("contact_") else self.salesforce_id

    def to_json(self) -> dict[str, Any]:
        """The drift as one JSON object (`--format json`); values only for a field mismatch."""
        item: dict[str, Any] = {"kind": self.kind.value}
        for name in ("salesforce_id", "logisense_id", "field", "account_id"):
            if getattr(self, name) is not None:
                item[name] = getattr(self, name)
        if self.kind in _VALUES:
            item["salesforce"], item["logisense"] = self.salesforce, self.logisense
        if self.detail:
            item["detail"] = self.detail
        return item


def _closed(record: Mapping[str, Any], settings: Settings, refs: References) -> bool:
    """True when a LogiSense account already carries what the syncer does to a deleted Salesforce account."""
    mode = settings.sync.on_account_delete
    if mode == "ignore":
        return True
    if mode == "flag":
        return bool(record.get(settings.sync.deleted_flag_field))
    closed = refs("account_status_type", settings.sync.closed_status_name)
    return record.get("accountStatusTypeId") is not None and int(record["accountStatusTypeId"]) == closed


AccountGroup = tuple[str, list[dict[str, Any]], list[dict[str, Any]]]
ContactGroup = tuple[str, list[dict[str, Any]], list[LsContact]]


def compare_accounts(
    groups: Iterable[AccountGroup],
    identity_of: Callable[[str], int | None],
    settings: Settings,
    refs: References,
    *,
    complete: bool = True,
) -> Iterator[Drift]:
    """Every drift between Salesforce accounts (with `IsDeleted`) and the LogiSense accounts linked to them.

    `groups`: per 15-character Salesforce id, its Salesforce account (none or one) and the LogiSense accounts
    linked to it (lowest identity first), as services/reconcile/merge.py `groups` yields them.
    `identity_of`: the LogiSense id of the account linked to a 15-character Salesforce id (a parent's, an invoice
    recipient's), across the whole org. `complete`: the Salesforce side holds every account, so a LogiSense
    account linked to none is an orphan (False under `--where`, which reads only some).
    """
    for sid, salesforce, linked in groups:
        if not salesforce:
            if complete:
                yield from _orphans(sid, linked, settings)
            continue
        record = salesforce[0]
        sfdc_id = str(record["Id"])
        if len(linked) > 1:
            yield _duplicate(sfdc_id, linked)
        if record.get("IsDeleted"):
            if linked and not _closed(linked[0], settings, refs):
                yield Drift(
                    Kind.ACCOUNT_ORPHAN,
                    sfdc_id,
                    int(linked[0]["identity"]),
                    detail=f"deleted in Salesforce; not {_closing(settings)} in LogiSense",
                )
            continue
        if not linked:
            yield Drift(Kind.ACCOUNT_MISSING, sfdc_id, detail=str(record.get("Name") or ""))
            continue
        yield from _fields(record, linked[0], identity_of, settings, refs)


def _orphans(sid: str, linked: list[dict[str, Any]], settings: Settings) -> Iterator[Drift]:
    link = str(linked[0].get(settings.logisense.link_field) or sid)
    if len(linked) > 1:
        yield _duplicate(link, linked)
    for record in linked:
        yield Drift(Kind.ACCOUNT_ORPHAN, link, int(record["identity"]), detail="its link names no Salesforce account")


def _fields(
    record: Mapping[str, Any],
    existing: dict[str, Any],
    identity_of: Callable[[str], int | None],
    settings: Settings,
    refs: References,
) -> Iterator[Drift]:
    sfdc_id = str(record["Id"])
    try:
        mapped = map_account(record, settings, refs, multi_currency=refs.multi_currency)
    except MappingError as exc:
        yield Drift(Kind.ACCOUNT_UNMAPPABLE, sfdc_id, int(existing["identity"]), detail=str(exc))
        return
    deps = {id15(d): identity for d in mapped.dependencies if (identity := identity_of(id15(d))) is not None}
    wanted = account_body(mapped, id15(sfdc_id), deps, existing, settings)
    for reference, names in (
        (mapped.parent_sfdc_id, ("parentAccountId",)),
        (mapped.invoicer_sfdc_id, ("invoicerAccountId", "usageInvoicerAccountId")),
    ):
        if reference and id15(reference) not in deps and id15(reference) != id15(sfdc_id):
            for name in names:  # the referenced account is missing itself: reported on its own
                wanted.pop(name, None)
    for name, value in sorted(diff(existing, wanted).items()):
        yield Drift(
            Kind.ACCOUNT_FIELD_MISMATCH,
            sfdc_id,
            int(existing["identity"]),
            field=name,
            salesforce=value,
            logisense=existing.get(name),
        )


def _duplicate(link: str, linked: list[dict[str, Any]]) -> Drift:
    identities = sorted(int(r["identity"]) for r in linked)
    return Drift(
        Kind.ACCOUNT_DUPLICATE_LINK,
        link,
        identities[0],
        detail=f"LogiSense accounts {', '.join(map(str, identities))} are all linked to it",
    )


def _closing(settings: Settings) -> str:
    return "flagged" if settings.sync.on_account_delete == "flag" else "closed"


def compare_contacts(
    groups: Iterable[ContactGroup],
    account_of: Callable[[str], int | None],
    owner_of: Callable[[int], str | None],
    settings: Settings,
    refs: References,
    *,
    complete: bool = True,
) -> Iterator[Drift]:
    """Every drift between Salesforce contacts (with `IsDeleted`) and LogiSense contacts, under linked accounts.

    `groups`: per 15-character Salesforce contact id, its Salesforce contact (none or one) and the LogiSense
    contacts whose link point names it. `account_of`: the LogiSense id of the account linked to a 15-character
    Salesforce account id; `owner_of`: the Salesforce account a LogiSense account (by id) is linked to. A contact
    of an account missing in LogiSense is that account's drift, not its own.
    """
    for sid, salesforce, linked in groups:
        if not salesforce:
            if complete:
                yield from (_contact_orphan(c, sid, owner_of, "its link names no Salesforce contact") for c in linked)
            continue
        record = salesforce[0]
        contact_id, account = str(record["Id"]), str(record.get("AccountId") or "")
        if record.get("IsDeleted"):
            yield from (_contact_orphan(c, contact_id, owner_of, "deleted in Salesforce") for c in linked)
            continue
        identity = account_of(id15(account)) if account else None
        if identity is None:
            continue
        if not linked:
            yield Drift(Kind.CONTACT_MISSING, contact_id, account_id=account, detail=_name(record))
            continue
        yield from _contact_fields(record, linked[0], identity, account, settings=settings, refs=refs)


def _contact_fields(
    record: Mapping[str, Any], existing: LsContact, identity: int, account: str, *, settings: Settings, refs: References
) -> Iterator[Drift]:
    contact_id, link = str(record["Id"]), settings.logisense.link_field
    try:
        mapped = map_contact(record, settings, refs, default_contact_type=settings.sync.default_contact_type)
        plan = plan_points(existing.points, mapped, refs, link)
    except MappingError as exc:
        yield Drift(Kind.CONTACT_UNMAPPABLE, contact_id, existing.identity, account_id=account, detail=str(exc))
        return

    def drift(kind: Kind, field: str | None, salesforce: Any = None, logisense: Any = None) -> Drift:
        return Drift(kind, contact_id, existing.identity, field, salesforce, logisense, account_id=account)

    for name, value in sorted(diff(existing.record, {**mapped.body, "accountId": identity}).items()):
        yield drift(Kind.CONTACT_FIELD_MISMATCH, name, value, existing.record.get(name))
    for type_id, wanted in plan.creates:
        yield drift(Kind.CONTACT_POINT_MISMATCH, refs.point_names.get(type_id), wanted)
    for current, changes in plan.updates:
        held = {key: current.get(key) for key in changes}
        yield drift(
            Kind.CONTACT_POINT_MISMATCH, refs.point_names.get(int(current["contactPointTypeId"])), changes, held
        )
    for point in plan.deletes:
        held = {key: value for key, value in point.items() if key not in ("identity", "contactId")}
        yield drift(Kind.CONTACT_POINT_MISMATCH, refs.point_names.get(int(point["contactPointTypeId"])), None, held)


def _contact_orphan(contact: LsContact, link: str, owner_of: Callable[[int], str | None], why: str) -> Drift:
    account = owner_of(int(contact.record.get("accountId") or 0)) or None
    detail = why if account else f"{why}; its LogiSense account is linked to no Salesforce account"
    return Drift(Kind.CONTACT_ORPHAN, link, contact.identity, account_id=account, detail=detail)


def _name(record: Mapping[str, Any]) -> str:
    return " ".join(str(record.get(k) or "") for k in ("FirstName", "LastName")).strip()
