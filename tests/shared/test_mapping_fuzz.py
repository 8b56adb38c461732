"""Odd Salesforce records never crash the syncer's mapping (shared/mapping.py).

Hypothesis-generated records: a JSON body or a MappingError with a readable reason, never another exception.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.syncer.references import References
from shared.deadletter import ERROR_CLASS, ERROR_MESSAGE, Failure, dead_letter_headers
from shared.errors import MappingError
from shared.mapping import map_account, map_contact
from shared.settings import AccountExtension, MappingSettings, Settings
from tests.fuzzing import FUZZ, huge_text, scalars, unicode_text
from tests.services.listener.support import ACCOUNT_A, CONTACT_A

pytestmark = pytest.mark.failure

# --- the syncer's mapping ---------------------------------------------------------------------------

REFERENCE_NAMES = {
    "account_type": {"customer": 1, "partner": 2},
    "account_status_type": {"active": 10, "closed": 11},
    "bill_group": {"bill group 1st": 20, "bill group 15th": 21},
    "ar_term": {"net 30": 30},
    "contact_type": {"billing": 40, "technical": 41},
    "country": {"canada": 50, "ca": 50, "united states": 51, "us": 51},
}
STATES = {(50, "on"): 60, (50, "ontario"): 60, (51, "ny"): 61}
MAPPING_SETTINGS = Settings(
    mappings=MappingSettings(
        account_extensions=(AccountExtension(salesforce="Region__c", logisense="region"),),
        contact_points={
            "Billing": {"email": "Email", "phone": "Phone", "address": "MailingAddress", "sfdcid": "Id"},
            "Technical": {"email": "Email", "sfdcid": "Id"},
        },
    )
)
KNOWN_IDS = {i for table in REFERENCE_NAMES.values() for i in table.values()} | set(STATES.values())


def _references() -> References:
    return References(names={k: dict(v) for k, v in REFERENCE_NAMES.items()}, states=dict(STATES))


sf_ids = st.sampled_from([ACCOUNT_A, "001000000000002AAA", "001000000000002", "", "x"]) | unicode_text
record_values = scalars | huge_text | st.lists(scalars, max_size=3) | st.dictionaries(unicode_text, scalars, max_size=3)


def _reference(kind: str) -> st.SearchStrategy[Any]:
    names = sorted(REFERENCE_NAMES[kind])
    variants = st.sampled_from(names).flatmap(
        lambda n: st.sampled_from([n, n.upper(), n.title(), f"  {n}  ", n.replace(" ", "   ")])
    )
    return variants | record_values


@st.composite
def account_records(draw: st.DrawFn) -> dict[str, Any]:
    """A Salesforce Account as the syncer's SOQL read returns it, with any field odd or missing."""
    f = MAPPING_SETTINGS.salesforce.fields
    recipient = draw(st.none() | sf_ids)
    candidates: dict[str, st.SearchStrategy[Any]] = {
        "Id": sf_ids,
        "Name": unicode_text | huge_text | record_values,
        "Type": _reference("account_type"),
        f.status: _reference("account_status_type"),
        f.bill_group: _reference("bill_group"),
        f.ar_term: _reference("ar_term"),
        f.usage_invoice_recipient: st.just(recipient) | st.none() | sf_ids,
        f.subscription_invoice_recipient: st.just(recipient) | st.none() | sf_ids,
        "ParentId": st.none() | sf_ids,
        "Region__c": record_values,
    }
    keys = draw(st.lists(st.sampled_from(sorted(candidates)), unique=True))
    return {key: draw(candidates[key]) for key in keys}


@st.composite
def contact_records(draw: st.DrawFn) -> dict[str, Any]:
    """A Salesforce Contact with any field odd or missing (contact type, country, state included)."""
    contact_type = MAPPING_SETTINGS.salesforce.fields.contact_type
    candidates: dict[str, st.SearchStrategy[Any]] = {
        "Id": sf_ids,
        "AccountId": sf_ids,
        "FirstName": unicode_text | record_values,
        "LastName": unicode_text | huge_text,
        "Title": record_values,
        contact_type: st.sampled_from(["Billing", "Technical", "billing", "Shipping"]) | record_values,
        "Email": unicode_text | record_values,
        "Phone": record_values,
        "MailingStreet": unicode_text,
        "MailingCity": unicode_text | record_values,
        "MailingState": st.sampled_from(["ON", "Ontario", "NY", "Quebec"]) | record_values,
        "MailingCountry": st.sampled_from(["CA", "Canada", "US", "Narnia"]) | record_values,
        "MailingPostalCode": record_values,
    }
    keys = draw(st.lists(st.sampled_from(sorted(candidates)), unique=True))
    return {key: draw(candidates[key]) for key in keys}


def _assert_dead_letter_ready(exc: MappingError) -> None:
    """The reason is readable text that the dead-letter headers can carry."""
    assert str(exc).strip()
    headers = dict(dead_letter_headers(Failure.from_exception(exc), service="syncer"))
    assert headers[ERROR_CLASS] == b"MappingError"
    assert headers[ERROR_MESSAGE].decode() == str(exc)[:2000]


@FUZZ
@given(account_records())
def test_account_mapping_is_a_body_or_a_mapping_error(record: dict[str, Any]) -> None:
    """Any Salesforce account maps to a JSON body with a name and the link, or to a MappingError with a reason."""
    try:
        mapped = map_account(record, MAPPING_SETTINGS, _references())
    except MappingError as exc:
        _assert_dead_letter_ready(exc)
        return
    body = mapped.body
    assert isinstance(body["name"], str)
    assert body["name"]
    assert body["name"] == body["name"].strip()
    assert body[MAPPING_SETTINGS.logisense.link_field] == mapped.sfdc_id
    for key in ("accountTypeId", "accountStatusTypeId", "billGroupId", "accountsReceivableTermsId"):
        assert key not in body or body[key] in KNOWN_IDS
    json.dumps(body)
    f = MAPPING_SETTINGS.salesforce.fields
    usage = str(record.get(f.usage_invoice_recipient) or "").strip()
    subscription = str(record.get(f.subscription_invoice_recipient) or "").strip()
    assert usage == subscription, "split invoice recipients must never map"


@FUZZ
@given(contact_records())
def test_contact_mapping_is_a_body_or_a_mapping_error(record: dict[str, Any]) -> None:
    """Any Salesforce contact maps to a contact body with points, or to a MappingError with a reason."""
    try:
        mapped = map_contact(record, MAPPING_SETTINGS, _references(), default_contact_type="Billing")
    except MappingError as exc:
        _assert_dead_letter_ready(exc)
        return
    assert mapped.contact_type_id in KNOWN_IDS
    assert mapped.points[MAPPING_SETTINGS.logisense.link_field] == {"value": mapped.sfdc_id}
    address = mapped.points.get("address", {})
    assert set(address) <= {"address1", "city", "zipCode", "countryId", "stateId"}
    json.dumps({"body": mapped.body, "points": mapped.points})


def test_mapping_errors_name_the_fix() -> None:
    """The mapping's own errors say what is wrong and what to change."""
    f = MAPPING_SETTINGS.salesforce.fields
    refs = _references()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"Id": ACCOUNT_A, "Name": "  "}, "has no Name; LogiSense requires one"),
        ({"Id": ACCOUNT_A, "Name": "A", "Type": "Reseller"}, "Account Type 'Reseller' does not exist in LogiSense"),
        (
            {"Id": ACCOUNT_A, "Name": "A", f.usage_invoice_recipient: "001000000000002AAA"},
            "LogiSense allows no split between them",
        ),
    ]
    for record, words in cases:
        with pytest.raises(MappingError) as caught:
            map_account(record, MAPPING_SETTINGS, refs)
        assert words in str(caught.value)
    with pytest.raises(MappingError, match="MailingState is set without MailingCountry"):
        map_contact({"Id": CONTACT_A, "MailingState": "ON"}, MAPPING_SETTINGS, refs, default_contact_type="Billing")
    with pytest.raises(MappingError, match="Country 'Narnia' does not exist in LogiSense"):
        map_contact(
            {"Id": CONTACT_A, "MailingCountry": "Narnia"}, MAPPING_SETTINGS, refs, default_contact_type="Billing"
        )
