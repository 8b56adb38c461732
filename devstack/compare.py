"""Compare what Salesforce holds with what LogiSense holds, as the emulators' admin APIs show them.

The one "LogiSense equals Salesforce" check: the demo's verdict, the failure tests' convergence
(tests/reliability) and anything else that asks uses `differences`. LogiSense equals Salesforce when

- every live Salesforce account exists once in LogiSense (found by the link field, `sfdcid`) and
  every field of the body the syncer's own mapping (shared/mapping.py: `map_account`) makes of it
  matches, reference names resolved to LogiSense ids;
- its parent and invoice recipient are the LogiSense accounts linked to the right Salesforce ids;
- its LogiSense contacts are exactly its live Salesforce contacts (found by their link contact
  point), each with every field of its mapped body and exactly its mapped contact points, every
  field of each;
- no LogiSense account and no LogiSense contact carries a Salesforce id twice;
- a LogiSense account linked to no live Salesforce account is Closed (deleted in Salesforce).

Salesforce ids are matched in their 15-character form, as Salesforce itself matches 15- and
18-character ids; the mapped bodies still hold the link values exactly. `exclude` leaves named
accounts (say, the dead-lettered ones) out of the per-account comparison, never out of the
duplicate checks. `load_references` reads LogiSense's reference data as the syncer does; the
lookup sees LogiSense as it was then, so load it again after adding a reference there.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from services.syncer.references import References
from shared.errors import MappingError
from shared.logisense import LogisenseClient
from shared.mapping import Lookup, map_account, map_contact
from shared.settings import LogisenseSettings, Settings

Record = Mapping[str, Any]


def load_references(settings: LogisenseSettings) -> References:
    """LogiSense's reference data (names -> ids, contact point types), read like the syncer reads it."""

    async def load() -> References:
        refs = References()
        async with LogisenseClient(settings) as client:
            await refs.load(client)
        return refs

    return asyncio.run(load())


def _id15(value: Any) -> str:
    return str(value or "")[:15]


def _points(contact: Record) -> dict[str, Record]:
    return {str(p.get("contactPointTypeName")): p for p in contact.get("contactPoints", [])}


def differences(
    sf_accounts: Iterable[Record],
    sf_contacts: Iterable[Record],
    ls_accounts: Iterable[Record],
    settings: Settings,
    lookup: Lookup,
    *,
    exclude: Collection[str] = (),
) -> list[str]:
    """Every way LogiSense differs from Salesforce, duplicates included; an empty list means in sync."""
    link = settings.logisense.link_field
    live = {_id15(r["Id"]): r for r in sf_accounts if not r.get("IsDeleted")}
    contacts_of: dict[str, list[Record]] = {}
    for contact in sf_contacts:
        if not contact.get("IsDeleted"):
            contacts_of.setdefault(_id15(contact.get("AccountId")), []).append(contact)
    ls_list = list(ls_accounts)
    found = _duplicates(ls_list, link)
    by_link = {_id15(a.get(link)): a for a in ls_list if a.get(link)}
    by_identity = {a.get("identity"): a for a in ls_list}
    skipped = {_id15(i) for i in exclude}
    for sid, record in sorted(live.items()):
        if sid in skipped:
            continue
        label = f"account {record.get('Name')!r} ({sid})"
        account = by_link.get(sid)
        if account is None:
            found.append(f"{label} is missing in LogiSense")
            continue
        try:
            mapped = map_account(record, settings, lookup)
        except MappingError as exc:
            found.append(f"{label} cannot be mapped: {exc}")
            continue
        for key, wanted in mapped.body.items():
            if account.get(key) != wanted:
                found.append(f"{label} {key}: LogiSense {account.get(key)!r}, Salesforce {wanted!r}")
        for key, wanted_sf in (
            ("parentAccountId", mapped.parent_sfdc_id),
            ("invoicerAccountId", mapped.invoicer_sfdc_id),
        ):
            target = by_identity.get(account.get(key))
            got = _id15(target.get(link)) if target else ""
            if got != _id15(wanted_sf):
                found.append(f"{label} {key}: LogiSense -> {got or None}, Salesforce -> {wanted_sf}")
        found += _contact_differences(label, account, contacts_of.get(sid, []), settings, lookup)
    found += [
        f"account {sid} is in LogiSense but not a live Salesforce account (and not Closed)"
        for sid in sorted(set(by_link) - set(live))
        if by_link[sid].get("accountStatusTypeName") != "Closed"
    ]
    return found


def _duplicates(ls_accounts: list[Record], link: str) -> list[str]:
    """Salesforce ids that more than one LogiSense account, or more than one LogiSense contact, carries."""
    accounts = Counter(_id15(a.get(link)) for a in ls_accounts if a.get(link))
    contacts: Counter[str] = Counter()
    for account in ls_accounts:
        for contact in account.get("contacts", []):
            value = _points(contact).get(link, {}).get("value")
            if value:
                contacts[_id15(value)] += 1
    return [f"account {k} is in LogiSense {n} times" for k, n in sorted(accounts.items()) if n > 1] + [
        f"contact {k} is in LogiSense {n} times" for k, n in sorted(contacts.items()) if n > 1
    ]


def _contact_differences(
    label: str, account: Record, wanted: list[Record], settings: Settings, lookup: Lookup
) -> list[str]:
    """The account's LogiSense contacts against its live Salesforce contacts, matched by the link point."""
    link = settings.logisense.link_field
    found: list[str] = []
    got: dict[str, tuple[Record, dict[str, Record]]] = {}
    for contact in account.get("contacts", []):
        points = _points(contact)
        got[_id15(points.get(link, {}).get("value"))] = (contact, points)
    extra = sorted(set(got) - {_id15(c["Id"]) for c in wanted})
    if extra:
        found.append(f"{label} has LogiSense contacts Salesforce lacks (or no longer has): {extra}")
    for record in wanted:
        cid = _id15(record["Id"])
        if cid not in got:
            found.append(f"{label}: contact {cid} is missing in LogiSense")
            continue
        contact, points = got[cid]
        try:
            mapped = map_contact(record, settings, lookup, default_contact_type=settings.sync.default_contact_type)
        except MappingError as exc:
            found.append(f"{label}: contact {cid} cannot be mapped: {exc}")
            continue
        for key, value in mapped.body.items():
            if contact.get(key) != value:
                found.append(f"{label}: contact {cid} {key}: LogiSense {contact.get(key)!r}, Salesforce {value!r}")
        if set(points) != set(mapped.points):
            found.append(
                f"{label}: contact {cid} points: LogiSense {sorted(points)}, Salesforce {sorted(mapped.points)}"
            )
        for name, body in mapped.points.items():
            point = points.get(name, {})
            for key, value in body.items():
                if point.get(key) != value:
                    found.append(
                        f"{label}: contact {cid} point {name}.{key}: LogiSense {point.get(key)!r}, Salesforce {value!r}"
                    )
    return found
