"""shared.salesforce.SalesforceRest: login, tagging, re-authentication, chunking and error mapping."""

from __future__ import annotations

import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from devstack.kafka import free_port
from shared.errors import ConfigError, PermanentError, RejectedError, TransientError
from shared.salesforce import SalesforceRest
from shared.salesforce_bulk import bulk_csv_value, bulk_result
from shared.salesforce_errors import RecordNotFoundError, map_error
from tests.fixtures.salesforce import SalesforceEmulator


@pytest.mark.integration
def test_writes_are_tagged_and_survive_session_expiry(salesforce_emulator: SalesforceEmulator) -> None:
    """After the session expires the client logs in again, retries once, and keeps its client tag."""
    rest = salesforce_emulator.rest(client_tag="sfls-test")
    account_id = rest.create("Account", {"Name": "Before"})
    salesforce_emulator.admin("POST", "sessions/expire")
    rest.update("Account", account_id, {"Name": "After"})
    origins = {e["data"]["payload"]["ChangeEventHeader"]["changeOrigin"] for e in salesforce_emulator.events()}
    assert origins == {"com/salesforce/api/rest/62.0;client=sfls-test"}
    assert rest.counts["token"] == 2
    assert rest.get("Account", account_id)["Name"] == "After"


@pytest.mark.integration
def test_query_by_ids_chunks_and_validates(salesforce_emulator: SalesforceEmulator) -> None:
    """Ids are de-duplicated, validated and queried chunk by chunk."""
    ids = salesforce_emulator.seed("Account", [{"Name": f"A{i}"} for i in range(25)])
    rest = salesforce_emulator.rest()
    rows = list(rest.query_by_ids("Account", ["Name"], [*ids, ids[0]], chunk_size=10))
    assert sorted(r["Id"] for r in rows) == sorted(ids)
    assert rest.counts["query"] == 3
    with pytest.raises(RejectedError):
        list(rest.query_by_ids("Account", ["Name"], ["001' OR Name != '"]))
    with pytest.raises(RejectedError):
        list(rest.query_by_ids("Account", ["Name FROM User --"], ids[:1]))


@pytest.mark.integration
def test_query_all_iter_pages_and_include_deleted(salesforce_emulator: SalesforceEmulator) -> None:
    """query_all_iter follows nextRecordsUrl; include_deleted sees deleted rows."""
    salesforce_emulator.seed("Contact", [{"LastName": f"L{i:04d}"} for i in range(2100)])
    rest = salesforce_emulator.rest()
    assert len(list(rest.query_all_iter("SELECT Id FROM Contact"))) == 2100
    assert rest.counts["query"] == 2
    contact_id = rest.query_all("SELECT Id FROM Contact WHERE LastName = 'L0001'")[0]["Id"]
    rest.delete("Contact", contact_id)
    deleted = rest.query_all("SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true", include_deleted=True)
    assert [r["Id"] for r in deleted] == [contact_id]


@pytest.mark.integration
def test_upsert_collection_batches_of_200(salesforce_emulator: SalesforceEmulator) -> None:
    """upsert_collection sends 200 records per call and returns one result per record."""
    rest = salesforce_emulator.rest()
    records = [{"LogiSense_Id__c": f"P{i}", "Name": f"Product {i}"} for i in range(450)]
    results = rest.upsert_collection("Product2", "LogiSense_Id__c", records)
    assert len(results) == 450
    assert all(r["created"] for r in results)
    again = rest.upsert_collection("Product2", "LogiSense_Id__c", records[:3])
    assert [r["created"] for r in again] == [False, False, False]
    assert rest.counts["composite"] == 4
    assert salesforce_emulator.counters()["composite"] == 4


@pytest.mark.integration
def test_bulk_upsert_lands_values_faithfully_and_reports_each_record(salesforce_emulator: SalesforceEmulator) -> None:
    """One Bulk API 2.0 job from a generator: results by external id, in the composite shape; nulls, booleans,
    numbers and text with commas, quotes and newlines land exactly as composite would write them."""
    rest = salesforce_emulator.rest(bulk_poll_seconds=0.05)
    rest.upsert_collection("Product2", "LogiSense_Id__c", [{"LogiSense_Id__c": "2", "Name": "Old", "Family": "Gold"}])
    text = 'one, "two"\nthree'
    records = [
        {"LogiSense_Id__c": "1", "Name": "New", "IsActive": True, "LogiSense_Price__c": 12.5, "Description": text},
        {"LogiSense_Id__c": "2", "Name": "Renamed", "IsActive": False, "LogiSense_Price__c": None, "Description": None},
        {"LogiSense_Id__c": "3", "Name": None, "IsActive": True, "LogiSense_Price__c": 1, "Description": ""},
    ]
    results = rest.bulk_upsert("Product2", "LogiSense_Id__c", (record for record in records))
    assert {key: r["success"] for key, r in results.items()} == {"1": True, "2": True, "3": False}
    assert (results["1"]["created"], results["2"]["created"]) == (True, False)
    assert results["3"]["errors"] == [
        {"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Name]", "fields": ["Name"]}
    ]
    stored = {r["LogiSense_Id__c"]: r for r in salesforce_emulator.records("Product2")}
    assert set(stored) == {"1", "2"}
    first = stored["1"]
    assert (first["IsActive"], first["LogiSense_Price__c"], first["Description"]) == (True, 12.5, text)
    assert (stored["2"]["Name"], stored["2"]["IsActive"], stored["2"]["Family"]) == ("Renamed", False, "Gold")
    assert rest.counts["bulk"] == 3  # the job (create, upload, close, poll), successful results, failed results


@pytest.mark.integration
def test_bulk_upsert_survives_session_expiry_and_reports_failed_jobs(salesforce_emulator: SalesforceEmulator) -> None:
    """An expired session logs in again and repeats the (idempotent) job; a job Salesforce fails raises
    PermanentError with the job's reason."""
    rest = salesforce_emulator.rest(bulk_poll_seconds=0.05)
    salesforce_emulator.admin("POST", "sessions/expire")
    results = rest.bulk_upsert("Product2", "LogiSense_Id__c", [{"LogiSense_Id__c": "9", "Name": "After expiry"}])
    assert results["9"]["success"] is True
    assert rest.counts["token"] == 2
    with pytest.raises(PermanentError, match="InvalidBatch : Field name not found : Nope__c"):
        rest.bulk_upsert("Product2", "LogiSense_Id__c", [{"LogiSense_Id__c": "10", "Name": "x", "Nope__c": 1}])
    uneven = [{"LogiSense_Id__c": "11", "Name": "a"}, {"LogiSense_Id__c": "12", "Name": "b", "Family": "c"}]
    with pytest.raises(RejectedError, match="found Family"):
        rest.bulk_upsert("Product2", "LogiSense_Id__c", uneven)


def test_bulk_csv_values_and_results() -> None:
    """CSV text for Bulk API values, and Bulk result rows in the composite result shape."""
    assert [bulk_csv_value(v) for v in (None, "", True, False, 3, 2.5, "x", ["a"])] == [
        "#N/A", "#N/A", "true", "false", "3", "2.5", "x", '["a"]'
    ]  # fmt: skip
    assert bulk_result({"sf__Id": "01t", "sf__Created": "true", "Name": "x"}) == {
        "success": True, "created": True, "id": "01t", "errors": []
    }  # fmt: skip
    failed = bulk_result({"sf__Id": "", "sf__Error": "FIELD_CUSTOM_VALIDATION_EXCEPTION:Price: must be > 0:--"})
    assert failed["errors"] == [
        {"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Price: must be > 0", "fields": []}
    ]
    bare = bulk_result({"sf__Id": "", "sf__Error": "UNKNOWN_EXCEPTION"})
    assert bare["errors"][0]["statusCode"] == "UNKNOWN_EXCEPTION"


@pytest.mark.integration
def test_single_upsert_quotes_the_external_id(salesforce_emulator: SalesforceEmulator) -> None:
    """upsert URL-quotes external ids that contain a slash or spaces."""
    rest = salesforce_emulator.rest()
    assert rest.upsert("Product2", "LogiSense_Id__c", "a/b c", {"Name": "Odd"}) is True
    assert rest.upsert("Product2", "LogiSense_Id__c", "a/b c", {"Name": "Odd 2"}) is False
    assert salesforce_emulator.records("Product2")[0]["LogiSense_Id__c"] == "a/b c"


@pytest.mark.integration
def test_describe_is_cached(salesforce_emulator: SalesforceEmulator) -> None:
    """describe calls Salesforce once per object."""
    rest = salesforce_emulator.rest()
    first = rest.describe("Contact")
    assert rest.describe("Contact") is first
    assert salesforce_emulator.counters()["describe"] == {"Contact": 1}


@pytest.mark.integration
def test_errors_map_to_sfls_errors(salesforce_emulator: SalesforceEmulator) -> None:
    """Salesforce 400 and 404 become RejectedError and RecordNotFoundError with the Salesforce message."""
    rest = salesforce_emulator.rest()
    with pytest.raises(RejectedError) as invalid:
        rest.create("Account", {"Name": "x", "Nope__c": 1})
    assert "INVALID_FIELD" in str(invalid.value)
    assert invalid.value.status == 400
    with pytest.raises(RecordNotFoundError):
        rest.get("Account", "001000000000000AAA")


@pytest.mark.integration
def test_refused_login_is_config_error_without_secrets(salesforce_emulator: SalesforceEmulator) -> None:
    """Wrong credentials raise ConfigError naming the settings to check, never the password."""
    settings = salesforce_emulator.settings(password="hunter2-secret")
    with pytest.raises(ConfigError) as caught:
        SalesforceRest(settings).login()
    message = str(caught.value)
    assert "invalid_grant" in message
    assert "SFLS_SALESFORCE__PASSWORD" in message
    assert "hunter2" not in message


@pytest.mark.integration
def test_refresh_token_login(salesforce_emulator: SalesforceEmulator) -> None:
    """auth=refresh_token logs in with the refresh-token grant."""
    rest = salesforce_emulator.rest(
        auth="refresh_token", refresh_token=salesforce_emulator.refresh_token(), password=""
    )
    assert rest.query_all("SELECT Id FROM User")[0]["Id"].startswith("005")


@pytest.mark.integration
def test_untrusted_certificate_is_config_error(salesforce_emulator: SalesforceEmulator) -> None:
    """Without the emulator's CA, TLS verification fails and says which setting fixes it."""
    settings = salesforce_emulator.settings(ca_file=None)
    client = SalesforceRest(settings)
    client.session.trust_env = False
    with pytest.raises(ConfigError) as caught:
        client.login()
    client.close()
    assert "SFLS_SALESFORCE__CA_FILE" in str(caught.value)


@pytest.mark.integration
def test_connection_refused_is_transient(salesforce_emulator: SalesforceEmulator) -> None:
    """No server listening is a TransientError (retried later), not a crash."""
    client = SalesforceRest(salesforce_emulator.settings(instance_url=f"https://localhost:{free_port()}"))
    with pytest.raises(TransientError):
        client.login()
    client.close()


def test_map_error_table() -> None:
    """5xx and REQUEST_LIMIT_EXCEEDED are transient; other refusals permanent; timeouts transient."""
    server = map_error(
        SalesforceGeneralError("u", 503, "query", [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}]), "q"
    )
    assert isinstance(server, TransientError)
    assert server.status == 503
    limit = map_error(
        SalesforceRefusedRequest("u", 403, "q", [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "m"}]), "q"
    )
    assert isinstance(limit, TransientError)
    assert limit.retry_after == 60.0
    refused = map_error(
        SalesforceRefusedRequest("u", 403, "q", [{"errorCode": "INSUFFICIENT_ACCESS", "message": "m"}]), "q"
    )
    assert isinstance(refused, PermanentError)
    malformed = map_error(
        SalesforceMalformedRequest("u", 400, "q", [{"errorCode": "MALFORMED_QUERY", "message": "bad"}]), "q"
    )
    assert isinstance(malformed, RejectedError)
    assert "MALFORMED_QUERY: bad" in str(malformed)
    assert isinstance(map_error(requests.Timeout(), "q"), TransientError)
