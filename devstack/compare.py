"""Compare what Salesforce holds with what LogiSense holds, as the emulators' admin APIs show it.

The demo's verdict and the end-to-end checks use it: every live Salesforce Account must exist
exactly once in LogiSense (found by its `sfdcid`), with the synced values, its parent, and exactly
its live Contacts (found by their `sfdcid` contact point) with their names and titles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from shared.settings import SalesforceFields

Record = Mapping[str, Any]


def _points(contact: Record) -> dict[str, Record]:
    return {str(p.get("contactPointTypeName")): p for p in contact.get("contactPoints", [])}


def differences(
    sf_accounts: Iterable[Record],
    sf_contacts: Iterable[Record],
    ls_accounts: Iterable[Record],
    fields: SalesforceFields | None = None,
    link_field: str = "sfdcid",
) -> list[str]:
    """Every way LogiSense differs from Salesforce; an empty list means in sync."""
    f = fields or SalesforceFields()
    live_accounts = {r["Id"]: r for r in sf_accounts if not r.get("IsDeleted")}
    contacts_by_account: dict[str, dict[str, Record]] = {}
    for contact in sf_contacts:
        if not contact.get("IsDeleted") and contact.get("AccountId"):
            contacts_by_account.setdefault(contact["AccountId"], {})[contact["Id"]] = contact
    ls_list = list(ls_accounts)
    by_identity = {a.get("identity"): a for a in ls_list}
    counts = Counter(a.get(link_field) for a in ls_list if a.get(link_field))
    found: list[str] = [f"{sfid}: {n} LogiSense accounts (duplicate)" for sfid, n in counts.items() if n > 1]
    by_link = {a[link_field]: a for a in ls_list if a.get(link_field)}
    for account_id, record in sorted(live_accounts.items()):
        account = by_link.get(account_id)
        label = f"{record.get('Name')!r} ({account_id})"
        if account is None:
            found.append(f"{label}: missing in LogiSense")
            continue
        expected = {
            "name": record.get("Name"),
            "accountTypeName": record.get("Type"),
            "accountStatusTypeName": record.get(f.status),
            "billGroupName": record.get(f.bill_group),
            "accountsReceivableTermsName": record.get(f.ar_term),
        }
        for key, value in expected.items():
            if value and account.get(key) != value:
                found.append(f"{label}: {key} is {account.get(key)!r} in LogiSense, {value!r} in Salesforce")
        parent = by_identity.get(account.get("parentAccountId"))
        parent_link = (parent or {}).get(link_field)
        if parent_link != record.get("ParentId"):
            found.append(f"{label}: parent is {parent_link} in LogiSense, {record.get('ParentId')} in Salesforce")
        found += _contact_differences(label, contacts_by_account.get(account_id, {}), account, link_field)
    stray = sorted(set(by_link) - set(live_accounts))
    found += [
        f"{sfid}: in LogiSense but not a live Salesforce account"
        for sfid in stray
        if by_link[sfid].get("accountStatusTypeName") != "Closed"
    ]
    return found


def _contact_differences(label: str, wanted: Mapping[str, Record], account: Record, link_field: str) -> list[str]:
    """The account's LogiSense contacts against its live Salesforce contacts, matched by the link point."""
    found: list[str] = []
    got: dict[str, Record] = {}
    for contact in account.get("contacts", []):
        link = _points(contact).get(link_field, {}).get("value")
        if link in got:
            found.append(f"{label}: contact {link} is duplicated in LogiSense")
        got[str(link)] = contact
    found += [f"{label}: contact {cid} missing in LogiSense" for cid in sorted(set(wanted) - set(got))]
    found += [
        f"{label}: contact {cid} is in LogiSense but not (or no longer) in Salesforce"
        for cid in sorted(set(got) - set(wanted))
    ]
    for contact_id in sorted(set(wanted) & set(got)):
        sf_contact, ls_contact = wanted[contact_id], got[contact_id]
        for sf_key, ls_key in (("FirstName", "firstName"), ("LastName", "lastName"), ("Title", "title")):
            if (sf_contact.get(sf_key) or None) != (ls_contact.get(ls_key) or None):
                found.append(
                    f"{label}: contact {contact_id} {ls_key} is {ls_contact.get(ls_key)!r} in "
                    f"LogiSense, {sf_contact.get(sf_key)!r} in Salesforce"
                )
    return found
