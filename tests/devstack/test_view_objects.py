"""The Requests tab's objects (shared/salesforce_view.py) in the emulator, driven by simple-salesforce, unmodified.

A request (`LogiSense_Request__c`) with a SetNull lookup to Account, its error logs (`LogiSense_Request_Error__c`,
a master-detail child set by the request's external id), and the four Account link fields: schema and describe,
references by external id, lookup validation, cascade and SetNull deletes, collections and Bulk API 2.0 deletes,
the collections limits, SOQL (subqueries too) and the client tag of the Account link writes' change events.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest
from simple_salesforce.format import format_soql

from shared.salesforce_view import (
    ACCOUNT_LAST_SYNC,
    ACCOUNT_LOGISENSE_ID,
    ACCOUNT_SYNC_REASON,
    ACCOUNT_SYNC_STATUS,
    ERROR_OBJECT,
    REQUEST_OBJECT,
    VIEW_SCHEMA,
)
from tests.fixtures.salesforce import SalesforceEmulator

pytestmark = pytest.mark.integration
POLL = 0.05  # simple-salesforce's bulk2 `wait`


@pytest.fixture
def view(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> Salesforce:
    """A client of an emulator that has the view's objects and fields."""
    salesforce_emulator.admin("POST", "schema", VIEW_SCHEMA)
    return sf


def _request(sf: Salesforce, request_id: str, **fields: Any) -> str:
    assert sf.LogiSense_Request__c.upsert(f"Request_Id__c/{request_id}", {"Kind__c": "account", **fields}) == 201
    return str(sf.LogiSense_Request__c.get_by_custom_id("Request_Id__c", request_id)["Id"])


def _error(sf: Salesforce, dead_letter: str, request_id: str) -> int:
    body = {"Request__r": {"Request_Id__c": request_id}, "Error_Class__c": "Permanent", "HTTP_Status__c": 400}
    return int(sf.LogiSense_Request_Error__c.upsert(f"Dead_Letter_Id__c/{dead_letter}", body))


def _collection(sf: Salesforce, method: str, path: str, records: list[dict[str, Any]], **body: Any) -> Any:
    return sf.restful(path, method=method, data=json.dumps({"allOrNone": False, "records": records, **body}))


def _errors(results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [result["errors"] for result in results]


def test_schema_loads_twice_and_describes_the_relationships(
    view: Salesforce, salesforce_emulator: SalesforceEmulator
) -> None:
    """Loading the view again adds nothing; describe gives labels, numbers, master-detail and child relationships."""
    assert salesforce_emulator.admin("POST", "schema", VIEW_SCHEMA)["added"] == []
    request = view.LogiSense_Request__c.describe()
    assert (request["label"], request["labelPlural"]) == ("LogiSense Request", "LogiSense Requests")
    fields = {f["name"]: f for f in request["fields"]}
    assert fields["Name"]["label"] == "Request"
    assert (fields["Duration_Seconds__c"]["precision"], fields["Duration_Seconds__c"]["scale"]) == (12, 3)
    assert fields["Attempts__c"]["digits"] == 6
    assert fields["Account__c"]["referenceTo"] == ["Account"]
    assert fields["Account__c"]["relationshipName"] == "Account__r"
    assert fields["Account__c"]["nillable"] is True
    (children,) = request["childRelationships"][-1:]
    assert children == {
        "cascadeDelete": True,
        "childSObject": ERROR_OBJECT,
        "deprecatedAndHidden": False,
        "field": "Request__c",
        "junctionIdListNames": [],
        "junctionReferenceTo": [],
        "relationshipName": "Request_Error_Logs__r",
        "restrictedDelete": False,
    }
    error_fields = {f["name"]: f for f in view.LogiSense_Request_Error__c.describe()["fields"]}
    assert "OwnerId" not in error_fields  # a master-detail child is owned by its parent
    assert error_fields["Request__c"]["nillable"] is False
    assert error_fields["Request__c"]["cascadeDelete"] is True
    account = view.Account.describe()
    links = [c for c in account["childRelationships"] if c["childSObject"] == REQUEST_OBJECT]
    assert [(c["field"], c["relationshipName"], c["cascadeDelete"]) for c in links] == [
        ("Account__c", "LogiSense_Requests__r", False)
    ]
    contacts = next(c for c in account["childRelationships"] if c["childSObject"] == "Contact")
    assert (contacts["relationshipName"], contacts["cascadeDelete"]) == ("Contacts", True)
    account_fields = {f["name"] for f in account["fields"]}
    assert {ACCOUNT_LOGISENSE_ID, ACCOUNT_SYNC_STATUS, ACCOUNT_SYNC_REASON, ACCOUNT_LAST_SYNC} <= account_fields


def test_schema_refuses_unknown_and_inconsistent_keys(salesforce_emulator: SalesforceEmulator) -> None:
    """Unknown object or field keys, and reference keys on a non-reference field, are refused with 400."""
    for spec in (
        {"objects": [{"name": "X__c", "colour": "red"}]},
        {"objects": [{"name": "X__c", "fields": [{"name": "A__c", "typo": 1}]}]},
        {"objects": [{"name": "X__c", "fields": [{"name": "A__c", "type": "string", "masterDetail": True}]}]},
        {
            "fields": {
                "Account": [{"name": "B__c", "type": "reference", "referenceTo": "Account", "deleteConstraint": "Drop"}]
            }
        },
    ):
        response = salesforce_emulator.http.post(f"{salesforce_emulator.admin_url}/schema", json=spec, timeout=10)
        assert response.status_code == 400, spec


def test_error_logs_set_their_request_by_external_id(view: Salesforce) -> None:
    """`Request__r: {Request_Id__c}` sets the master-detail on upsert; an unknown request is INVALID_FIELD."""
    request_id = _request(view, "r-1")
    assert _error(view, "dlq:0:1", "r-1") == 201
    assert _error(view, "dlq:0:1", "r-1") == 200
    rows = view.query_all(
        "SELECT Id, Dead_Letter_Id__c, Request__r.Request_Id__c, Request__c FROM LogiSense_Request_Error__c"
    )
    (row,) = rows["records"]
    assert row["Request__c"] == request_id
    assert row["Request__r"]["Request_Id__c"] == "r-1"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _error(view, "dlq:0:2", "nope")
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert caught.value.content[0]["message"] == (
        "Foreign key external ID: nope not found for field Request_Id__c in entity LogiSense_Request__c"
    )


def test_collections_upsert_fails_only_the_record_without_its_request(view: Salesforce) -> None:
    """In an allOrNone=false collections upsert only the error log whose request is unknown fails."""
    _request(view, "r-1")
    records = [
        {"attributes": {"type": ERROR_OBJECT}, "Dead_Letter_Id__c": f"dlq:0:{n}", "Request__r": {"Request_Id__c": rid}}
        for n, rid in enumerate(("r-1", "missing", "r-1"))
    ]
    results = _collection(view, "PATCH", "composite/sobjects/LogiSense_Request_Error__c/Dead_Letter_Id__c", records)
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1]["errors"] == [
        {
            "statusCode": "INVALID_FIELD",
            "message": "Foreign key external ID: missing not found for field Request_Id__c in entity "
            "LogiSense_Request__c",
            "fields": [],
        }
    ]
    assert [r["created"] for r in (results[0], results[2])] == [True, True]
    created = _collection(
        view,
        "POST",
        "composite/sobjects",
        [
            {
                "attributes": {"type": ERROR_OBJECT},
                "Dead_Letter_Id__c": "dlq:1:0",
                "Request__r": {"Request_Id__c": "r-1"},
            }
        ],
    )
    assert created[0]["success"] is True
    assert view.query("SELECT COUNT() FROM LogiSense_Request_Error__c")["totalSize"] == 3


def test_lookup_validation_errors(view: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """An unknown, deleted, wrong-object or malformed id in Account__c each get Salesforce's error."""
    deleted = view.Account.create({"Name": "Gone"})["id"]
    view.Account.delete(deleted)
    contact = view.Contact.create({"LastName": "Not an account"})["id"]
    unknown = "001000000000000AAA"  # an Account id of no record
    records = [
        {"attributes": {"type": REQUEST_OBJECT}, "Request_Id__c": f"r-{n}", "Account__c": value}
        for n, value in enumerate((unknown, deleted, contact, "not-an-id"))
    ]
    results = _collection(view, "POST", "composite/sobjects", records)
    assert _errors(results) == [
        [
            {
                "statusCode": "INVALID_CROSS_REFERENCE_KEY",
                "message": "invalid cross reference id",
                "fields": ["Account__c"],
            }
        ],
        [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": ["Account__c"]}],
        [
            {
                "statusCode": "FIELD_INTEGRITY_EXCEPTION",
                "message": f"Account: id value of incorrect type: {contact}",
                "fields": ["Account__c"],
            }
        ],
        [
            {
                "statusCode": "MALFORMED_ID",
                "message": "Account__c: id value of incorrect type: not-an-id",
                "fields": ["Account__c"],
            }
        ],
    ]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        view.Contact.create({"LastName": "X", "OwnerId": contact})
    assert caught.value.content[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    owner = salesforce_emulator.records("User")[0]["Id"]
    assert view.Contact.create({"LastName": "Y", "OwnerId": owner})["success"] is True


def test_error_log_without_its_request_is_refused(view: Salesforce) -> None:
    """The master-detail is required: REQUIRED_FIELD_MISSING names it."""
    results = _collection(
        view, "POST", "composite/sobjects", [{"attributes": {"type": ERROR_OBJECT}, "Dead_Letter_Id__c": "dlq:9:9"}]
    )
    assert _errors(results) == [
        [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Request__c]",
                "fields": ["Request__c"],
            }
        ]
    ]


def test_duplicate_external_id_on_create(view: Salesforce) -> None:
    """A collections create of an existing Request_Id__c is DUPLICATE_VALUE naming the holder."""
    holder = _request(view, "r-dup")
    results = _collection(
        view, "POST", "composite/sobjects", [{"attributes": {"type": REQUEST_OBJECT}, "Request_Id__c": "R-DUP"}]
    )
    assert _errors(results) == [
        [
            {
                "statusCode": "DUPLICATE_VALUE",
                "message": f"duplicate value found: Request_Id__c duplicates value on record with id: {holder}",
                "fields": ["Request_Id__c"],
            }
        ]
    ]


def test_deleting_a_request_deletes_its_error_logs_and_undelete_restores_them(
    view: Salesforce, salesforce_emulator: SalesforceEmulator
) -> None:
    """Master-detail cascade: the error logs go with the request and come back with it."""
    request_id = _request(view, "r-1")
    other = _request(view, "r-2")
    for n in range(3):
        _error(view, f"dlq:0:{n}", "r-1")
    _error(view, "dlq:1:0", "r-2")
    view.LogiSense_Request__c.delete(request_id)
    live = view.query_all("SELECT Id, Request__c FROM LogiSense_Request_Error__c")["records"]
    assert [row["Request__c"] for row in live] == [other]
    everything = view.query_all("SELECT Id, IsDeleted FROM LogiSense_Request_Error__c", include_deleted=True)["records"]
    assert sorted(row["IsDeleted"] for row in everything) == [False, True, True, True]
    salesforce_emulator.admin("POST", "undelete", {"sobject": REQUEST_OBJECT, "ids": [request_id]})
    count = view.query(format_soql("SELECT COUNT() FROM LogiSense_Request_Error__c WHERE Request__c = {}", request_id))
    assert count["totalSize"] == 3


def test_deleting_an_account_clears_its_requests_lookup(
    view: Salesforce, salesforce_emulator: SalesforceEmulator
) -> None:
    """SetNull: the request stays with Account__c cleared; undeleting the account sets it back."""
    account = view.Account.create({"Name": "Acme"})["id"]
    request_id = _request(view, "r-1", Account__c=account)
    view.Account.delete(account)
    request = view.LogiSense_Request__c.get(request_id)
    assert request["Account__c"] is None
    assert request["IsDeleted"] is False
    assert (
        view.query(format_soql("SELECT COUNT() FROM LogiSense_Request__c WHERE Account__c = {}", account))["totalSize"]
        == 0
    )
    salesforce_emulator.admin("POST", "undelete", {"sobject": "Account", "ids": [account]})
    assert view.LogiSense_Request__c.get(request_id)["Account__c"] == account


def test_collections_delete_cascades_and_fails_only_the_bad_ids(view: Salesforce) -> None:
    """DELETE /composite/sobjects?ids=...&allOrNone=false: the deleted one fails alone; children go too."""
    first, second = _request(view, "r-1"), _request(view, "r-2")
    _error(view, "dlq:0:0", "r-1")
    view.LogiSense_Request__c.delete(second)
    results = view.restful(
        "composite/sobjects", method="DELETE", params={"ids": f"{first},{second}", "allOrNone": "false"}
    )
    assert results[0] == {"id": first, "success": True, "errors": []}
    assert results[1]["success"] is False
    assert results[1]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    assert view.query("SELECT COUNT() FROM LogiSense_Request_Error__c")["totalSize"] == 0


def test_collections_refuse_more_than_200(view: Salesforce) -> None:
    """201 records to create, or 201 ids to delete: EXCEEDED_ID_LIMIT for the whole request."""
    records = [{"attributes": {"type": REQUEST_OBJECT}, "Request_Id__c": f"r-{n}"} for n in range(201)]
    expected = [
        {
            "message": "record limit reached. cannot submit more than 200 records into this call",
            "errorCode": "EXCEEDED_ID_LIMIT",
        }
    ]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _collection(view, "POST", "composite/sobjects", records)
    assert caught.value.content == expected
    ids = ",".join(["a00000000000000AAA"] * 201)
    with pytest.raises(SalesforceMalformedRequest) as caught:
        view.restful("composite/sobjects", method="DELETE", params={"ids": ids})
    assert caught.value.content == expected
    assert len(_collection(view, "POST", "composite/sobjects", records[:200])) == 200


def test_bulk_insert_by_relationship_column_then_bulk_delete_cascades(view: Salesforce) -> None:
    """Bulk API 2.0: error logs inserted with a Request__r.Request_Id__c column; a delete job cascades."""
    request_id = _request(view, "r-1")
    rows = [{"Dead_Letter_Id__c": f"dlq:2:{n}", "Request__r.Request_Id__c": "r-1"} for n in range(3)]
    (inserted,) = view.bulk2.LogiSense_Request_Error__c.insert(records=rows, wait=POLL)
    assert (inserted["numberRecordsProcessed"], inserted["numberRecordsFailed"]) == (3, 0)
    (deleted,) = view.bulk2.LogiSense_Request__c.delete(records=[{"Id": request_id}], wait=POLL)
    assert (deleted["numberRecordsProcessed"], deleted["numberRecordsFailed"]) == (1, 0)
    assert view.query("SELECT COUNT() FROM LogiSense_Request_Error__c")["totalSize"] == 0
    assert view.query("SELECT COUNT() FROM LogiSense_Request__c")["totalSize"] == 0


def test_soql_on_the_view_objects(view: Salesforce) -> None:
    """Datetime and lookup filters, COUNT(), parent paths and a parent-to-child subquery."""
    account = view.Account.create({"Name": "Acme"})["id"]
    old = _request(view, "r-old", Started__c="2025-06-01T10:00:00Z", Account__c=account)
    _request(view, "r-new", Started__c="2026-03-01T10:00:00.000+0000")
    _error(view, "dlq:0:1", "r-old")
    _error(view, "dlq:0:2", "r-old")
    before = view.query_all("SELECT Id FROM LogiSense_Request__c WHERE Started__c < 2026-01-01T00:00:00Z")
    assert [r["Id"] for r in before["records"]] == [old]
    linked = view.query_all(
        format_soql("SELECT Request_Id__c FROM LogiSense_Request__c WHERE Account__c = {}", account)
    )
    assert [r["Request_Id__c"] for r in linked["records"]] == ["r-old"]
    assert view.query("SELECT COUNT() FROM LogiSense_Request__c")["totalSize"] == 2
    nested = view.query_all(
        "SELECT Request_Id__c, (SELECT Dead_Letter_Id__c FROM Request_Error_Logs__r ORDER BY Dead_Letter_Id__c DESC) "
        "FROM LogiSense_Request__c ORDER BY Request_Id__c"
    )["records"]
    assert [r["Request_Id__c"] for r in nested] == ["r-new", "r-old"]
    assert nested[0]["Request_Error_Logs__r"] is None
    logs = nested[1]["Request_Error_Logs__r"]
    assert (logs["totalSize"], logs["done"]) == (2, True)
    assert [r["Dead_Letter_Id__c"] for r in logs["records"]] == ["dlq:0:2", "dlq:0:1"]
    assert logs["records"][0]["attributes"]["type"] == ERROR_OBJECT
    with pytest.raises(SalesforceMalformedRequest) as caught:
        view.query("SELECT Id, (SELECT Id FROM Nope__r) FROM LogiSense_Request__c")
    assert caught.value.content[0]["errorCode"] == "INVALID_TYPE"


def test_account_link_update_carries_the_client_tag(view: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """A collections update of the link fields with Sforce-Call-Options: client=sfls tags its change event."""
    account = view.Account.create({"Name": "Acme"})["id"]
    link = {
        "attributes": {"type": "Account"},
        "Id": account,
        ACCOUNT_LOGISENSE_ID: "42",
        ACCOUNT_SYNC_STATUS: "Synced",
        ACCOUNT_SYNC_REASON: None,
        ACCOUNT_LAST_SYNC: "2026-01-02T03:04:05Z",
    }
    results = view.restful(
        "composite/sobjects",
        method="PATCH",
        data=json.dumps({"allOrNone": True, "records": [link]}),
        headers={"Sforce-Call-Options": "client=sfls"},
    )
    assert results == [{"id": account, "success": True, "errors": []}]
    header = salesforce_emulator.events()[-1]["data"]["payload"]["ChangeEventHeader"]
    assert header["changeType"] == "UPDATE"
    assert header["changeOrigin"] == "com/salesforce/api/rest/62.0;client=sfls"
    assert {ACCOUNT_LOGISENSE_ID, ACCOUNT_SYNC_STATUS, ACCOUNT_LAST_SYNC} <= set(header["changedFields"])
    bad = {**link, ACCOUNT_SYNC_STATUS: "Maybe"}
    (refused,) = _collection(view, "PATCH", "composite/sobjects", [bad])
    assert refused["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_restrict_lookup_and_number_precision(view: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """A Restrict lookup refuses its parent's delete while children live; numbers beyond their precision fail."""
    spec = {
        "objects": [
            {
                "name": "Hold__c",
                "fields": [
                    {
                        "name": "Account__c",
                        "type": "reference",
                        "referenceTo": "Account",
                        "deleteConstraint": "Restrict",
                        "childRelationshipName": "Holds",
                    }
                ],
            }
        ]
    }
    salesforce_emulator.admin("POST", "schema", spec)
    account = view.Account.create({"Name": "Held"})["id"]
    hold = view.Hold__c.create({"Account__c": account})["id"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        view.Account.delete(account)
    assert caught.value.content[0]["errorCode"] == "DELETE_FAILED"
    assert view.Hold__c.get(hold)["Name"] == hold  # a custom record saved without a Name is named by its id
    view.Hold__c.delete(hold)
    assert view.Account.delete(account) == 204
    assert _request(view, "r-1", Duration_Seconds__c=1.23456)
    assert (
        view.query("SELECT Duration_Seconds__c FROM LogiSense_Request__c")["records"][0]["Duration_Seconds__c"] == 1.235
    )
    with pytest.raises(SalesforceMalformedRequest) as caught:
        view.LogiSense_Request__c.create({"Request_Id__c": "r-2", "Attempts__c": 1_000_000})
    assert caught.value.content[0] == {
        "errorCode": "NUMBER_OUTSIDE_VALID_RANGE",
        "message": "Attempts: value outside of valid range on numeric field: 1000000",
        "fields": ["Attempts__c"],
    }
