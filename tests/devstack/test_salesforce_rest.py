"""simple-salesforce, unmodified, against the emulator's OAuth and REST API."""

from __future__ import annotations

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from tests.fixtures.salesforce import SalesforceEmulator

pytestmark = pytest.mark.integration


def test_token_endpoint_shapes(salesforce_emulator: SalesforceEmulator) -> None:
    """The password grant returns Salesforce's fields; bad credentials get invalid_grant."""
    url = f"{salesforce_emulator.instance_url}/services/oauth2/token"
    form = {
        "grant_type": "password",
        "client_id": salesforce_emulator.client_id,
        "client_secret": salesforce_emulator.client_secret,
        "username": salesforce_emulator.username,
        "password": salesforce_emulator.password,
    }
    good = salesforce_emulator.http.post(url, data=form, timeout=10).json()
    assert {"access_token", "refresh_token", "instance_url", "id", "token_type", "issued_at", "signature"} <= set(good)
    assert good["token_type"] == "Bearer"
    assert good["instance_url"] == salesforce_emulator.instance_url
    bad = salesforce_emulator.http.post(url, data={**form, "password": "nope"}, timeout=10)
    assert bad.status_code == 400
    assert bad.json() == {"error": "invalid_grant", "error_description": "authentication failure"}
    refreshed = salesforce_emulator.http.post(
        url,
        data={"grant_type": "refresh_token", "client_id": form["client_id"], "refresh_token": good["refresh_token"]},
        timeout=10,
    ).json()
    assert refreshed["access_token"] != good["access_token"]
    assert "refresh_token" not in refreshed


def test_sobject_crud(sf: Salesforce) -> None:
    """create, get, update, delete through SFType behave as in Salesforce (201, 204, 404 after delete)."""
    created = sf.Account.create({"Name": "Acme", "BillingCity": "Paris", "Type": "Customer"})
    assert created["success"] is True
    assert created["errors"] == []
    account_id = created["id"]
    assert len(account_id) == 18
    assert account_id.startswith("001")
    assert sf.Account.update(account_id, {"Name": "Acme Corp"}) == 204
    record = sf.Account.get(account_id)
    assert record["Name"] == "Acme Corp"
    assert record["BillingAddress"]["city"] == "Paris"
    assert record["attributes"] == {"type": "Account", "url": f"/services/data/v62.0/sobjects/Account/{account_id}"}
    assert sf.Account.delete(account_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(account_id)


def test_upsert_creates_then_updates(sf: Salesforce) -> None:
    """Upsert by external id answers 201 when it creates and 200 when it updates."""
    assert sf.Product2.upsert("LogiSense_Id__c/PKG-1", {"Name": "Gold"}) == 201
    assert sf.Product2.upsert("LogiSense_Id__c/PKG-1", {"Name": "Gold Plus"}) == 200
    found = sf.Product2.get_by_custom_id("LogiSense_Id__c", "PKG-1")
    assert found["Name"] == "Gold Plus"
    assert found["Id"].startswith("01t")
    rows = sf.query("SELECT Id FROM Product2")["records"]
    assert len(rows) == 1


def test_query_all_iter_pages_past_2000(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """More than 2,000 rows come back in pages linked by nextRecordsUrl, in order."""
    salesforce_emulator.seed("Account", [{"Name": f"Account {i:05d}"} for i in range(4500)])
    first = sf.query("SELECT Id, Name FROM Account ORDER BY Name")
    assert first["totalSize"] == 4500
    assert first["done"] is False
    assert len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v62.0/query/")
    assert first["nextRecordsUrl"].endswith("-2000")
    names = [r["Name"] for r in sf.query_all_iter("SELECT Id, Name FROM Account ORDER BY Name")]
    assert names == [f"Account {i:05d}" for i in range(4500)]
    assert salesforce_emulator.counters()["query"] == 4


def test_query_all_includes_deleted_rows(sf: Salesforce) -> None:
    """queryAll returns deleted records with IsDeleted = true; query does not."""
    keep = sf.Account.create({"Name": "Keep"})["id"]
    gone = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(gone)
    live = sf.query_all("SELECT Id FROM Account")["records"]
    everything = sf.query_all("SELECT Id, IsDeleted FROM Account", include_deleted=True)["records"]
    assert [r["Id"] for r in live] == [keep]
    assert {r["Id"]: r["IsDeleted"] for r in everything} == {keep: False, gone: True}


def test_relationship_fields_in_query(sf: Salesforce) -> None:
    """Account.Name on Contact comes back as a nested record with attributes; a null lookup as null."""
    account_id = sf.Account.create({"Name": "Parent Co"})["id"]
    sf.Contact.create({"LastName": "Lovelace", "FirstName": "Ada", "AccountId": account_id})
    sf.Contact.create({"LastName": "Orphan"})
    rows = sf.query("SELECT Name, Account.Name FROM Contact ORDER BY LastName")["records"]
    assert rows[0]["Name"] == "Ada Lovelace"
    assert rows[0]["Account"]["Name"] == "Parent Co"
    assert rows[0]["Account"]["attributes"]["type"] == "Account"
    assert rows[1]["Account"] is None


def test_composite_collections(sf: Salesforce) -> None:
    """sObject Collections create, update, upsert and delete report one result per record."""
    created = sf.restful(
        "composite/sobjects",
        method="POST",
        json={"allOrNone": False, "records": [{"attributes": {"type": "Account"}, "Name": f"A{i}"} for i in range(3)]},
    )
    assert [r["success"] for r in created] == [True, True, True]
    ids = [r["id"] for r in created]
    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Account"}, "Id": i, "Type": "Prospect"} for i in ids]},
    )
    assert all(r["success"] for r in updated)
    upserted = sf.restful(
        "composite/sobjects/Account/LogiSense_Id__c",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Account"}, "LogiSense_Id__c": "L1", "Name": "Upserted"}]},
    )
    assert upserted[0]["created"] is True
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join(ids)})
    assert [r["id"] for r in deleted] == ids
    types = {r["Type"] for r in sf.query_all("SELECT Type FROM Account", include_deleted=True)["records"]}
    assert types == {"Prospect", None}


def test_composite_all_or_none_rolls_back(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """With allOrNone one invalid record fails the whole collection and nothing is written."""
    results = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [{"attributes": {"type": "Account"}, "Name": "Good"}, {"attributes": {"type": "Account"}}],
        },
    )
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0] == {
        "statusCode": "REQUIRED_FIELD_MISSING",
        "message": "Required fields are missing: [Name]",
        "fields": ["Name"],
    }
    assert salesforce_emulator.records("Account") == []
    assert salesforce_emulator.events() == []


def test_collection_limit_is_200(sf: Salesforce) -> None:
    """More than 200 records in a collection is refused as a whole."""
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful(
            "composite/sobjects",
            method="POST",
            json={"records": [{"attributes": {"type": "Account"}, "Name": "x"}] * 201},
        )
    assert caught.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_describe_and_listing(sf: Salesforce) -> None:
    """describe lists fields with Salesforce's attributes; the sObject listing names every object."""
    described = sf.Account.describe()
    fields = {f["name"]: f for f in described["fields"]}
    assert described["keyPrefix"] == "001"
    assert fields["LogiSense_Id__c"]["externalId"] is True
    assert fields["Usage_Invoice_Recipient__c"]["referenceTo"] == ["Account"]
    assert fields["Usage_Invoice_Recipient__c"]["relationshipName"] == "Usage_Invoice_Recipient__r"
    assert fields["BillingCity"]["compoundFieldName"] == "BillingAddress"
    assert fields["Name"]["nillable"] is False
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert {"Account", "Contact", "Product2", "User"} <= names


def test_errors_become_simple_salesforce_exceptions(sf: Salesforce) -> None:
    """Unknown fields, bad SOQL and missing records raise the matching simple-salesforce exceptions."""
    with pytest.raises(SalesforceMalformedRequest) as bad_field:
        sf.Account.create({"Name": "x", "Foo": 1})
    assert bad_field.value.content == [
        {"message": "No such column 'Foo' on sobject of type Account", "errorCode": "INVALID_FIELD", "fields": ["Foo"]}
    ]
    with pytest.raises(SalesforceMalformedRequest) as bad_query:
        sf.query("SELECT Id FROM Account WHERE")
    assert bad_query.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as bad_column:
        sf.query("SELECT Foo FROM Account")
    assert bad_column.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Foo' on entity 'Account'" in bad_column.value.content[0]["message"]
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.Account.get("001000000000000AAA")
    assert missing.value.content == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


def test_expired_session_raises_invalid_session_id(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """After sessions/expire, REST answers 401 INVALID_SESSION_ID (SalesforceExpiredSession)."""
    sf.query("SELECT Id FROM Account")
    salesforce_emulator.admin("POST", "sessions/expire")
    with pytest.raises(SalesforceExpiredSession) as caught:
        sf.query("SELECT Id FROM Account")
    assert caught.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_duplicate_external_id_is_refused(sf: Salesforce) -> None:
    """A second record with the same unique external id gets DUPLICATE_VALUE naming the holder."""
    first = sf.Account.create({"Name": "One", "LogiSense_Id__c": "X-1"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Account.create({"Name": "Two", "LogiSense_Id__c": "x-1"})
    error = caught.value.content[0]
    assert error["errorCode"] == "DUPLICATE_VALUE"
    assert first in error["message"]


def test_bad_reference_is_refused(sf: Salesforce) -> None:
    """A lookup to a record that does not exist gets INVALID_CROSS_REFERENCE_KEY."""
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Contact.create({"LastName": "X", "AccountId": "001000000000000AAA"})
    assert caught.value.content[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"


def test_custom_object_from_admin_schema(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """A custom object added through the admin API is describable, upsertable and queryable."""
    salesforce_emulator.admin(
        "POST",
        "schema",
        {
            "objects": [
                {
                    "name": "LogiSense_Package__c",
                    "fields": [
                        {"name": "LogiSense_Id__c", "type": "string", "externalId": True},
                        {"name": "Price__c", "type": "currency"},
                    ],
                }
            ]
        },
    )
    assert sf.LogiSense_Package__c.upsert("LogiSense_Id__c/7", {"Name": "Gold", "Price__c": 9.5}) == 201
    rows = sf.query("SELECT Id, Name, Price__c FROM LogiSense_Package__c WHERE Price__c > 5")["records"]
    assert rows[0]["Name"] == "Gold"
    assert rows[0]["Id"].startswith("a0")
    fields = {f["name"] for f in sf.LogiSense_Package__c.describe()["fields"]}
    assert {"Id", "Name", "LogiSense_Id__c", "Price__c"} <= fields
