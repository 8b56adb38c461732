"""simple-salesforce's Bulk API 2.0 client (`sf.bulk2`), unmodified, against the emulator's ingest jobs."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import pytest
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceOperationError, SalesforceResourceNotFound

from devstack.salesforce import bulk
from tests.fixtures.salesforce import SalesforceEmulator

pytestmark = pytest.mark.integration
POLL = 0.05  # simple-salesforce's `wait`: its first sleep and the base of its polling interval


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _job_url(sf: Salesforce, job_id: str = "") -> str:
    return f"{sf.bulk2_url}ingest/{job_id}".rstrip("/")


def _raw(sf: Salesforce, method: str, url: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {sf.session_id}", **kwargs.pop("headers", {})}
    return sf.session.request(method, url, headers=headers, timeout=10, **kwargs)


def test_upsert_creates_updates_and_reports_failed_rows(
    sf: Salesforce, salesforce_emulator: SalesforceEmulator
) -> None:
    """One job: an existing record updated, a new one created, a row without its required Name failed."""
    existing = sf.Account.create({"Name": "Old name", "LogiSense_Id__c": "1"})["id"]
    records = [
        {"LogiSense_Id__c": "1", "Name": "New name"},
        {"LogiSense_Id__c": "2", "Name": "Created"},
        {"LogiSense_Id__c": "3", "Name": "#N/A"},
    ]
    before = salesforce_emulator.counters()
    (summary,) = sf.bulk2.Account.upsert(records=records, external_id_field="LogiSense_Id__c", wait=POLL)
    assert summary["numberRecordsTotal"] == 3
    assert summary["numberRecordsProcessed"] == 3
    assert summary["numberRecordsFailed"] == 1
    job_id = str(summary["job_id"])
    assert job_id.startswith("750")

    successful = {row["LogiSense_Id__c"]: row for row in _rows(sf.bulk2.Account.get_successful_records(job_id))}
    assert successful["1"]["sf__Id"] == existing
    assert successful["1"]["sf__Created"] == "false"
    assert successful["2"]["sf__Created"] == "true"
    (failed,) = _rows(sf.bulk2.Account.get_failed_records(job_id))
    assert failed["LogiSense_Id__c"] == "3"
    assert failed["sf__Error"] == "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
    assert _rows(sf.bulk2.Account.get_unprocessed_records(job_id)) == []

    rows = sf.query_all("SELECT Name, LogiSense_Id__c FROM Account")["records"]
    names = {r["LogiSense_Id__c"]: r["Name"] for r in rows}
    assert names == {"1": "New name", "2": "Created"}
    after = salesforce_emulator.counters()
    assert after["sobject_write"]["Account"] - before["sobject_write"].get("Account", 0) == 3
    assert after["bulk"] - before["bulk"] >= 5  # create, upload, close, poll, info (+ the three result reads)


def test_empty_value_keeps_a_field_and_na_clears_it(sf: Salesforce) -> None:
    """Bulk CSV: an empty value leaves the field as it is; #N/A sets it to null."""
    account = sf.Account.create({"Name": "Acme", "BillingCity": "Paris", "Type": "Customer"})["id"]
    (summary,) = sf.bulk2.Account.update(records=[{"Id": account, "BillingCity": "", "Type": "#N/A"}], wait=POLL)
    assert summary["numberRecordsFailed"] == 0
    record = sf.Account.get(account)
    assert record["BillingCity"] == "Paris"
    assert record["Type"] is None


def test_writes_emit_change_events_per_chunk_with_the_bulk_origin(
    sf: Salesforce, salesforce_emulator: SalesforceEmulator
) -> None:
    """250 inserted rows are two transactions (200 + 50), each a CDC commit tagged com/salesforce/api/bulkapi."""
    sf.session.headers["Sforce-Call-Options"] = "client=bulk-test"
    records = [{"Name": f"Bulk {i}"} for i in range(250)]
    (summary,) = sf.bulk2.Account.insert(records=records, wait=POLL)
    assert summary["numberRecordsProcessed"] == 250
    headers = [e["data"]["payload"]["ChangeEventHeader"] for e in salesforce_emulator.events()]
    creates = [h for h in headers if h["changeType"] == "CREATE" and h["entityName"] == "Account"]
    assert {h["changeOrigin"] for h in creates} == {"com/salesforce/api/bulkapi/62.0;client=bulk-test"}
    assert sum(len(h["recordIds"]) for h in creates) == 250
    assert len({h["transactionKey"] for h in creates}) == 2


def test_relationship_column_sets_a_lookup_by_external_id(sf: Salesforce) -> None:
    """`Account.LogiSense_Id__c` resolves the parent; an unknown parent fails only its row."""
    parent = sf.Account.create({"Name": "Parent", "LogiSense_Id__c": "P1"})["id"]
    rows = [
        {"LastName": "Known", "Account.LogiSense_Id__c": "P1"},
        {"LastName": "Orphan", "Account.LogiSense_Id__c": "P404"},
    ]
    (summary,) = sf.bulk2.Contact.insert(records=rows, wait=POLL)
    assert summary["numberRecordsFailed"] == 1
    (failed,) = _rows(sf.bulk2.Contact.get_failed_records(summary["job_id"]))
    assert failed["LastName"] == "Orphan"
    assert "Foreign key external ID: P404 not found for field LogiSense_Id__c in entity Account" in failed["sf__Error"]
    (contact,) = sf.query("SELECT AccountId FROM Contact")["records"]
    assert contact["AccountId"] == parent


def test_unknown_column_fails_the_whole_job(sf: Salesforce) -> None:
    """A header naming a field the object lacks fails the job, and simple-salesforce raises with the reason."""
    with pytest.raises(SalesforceOperationError, match="InvalidBatch : Field name not found : Nope__c"):
        sf.bulk2.Account.insert(records=[{"Name": "A", "Nope__c": "x"}], wait=POLL)
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0


def test_abort_leaves_the_rest_unprocessed(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """A running job aborted after its first chunks: processed rows stay, the others are unprocessed."""
    salesforce_emulator.tune(bulk_chunk_delay_ms=100)
    job = _raw(sf, "POST", _job_url(sf), json={"object": "Account", "operation": "insert"}).json()
    assert job["state"] == "Open"
    data = "Name\n" + "".join(f"Row {i}\n" for i in range(1000))
    upload = _raw(sf, "PUT", _job_url(sf, job["id"]) + "/batches", data=data, headers={"Content-Type": "text/csv"})
    assert upload.status_code == 201
    closed = _raw(sf, "PATCH", _job_url(sf, job["id"]), json={"state": "UploadComplete"}).json()
    assert closed["state"] == "UploadComplete"
    deadline = time.monotonic() + 10
    while (info := _raw(sf, "GET", _job_url(sf, job["id"])).json())["numberRecordsProcessed"] == 0:
        assert time.monotonic() < deadline, info
        time.sleep(0.02)
    assert info["state"] == "InProgress"
    refused = _raw(sf, "DELETE", _job_url(sf, job["id"]))
    assert refused.status_code == 400
    assert refused.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    assert _raw(sf, "PATCH", _job_url(sf, job["id"]), json={"state": "Aborted"}).json()["state"] == "Aborted"
    time.sleep(0.3)
    info = _raw(sf, "GET", _job_url(sf, job["id"])).json()
    processed = info["numberRecordsProcessed"]
    assert 0 < processed < 1000
    unprocessed = _rows(sf.bulk2.Account.get_unprocessed_records(job["id"]))
    assert len(unprocessed) == 1000 - processed
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == processed
    assert _raw(sf, "DELETE", _job_url(sf, job["id"])).status_code == 204


def test_an_internal_error_fails_the_job_instead_of_hanging_it(sf: Salesforce, monkeypatch: pytest.MonkeyPatch) -> None:
    """A defect while processing (provoked here) ends the job as Failed, so a polling client is not stuck."""

    def broken(*_args: Any) -> None:
        raise RuntimeError("provoked")

    monkeypatch.setattr(bulk, "plan_row", broken)
    with pytest.raises(SalesforceOperationError, match="UNKNOWN_EXCEPTION"):
        sf.bulk2.Account.insert(records=[{"Name": "A"}], wait=POLL)


def test_job_errors_in_salesforce_shapes(sf: Salesforce) -> None:
    """Bad job definitions, uploads to a closed job, unknown jobs and missing sessions are refused."""
    bad = _raw(sf, "POST", _job_url(sf), json={"object": "Account", "operation": "merge"})
    assert bad.status_code == 400
    assert bad.json()[0]["errorCode"] == "INVALIDJOB"
    no_key = _raw(sf, "POST", _job_url(sf), json={"object": "Account", "operation": "upsert"})
    assert "externalIdFieldName" in no_key.json()[0]["message"]
    job = _raw(sf, "POST", _job_url(sf), json={"object": "Account", "operation": "insert"}).json()
    _raw(sf, "PUT", _job_url(sf, job["id"]) + "/batches", data="Name\nA\n", headers={"Content-Type": "text/csv"})
    _raw(sf, "PATCH", _job_url(sf, job["id"]), json={"state": "UploadComplete"})
    late = _raw(sf, "PUT", _job_url(sf, job["id"]) + "/batches", data="Name\nB\n", headers={"Content-Type": "text/csv"})
    assert late.status_code == 409
    assert late.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    listed = _raw(sf, "GET", _job_url(sf)).json()
    assert [j["id"] for j in listed["records"]] == [job["id"]]
    unknown = _raw(sf, "GET", _job_url(sf, "750000000000000AAA"))
    assert unknown.status_code == 404
    assert unknown.json()[0]["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound):
        sf.bulk2.Account.get_failed_records("750000000000000AAA")
    anonymous = sf.session.get(_job_url(sf), timeout=10)
    assert anonymous.status_code == 401
