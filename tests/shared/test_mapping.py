"""The Salesforce -> LogiSense field mapping and the start-up mapping checks (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ConfigError, MappingError
from shared.mapping import (
    account_query_fields,
    account_trigger_fields,
    check_mappings,
    contact_query_fields,
    contact_trigger_fields,
    map_account,
    map_contact,
    mapping_problems,
)
from shared.settings import AccountExtension, MappingSettings, Settings

REFS: dict[tuple[str, str], int] = {
    ("account_type", "customer"): 1,
    ("account_status_type", "active"): 10,
    ("bill_group", "bill group 1st"): 20,
    ("ar_term", "net 30"): 30,
    ("contact_type", "billing"): 40,
    ("contact_type", "shipping"): 41,
    ("country", "ca"): 50,
    ("state", "50:on"): 60,
}


def lookup(kind: str, name: str, *, within: int | None = None) -> int:
    key = (kind, f"{within}:{name.lower()}" if within is not None else name.lower())
    if key not in REFS:
        raise MappingError(f"{kind} {name!r} does not exist in LogiSense")
    return REFS[key]


def settings(**mappings: Any) -> Settings:
    return Settings(mappings=MappingSettings(**mappings))


ACCOUNT = {
    "Id": "001000000000001AAA",
    "Name": "Acme",
    "Type": "Customer",
    "ParentId": "001000000000002AAA",
    "LogiSense_Status__c": "Active",
    "LogiSense_Bill_Group__c": "Bill Group 1st",
    "LogiSense_AR_Term__c": "Net 30",
    "Usage_Invoice_Recipient__c": "001000000000003AAA",
    "Subscription_Invoice_Recipient__c": "001000000000003AAA",
    "Region__c": "EMEA",
}


def test_account_maps_names_to_ids_and_keeps_the_link() -> None:
    """Name, references, the sfdcid link field and account extensions land in the LogiSense body."""
    s = settings(account_extensions=[AccountExtension(salesforce="Region__c", logisense="region")])
    mapped = map_account(ACCOUNT, s, lookup)
    assert mapped.body == {
        "name": "Acme",
        "sfdcid": "001000000000001AAA",
        "accountTypeId": 1,
        "accountStatusTypeId": 10,
        "billGroupId": 20,
        "accountsReceivableTermsId": 30,
        "region": "EMEA",
    }
    assert mapped.parent_sfdc_id == "001000000000002AAA"
    assert mapped.dependencies == ("001000000000002AAA", "001000000000003AAA")


def test_split_invoice_recipients_are_a_mapping_error_with_the_reason() -> None:
    """Different usage and subscription invoice recipients cannot be synced; the reason says why."""
    record = {**ACCOUNT, "Usage_Invoice_Recipient__c": "001000000000009AAA"}
    with pytest.raises(MappingError, match="no split"):
        map_account(record, settings(), lookup)


def test_unknown_reference_name_is_a_mapping_error() -> None:
    """A Status LogiSense does not know fails the account instead of writing a wrong id."""
    with pytest.raises(MappingError, match="Nope"):
        map_account({**ACCOUNT, "LogiSense_Status__c": "Nope"}, settings(), lookup)


def test_blank_references_are_left_out() -> None:
    """Blank Type/Status/... keep LogiSense's value: the body does not carry them."""
    record = {"Id": "001000000000001AAA", "Name": "Acme"}
    mapped = map_account(record, settings(), lookup)
    assert set(mapped.body) == {"name", "sfdcid"}
    assert mapped.dependencies == ()


def test_contact_maps_name_title_type_points_and_address() -> None:
    """A contact gets Name, Title, Type, its mapped points (address resolved to ids) and the sfdcid point."""
    s = settings(
        contact_points={"Billing": {"email": "Email", "address": "MailingAddress", "phone": "Phone", "sfdcid": "Id"}}
    )
    record = {
        "Id": "003000000000001AAA",
        "FirstName": "Jane",
        "LastName": "Doe",
        "Title": "CFO",
        "LogiSense_Contact_Type__c": "Billing",
        "Email": "jane@acme.example",
        "Phone": None,
        "MailingStreet": "1 Main St",
        "MailingCity": "Toronto",
        "MailingState": "ON",
        "MailingPostalCode": "M5V 1A1",
        "MailingCountry": "CA",
    }
    mapped = map_contact(record, s, lookup, default_contact_type="Billing")
    assert mapped.contact_type_id == 40
    assert mapped.body == {"contactTypeId": 40, "firstName": "Jane", "lastName": "Doe", "title": "CFO"}
    assert mapped.points == {
        "sfdcid": {"value": "003000000000001AAA"},
        "email": {"value": "jane@acme.example"},
        "address": {"address1": "1 Main St", "city": "Toronto", "zipCode": "M5V 1A1", "countryId": 50, "stateId": 60},
    }


def test_contact_type_written_differently_still_gets_its_points() -> None:
    """'billing' in Salesforce maps with the Billing type's points, as the type itself matches case-insensitively."""
    s = settings(contact_points={"Billing": {"email": "Email", "sfdcid": "Id"}})
    record = {
        "Id": "003000000000001AAA",
        "LastName": "Doe",
        "LogiSense_Contact_Type__c": " billing ",
        "Email": "jane@acme.example",
    }
    mapped = map_contact(record, s, lookup, default_contact_type="Billing")
    assert mapped.contact_type_id == 40
    assert mapped.points == {"sfdcid": {"value": "003000000000001AAA"}, "email": {"value": "jane@acme.example"}}


def test_contact_without_type_uses_the_default_contact_type() -> None:
    """A blank contact-type field falls back to the configured default type."""
    mapped = map_contact(
        {"Id": "003000000000001AAA", "LastName": "Doe"}, settings(), lookup, default_contact_type="Shipping"
    )
    assert mapped.contact_type_id == 41
    assert mapped.points == {"sfdcid": {"value": "003000000000001AAA"}}


def test_query_fields_are_only_what_the_mapping_needs() -> None:
    """The SOQL field lists hold the mapped fields, compound addresses as their components."""
    s = settings(
        account_extensions=[AccountExtension(salesforce="Region__c", logisense="region")],
        contact_points={"Billing": {"email": "Email", "address": "MailingAddress"}},
    )
    assert "Region__c" in account_query_fields(s)
    assert "Name" in account_query_fields(s)
    fields = contact_query_fields(s)
    assert {"Email", "MailingStreet", "MailingCountry", "FirstName", "LastName", "AccountId"} <= set(fields)
    assert "MailingAddress" not in fields
    assert "Salutation" not in fields


def test_trigger_fields_are_unchanged() -> None:
    """The listener's trigger fields keep their behaviour (mapped contact points count, Id does not)."""
    s = settings(contact_points={"Billing": {"email": "Email", "sfdcid": "Id"}})
    assert "Email" in contact_trigger_fields(s)
    assert "Id" not in contact_trigger_fields(s)
    assert "ParentId" in account_trigger_fields(s)


def test_missing_contact_points_are_named_with_the_fix() -> None:
    """Every contact point of every LogiSense contact type must be mapped; the message lists the gaps."""
    s = settings(contact_points={"Billing": {"email": "Email"}})
    problems = mapping_problems(
        s, contact_point_types={"Billing": ["email", "phone", "sfdcid"], "Shipping": ["email", "sfdcid"]}
    )
    assert any("contact_points.Billing" in p and "'phone'" in p for p in problems)
    assert any("contact_points.Shipping" in p and "'email'" in p for p in problems)
    assert not any("sfdcid" in p.split("not mapped")[0] for p in problems if "not mapped" in p)


def test_mapping_to_unknown_contact_type_or_point_is_rejected() -> None:
    """A contact type or point LogiSense does not have is named."""
    s = settings(contact_points={"Billing": {"fax": "Fax"}, "Nope": {"email": "Email"}})
    problems = mapping_problems(s, contact_point_types={"Billing": ["fax2"]})
    assert any("Nope" in p and "no contact type" in p for p in problems)
    assert any("Billing.fax" in p and "no contact point" in p for p in problems)


def test_missing_salesforce_fields_name_their_mapping() -> None:
    """A mapped field absent from the Salesforce describe is named with the mapping that uses it."""
    s = settings(
        account_extensions=[AccountExtension(salesforce="Region__c", logisense="region")],
        contact_points={"Billing": {"email": "Email__x"}},
    )
    account_fields = [f for f in account_query_fields(s) if f != "Region__c"]
    contact_fields = [f for f in contact_query_fields(s) if f != "Email__x"]
    problems = mapping_problems(s, account_fields=account_fields, contact_fields=contact_fields)
    assert len(problems) == 2
    assert "Region__c" in problems[0]
    assert "mappings.account_extensions" in problems[0]
    assert "mappings.contact_points.Billing.email" in problems[1]


def test_link_point_must_map_to_id_and_extension_not_to_link_field() -> None:
    """The sfdcid point holds the Salesforce Id; no extension may overwrite the link field."""
    s = settings(
        contact_points={"Billing": {"sfdcid": "Email"}},
        account_extensions=[AccountExtension(salesforce="Region__c", logisense="sfdcid")],
    )
    with pytest.raises(ConfigError) as caught:
        check_mappings(s)
    assert "map it to Id" in str(caught.value)
    assert "link field" in str(caught.value)


def test_valid_mapping_passes() -> None:
    """A complete, well-formed mapping raises nothing."""
    s = settings(contact_points={"Billing": {"email": "Email", "sfdcid": "Id"}})
    check_mappings(s, contact_point_types={"Billing": ["email", "sfdcid"]})
