"""Price books, opportunities and their lines in the emulator, driven only through simple-salesforce."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest
from simple_salesforce.format import format_soql

from tests.fixtures.salesforce import SalesforceEmulator
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

WRONG_BOOK = (
    "field integrity exception: PricebookEntryId (pricebook entry is in a different pricebook than the one "
    "assigned to the opportunity)"
)


def _error(exc: pytest.ExceptionInfo[SalesforceMalformedRequest]) -> dict[str, Any]:
    content: list[dict[str, Any]] = exc.value.content
    return content[0]


def _standard_book(sf: Salesforce) -> str:
    return str(sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"])


def _product(sf: Salesforce, name: str = "Fibre 1G", price: float = 100.0, code: str = "FIB1G") -> str:
    """A product with an active standard price."""
    product_id = str(sf.Product2.create({"Name": name, "ProductCode": code, "IsActive": True})["id"])
    sf.PricebookEntry.create(
        {"Pricebook2Id": _standard_book(sf), "Product2Id": product_id, "UnitPrice": price, "IsActive": True}
    )
    return product_id


def _book_with_entry(sf: Salesforce, product_id: str, price: float, name: str = "LogiSense") -> tuple[str, str]:
    book_id = str(sf.Pricebook2.create({"Name": name, "IsActive": True})["id"])
    entry_id = sf.PricebookEntry.create(
        {"Pricebook2Id": book_id, "Product2Id": product_id, "UnitPrice": price, "IsActive": True}
    )["id"]
    return book_id, str(entry_id)


def _opportunity(sf: Salesforce, **extra: Any) -> str:
    account_id = sf.Account.create({"Name": "Acme"})["id"]
    body = {"Name": "Acme fibre", "AccountId": account_id, "StageName": "Prospecting", "CloseDate": "2026-12-31"}
    return str(sf.Opportunity.create({**body, **extra})["id"])


def test_standard_price_book_is_seeded(sf: Salesforce) -> None:
    """Every org has one active standard book; its Name is read-only and it cannot be deleted."""
    rows = sf.query("SELECT Id, Name, IsActive, IsStandard, IsArchived FROM Pricebook2")["records"]
    assert [(r["Name"], r["IsActive"], r["IsStandard"], r["IsArchived"]) for r in rows] == [
        ("Standard Price Book", True, True, False)
    ]
    standard = rows[0]["Id"]
    assert sf.Pricebook2.update(standard, {"Description": "all products"}) == 204
    with pytest.raises(SalesforceMalformedRequest) as renamed:
        sf.Pricebook2.update(standard, {"Name": "Renamed"})
    assert _error(renamed)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceMalformedRequest) as deleted:
        sf.Pricebook2.delete(standard)
    assert _error(deleted)["errorCode"] == "DELETE_FAILED"
    with pytest.raises(SalesforceMalformedRequest) as second:
        sf.Pricebook2.create({"Name": "Another standard", "IsStandard": True})
    assert _error(second)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    custom = sf.Pricebook2.create({"Name": "Custom"})["id"]
    assert sf.Pricebook2.get(custom)["IsActive"] is False
    assert sf.Pricebook2.delete(custom) == 204


def test_custom_entry_before_standard_is_refused(sf: Salesforce) -> None:
    """A custom-book entry for a product without a standard price gets STANDARD_PRICE_NOT_DEFINED."""
    product_id = sf.Product2.create({"Name": "Bare"})["id"]
    book_id = sf.Pricebook2.create({"Name": "Custom", "IsActive": True})["id"]
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.PricebookEntry.create({"Pricebook2Id": book_id, "Product2Id": product_id, "UnitPrice": 5})
    assert _error(refused)["errorCode"] == "STANDARD_PRICE_NOT_DEFINED"
    assert _error(refused)["message"] == "Before creating a custom price, create a standard price."


def test_duplicate_entry_is_refused(sf: Salesforce) -> None:
    """A second entry for the same book and product gets DUPLICATE_VALUE."""
    product_id = _product(sf)
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.PricebookEntry.create({"Pricebook2Id": _standard_book(sf), "Product2Id": product_id, "UnitPrice": 1})
    assert _error(refused)["errorCode"] == "DUPLICATE_VALUE"


def test_entry_fields_follow_the_product_and_the_standard_price(sf: Salesforce) -> None:
    """Name and ProductCode copy the product; UseStandardPrice mirrors the standard price, also later."""
    product_id = _product(sf, price=80)
    book_id = sf.Pricebook2.create({"Name": "Custom", "IsActive": True})["id"]
    with pytest.raises(SalesforceMalformedRequest) as missing:
        sf.PricebookEntry.create({"Pricebook2Id": book_id, "Product2Id": product_id})
    assert _error(missing)["errorCode"] == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as both:
        sf.PricebookEntry.create(
            {"Pricebook2Id": book_id, "Product2Id": product_id, "UseStandardPrice": True, "UnitPrice": 3}
        )
    assert _error(both)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    entry_id = sf.PricebookEntry.create({"Pricebook2Id": book_id, "Product2Id": product_id, "UseStandardPrice": True})[
        "id"
    ]
    entry = sf.PricebookEntry.get(entry_id)
    assert (entry["Name"], entry["ProductCode"], entry["UnitPrice"], entry["IsActive"]) == (
        "Fibre 1G",
        "FIB1G",
        80,
        False,
    )
    standard_id = sf.query(
        format_soql("SELECT Id FROM PricebookEntry WHERE Product2Id = {} AND Pricebook2.IsStandard = true", product_id)
    )["records"][0]["Id"]
    sf.PricebookEntry.update(standard_id, {"UnitPrice": 95})
    assert sf.PricebookEntry.get(entry_id)["UnitPrice"] == 95
    with pytest.raises(SalesforceMalformedRequest) as moved:
        sf.PricebookEntry.update(entry_id, {"Pricebook2Id": _standard_book(sf)})
    assert _error(moved)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_entries_upsert_by_logisense_key(sf: Salesforce) -> None:
    """sObject Collections upsert of PricebookEntry by LogiSense_Key__c creates, then updates."""
    product_id = _product(sf)
    book_id = sf.Pricebook2.create({"Name": "LogiSense", "IsActive": True})["id"]
    record = {"attributes": {"type": "PricebookEntry"}, "LogiSense_Key__c": "pb-1:pkg-7", "IsActive": True}
    created = sf.restful(
        "composite/sobjects/PricebookEntry/LogiSense_Key__c",
        method="PATCH",
        json={
            "allOrNone": True,
            "records": [{**record, "Pricebook2Id": book_id, "Product2Id": product_id, "UnitPrice": 9}],
        },
    )
    assert created[0]["success"] is True
    assert created[0]["created"] is True
    updated = sf.restful(
        "composite/sobjects/PricebookEntry/LogiSense_Key__c",
        method="PATCH",
        json={"records": [{**record, "UnitPrice": 12}]},
    )
    assert updated[0] == {"id": created[0]["id"], "success": True, "errors": [], "created": False}
    assert sf.PricebookEntry.get_by_custom_id("LogiSense_Key__c", "pb-1:pkg-7")["UnitPrice"] == 12


def test_stages_are_seeded_and_drive_the_flags(sf: Salesforce) -> None:
    """Stages are queryable; StageName must be an active stage; Closed Won sets IsClosed and IsWon."""
    stages = {
        r["ApiName"]: r
        for r in sf.query("SELECT ApiName, IsActive, IsClosed, IsWon, DefaultProbability FROM OpportunityStage")[
            "records"
        ]
    }
    assert {"Prospecting", "Qualification", "Negotiation/Review", "Closed Won", "Closed Lost"} <= set(stages)
    assert (stages["Closed Won"]["IsClosed"], stages["Closed Won"]["IsWon"]) == (True, True)
    assert (stages["Closed Lost"]["IsClosed"], stages["Closed Lost"]["IsWon"]) == (True, False)
    with pytest.raises(SalesforceMalformedRequest) as bad_stage:
        _opportunity(sf, StageName="Daydreaming")
    assert _error(bad_stage)["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    opportunity_id = _opportunity(sf)
    opened = sf.Opportunity.get(opportunity_id)
    assert (opened["IsClosed"], opened["IsWon"], opened["Probability"]) == (False, False, 10)
    sf.Opportunity.update(opportunity_id, {"StageName": "Closed Won"})
    won = sf.Opportunity.get(opportunity_id)
    assert (won["IsClosed"], won["IsWon"], won["Probability"], won["ForecastCategoryName"]) == (
        True,
        True,
        100,
        "Closed",
    )
    with pytest.raises(SalesforceMalformedRequest) as direct:
        sf.Opportunity.update(opportunity_id, {"IsWon": False})
    assert _error(direct)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_line_from_another_book_is_refused(sf: Salesforce) -> None:
    """A line whose entry is not in the opportunity's book gets FIELD_INTEGRITY_EXCEPTION."""
    product_id = _product(sf)
    book_id, _ = _book_with_entry(sf, product_id, 90, "Book A")
    _, other_entry = _book_with_entry(sf, product_id, 70, "Book B")
    opportunity_id = _opportunity(sf, Pricebook2Id=book_id)
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.OpportunityLineItem.create(
            {"OpportunityId": opportunity_id, "PricebookEntryId": other_entry, "Quantity": 1, "UnitPrice": 70}
        )
    assert _error(refused)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert _error(refused)["message"] == WRONG_BOOK


def test_first_line_sets_the_book_and_prices_derive(sf: Salesforce) -> None:
    """The first line sets the opportunity's book; ListPrice, Subtotal, TotalPrice and Product2Id derive."""
    product_id = _product(sf)
    book_id, entry_id = _book_with_entry(sf, product_id, 90)
    opportunity_id = _opportunity(sf)
    line_id = sf.OpportunityLineItem.create(
        {"OpportunityId": opportunity_id, "PricebookEntryId": entry_id, "Quantity": 4, "UnitPrice": 80, "Discount": 25}
    )["id"]
    line = sf.OpportunityLineItem.get(line_id)
    assert (line["ListPrice"], line["Subtotal"], line["TotalPrice"], line["Product2Id"]) == (90, 320, 240, product_id)
    assert sf.Opportunity.get(opportunity_id)["Pricebook2Id"] == book_id
    with pytest.raises(SalesforceMalformedRequest) as both:
        sf.OpportunityLineItem.create(
            {
                "OpportunityId": opportunity_id,
                "PricebookEntryId": entry_id,
                "Quantity": 1,
                "UnitPrice": 1,
                "TotalPrice": 1,
            }
        )
    assert _error(both)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    by_total = sf.OpportunityLineItem.create(
        {"OpportunityId": opportunity_id, "PricebookEntryId": entry_id, "Quantity": 2, "TotalPrice": 150}
    )["id"]
    assert sf.OpportunityLineItem.get(by_total)["UnitPrice"] == 75


def test_amount_rolls_up_from_lines(sf: Salesforce) -> None:
    """Amount is the sum of line totals; writes to it are ignored; deleting a line lowers it."""
    product_id = _product(sf)
    _, entry_id = _book_with_entry(sf, product_id, 90)
    opportunity_id = _opportunity(sf, Amount=5)
    assert sf.Opportunity.get(opportunity_id)["HasOpportunityLineItem"] is False
    line = {"OpportunityId": opportunity_id, "PricebookEntryId": entry_id}
    first = sf.OpportunityLineItem.create({**line, "Quantity": 2, "UnitPrice": 90})["id"]
    sf.OpportunityLineItem.create({**line, "Quantity": 1, "UnitPrice": 50})
    opportunity = sf.Opportunity.get(opportunity_id)
    assert (opportunity["Amount"], opportunity["HasOpportunityLineItem"]) == (230, True)
    sf.Opportunity.update(opportunity_id, {"Amount": 1, "Description": "edited"})
    assert sf.Opportunity.get(opportunity_id)["Amount"] == 230
    sf.OpportunityLineItem.update(first, {"Quantity": 3})
    assert sf.Opportunity.get(opportunity_id)["Amount"] == 320
    sf.OpportunityLineItem.delete(first)
    assert sf.Opportunity.get(opportunity_id)["Amount"] == 50


def test_book_change_with_lines_is_refused(sf: Salesforce) -> None:
    """Pricebook2Id cannot change while the opportunity has lines; it can once they are gone."""
    product_id = _product(sf)
    _, entry_id = _book_with_entry(sf, product_id, 90, "Book A")
    other_book, _ = _book_with_entry(sf, product_id, 70, "Book B")
    opportunity_id = _opportunity(sf)
    line_id = sf.OpportunityLineItem.create(
        {"OpportunityId": opportunity_id, "PricebookEntryId": entry_id, "Quantity": 1, "UnitPrice": 90}
    )["id"]
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Opportunity.update(opportunity_id, {"Pricebook2Id": other_book})
    assert _error(refused)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    sf.OpportunityLineItem.delete(line_id)
    assert sf.Opportunity.update(opportunity_id, {"Pricebook2Id": other_book}) == 204


def test_line_query_with_parent_fields(sf: Salesforce) -> None:
    """Lines are queryable by OpportunityId with Product2 and PricebookEntry parent fields."""
    product_id = _product(sf, code="FIB-CODE")
    book_id, entry_id = _book_with_entry(sf, product_id, 90)
    opportunity_id = _opportunity(sf)
    sf.OpportunityLineItem.create(
        {
            "OpportunityId": opportunity_id,
            "PricebookEntryId": entry_id,
            "Quantity": 1,
            "UnitPrice": 90,
            "Account_Product_Code_Name__c": "APC-1",
        }
    )
    fields = "Id, Quantity, Product2.ProductCode, PricebookEntry.Pricebook2Id, Account_Product_Code_Name__c"
    soql = format_soql(
        "SELECT {:literal}, LogiSense_Product_Code_Id__c FROM OpportunityLineItem WHERE OpportunityId = {}",
        fields,
        opportunity_id,
    )
    rows = sf.query(soql)["records"]
    assert len(rows) == 1
    assert rows[0]["Product2"]["ProductCode"] == "FIB-CODE"
    assert rows[0]["PricebookEntry"]["Pricebook2Id"] == book_id
    assert rows[0]["Account_Product_Code_Name__c"] == "APC-1"


def test_currency_iso_code_only_in_multi_currency_org(salesforce_emulator: SalesforceEmulator, sf: Salesforce) -> None:
    """describe lists CurrencyIsoCode only once the org is multi-currency, on every priced object."""
    objects = ("Account", "Opportunity", "PricebookEntry", "OpportunityLineItem", "Product2")
    for name in objects:
        assert "CurrencyIsoCode" not in {f["name"] for f in getattr(sf, name).describe()["fields"]}
    salesforce_emulator.tune(multi_currency=True)
    for name in objects:
        field = next(f for f in getattr(sf, name).describe()["fields"] if f["name"] == "CurrencyIsoCode")
        assert field["type"] == "picklist"
        assert "EUR" in [v["value"] for v in field["picklistValues"]]
    line = next(f for f in sf.OpportunityLineItem.describe()["fields"] if f["name"] == "CurrencyIsoCode")
    assert (line["createable"], line["updateable"]) == (False, False)


def test_multi_currency_prices_per_currency(salesforce_emulator: SalesforceEmulator, sf: Salesforce) -> None:
    """Each currency needs its own standard price; a line must match the opportunity's currency."""
    salesforce_emulator.tune(multi_currency=True)
    product_id = _product(sf)
    standard = _standard_book(sf)
    book_id = sf.Pricebook2.create({"Name": "Euro book", "IsActive": True})["id"]
    euro = {"Product2Id": product_id, "CurrencyIsoCode": "EUR", "IsActive": True}
    with pytest.raises(SalesforceMalformedRequest) as no_standard:
        sf.PricebookEntry.create({**euro, "Pricebook2Id": book_id, "UnitPrice": 8})
    assert _error(no_standard)["errorCode"] == "STANDARD_PRICE_NOT_DEFINED"
    sf.PricebookEntry.create({**euro, "Pricebook2Id": standard, "UnitPrice": 9})
    euro_entry = sf.PricebookEntry.create({**euro, "Pricebook2Id": book_id, "UnitPrice": 8})["id"]
    usd_opportunity = _opportunity(sf)
    assert sf.Opportunity.get(usd_opportunity)["CurrencyIsoCode"] == "USD"
    with pytest.raises(SalesforceMalformedRequest) as mismatch:
        sf.OpportunityLineItem.create(
            {"OpportunityId": usd_opportunity, "PricebookEntryId": euro_entry, "Quantity": 1, "UnitPrice": 8}
        )
    assert _error(mismatch)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    euro_opportunity = _opportunity(sf, CurrencyIsoCode="EUR")
    line_id = sf.OpportunityLineItem.create(
        {"OpportunityId": euro_opportunity, "PricebookEntryId": euro_entry, "Quantity": 1, "UnitPrice": 8}
    )["id"]
    assert sf.OpportunityLineItem.get(line_id)["CurrencyIsoCode"] == "EUR"
    with pytest.raises(SalesforceMalformedRequest) as currency_change:
        sf.Opportunity.update(euro_opportunity, {"CurrencyIsoCode": "USD"})
    assert _error(currency_change)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        sf.Account.create({"Name": "Zimbabwe", "CurrencyIsoCode": "ZWL"})
    assert _error(unknown)["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_reset_reseeds_books_and_stages(salesforce_emulator: SalesforceEmulator, sf: Salesforce) -> None:
    """Admin reset removes custom books, entries and opportunities and seeds the standard book and stages again."""
    product_id = _product(sf)
    _book_with_entry(sf, product_id, 90)
    _opportunity(sf)
    salesforce_emulator.admin("POST", "reset")
    assert [r["Name"] for r in salesforce_emulator.records("Pricebook2")] == ["Standard Price Book"]
    assert salesforce_emulator.records("PricebookEntry") == []
    assert salesforce_emulator.records("Opportunity") == []
    assert len(salesforce_emulator.records("OpportunityStage")) >= 5


class Bayeux:
    """A minimal long-polling CometD client over the emulator's CA-trusting HTTP session."""

    def __init__(self, emulator: SalesforceEmulator, version: str) -> None:
        self.emulator = emulator
        self.url = f"{emulator.instance_url}/cometd/{version}"
        self.token = emulator.rest().sf.session_id
        self.client_id = ""
        self.events: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        if self.client_id:
            message["clientId"] = self.client_id
        response = self.emulator.http.post(
            self.url, json=[message], headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        response.raise_for_status()
        replies: list[dict[str, Any]] = response.json()
        self.events.extend(m for m in replies if not m["channel"].startswith("/meta/"))
        return replies

    def start(self) -> None:
        handshake = self.send(
            {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
        )
        self.client_id = handshake[0]["clientId"]
        self.connect()

    def connect(self) -> list[dict[str, Any]]:
        self.send({"channel": "/meta/connect", "connectionType": "long-polling"})
        return self.events

    def subscribe(self, channel: str) -> dict[str, Any]:
        return self.send({"channel": "/meta/subscribe", "subscription": channel})[0]


def test_cometd_sees_opportunity_update_with_derived_fields(
    salesforce_emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    """A stage move to Closed Won arrives as an UPDATE listing StageName and the fields it derives."""
    opportunity_id = _opportunity(sf)
    bayeux = Bayeux(salesforce_emulator, "62.0")
    bayeux.start()
    assert bayeux.subscribe("/data/OpportunityChangeEvent")["successful"] is True
    sf.Opportunity.update(opportunity_id, {"StageName": "Closed Won"})
    events = wait_until(bayeux.connect, 15, "the Opportunity UPDATE event", every=0)
    header = events[0]["data"]["payload"]["ChangeEventHeader"]
    assert (header["entityName"], header["changeType"], header["recordIds"]) == (
        "Opportunity",
        "UPDATE",
        [opportunity_id],
    )
    derived = {"StageName", "IsClosed", "IsWon", "Probability", "ForecastCategoryName", "LastModifiedDate"}
    assert derived <= set(header["changedFields"])
    assert events[0]["data"]["payload"]["IsWon"] is True


def test_line_item_events_need_api_60(salesforce_emulator: SalesforceEmulator, sf: Salesforce) -> None:
    """Line item events reach only clients of API 60.0+; a new line also updates the opportunity's Amount."""
    old = Bayeux(salesforce_emulator, "59.0")
    old.start()
    assert old.subscribe("/data/OpportunityLineItemChangeEvent")["successful"] is False
    assert old.subscribe("/data/ChangeEvents")["successful"] is True
    bayeux = Bayeux(salesforce_emulator, "60.0")
    bayeux.start()
    assert bayeux.subscribe("/data/OpportunityLineItemChangeEvent")["successful"] is True
    assert bayeux.subscribe("/data/OpportunityChangeEvent")["successful"] is True
    product_id = _product(sf)
    _, entry_id = _book_with_entry(sf, product_id, 90)
    opportunity_id = _opportunity(sf)
    sf.OpportunityLineItem.create(
        {"OpportunityId": opportunity_id, "PricebookEntryId": entry_id, "Quantity": 2, "UnitPrice": 90}
    )
    events = wait_until(bayeux.connect, 15, "the line CREATE and the Opportunity UPDATE", until=lambda e: len(e) >= 3)
    by_channel = {(e["channel"], e["data"]["payload"]["ChangeEventHeader"]["changeType"]): e for e in events}
    line = by_channel["/data/OpportunityLineItemChangeEvent", "CREATE"]["data"]["payload"]
    assert (line["TotalPrice"], line["OpportunityId"]) == (180, opportunity_id)
    rollup = by_channel["/data/OpportunityChangeEvent", "UPDATE"]["data"]["payload"]
    assert {"Amount", "HasOpportunityLineItem", "Pricebook2Id"} <= set(rollup["ChangeEventHeader"]["changedFields"])
    assert rollup["Amount"] == 180
    seen_by_old = wait_until(old.connect, 15, "the 59.0 client's events", until=lambda e: len(e) >= 3)
    entities = {e["data"]["payload"]["ChangeEventHeader"]["entityName"] for e in seen_by_old}
    assert "Opportunity" in entities
    assert "OpportunityLineItem" not in entities
