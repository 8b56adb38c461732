"""simple-salesforce's Bulk API 2.0 query client (`sf.bulk2.<Object>.query`), unmodified, against the emulator."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.bulk2 import ColumnDelimiter, LineEnding
from simple_salesforce.exceptions import SalesforceOperationError

from tests.fixtures.salesforce import SalesforceEmulator
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
POLL = 0  # simple-salesforce's `wait`: its first sleep and the base of its polling interval


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _job_url(sf: Salesforce, job_id: str = "") -> str:
    return f"{sf.bulk2_url}query/{job_id}".rstrip("/")


def _raw(sf: Salesforce, method: str, url: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {sf.session_id}", **kwargs.pop("headers", {})}
    return sf.session.request(method, url, headers=headers, timeout=10, **kwargs)


def _create(sf: Salesforce, soql: str, operation: str = "query") -> dict[str, Any]:
    response = _raw(sf, "POST", _job_url(sf), json={"operation": operation, "query": soql})
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def _state(sf: Salesforce, job_id: str) -> str:
    return str(_raw(sf, "GET", _job_url(sf, job_id)).json()["state"])


def test_pages_of_max_records_hold_every_row_once(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """2,500 accounts with maxRecords=1000: three CSV pages (1000, 1000, 500), each with the header."""
    ids = salesforce_emulator.seed("Account", [{"Name": f"Account {i:04d}"} for i in range(2500)])
    before = salesforce_emulator.counters()
    pages = list(sf.bulk2.Account.query("SELECT Id, Name FROM Account", max_records=1000, wait=POLL))
    assert [len(_rows(page)) for page in pages] == [1000, 1000, 500]
    assert all(page.startswith('"Id","Name"\n') for page in pages)
    seen = [row["Id"] for page in pages for row in _rows(page)]
    assert sorted(seen) == sorted(ids)
    names = {row["Id"]: row["Name"] for page in pages for row in _rows(page)}
    assert names[ids[7]] == "Account 0007"
    after = salesforce_emulator.counters()
    assert after["bulk_query"] - before["bulk_query"] >= 5  # create, one poll at least, three pages
    assert after["bulk"] == before["bulk"]


def test_raw_paging_headers_and_default_page_size(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """Sforce-Locator names the next page (`null` on the last), Sforce-NumberOfRecords counts this one."""
    salesforce_emulator.seed("Account", [{"Name": f"A{i}"} for i in range(5)])
    job = _create(sf, "SELECT Name FROM Account ORDER BY Name")
    assert job["state"] == "UploadComplete"
    assert (job["object"], job["operation"], job["contentType"], job["apiVersion"]) == ("Account", "query", "CSV", 62.0)
    assert job["id"].startswith("750")
    wait_until(lambda: _state(sf, job["id"]), 10, "the job to complete", until=lambda s: s == "JobComplete", every=0.02)
    first = _raw(sf, "GET", _job_url(sf, job["id"]) + "/results", params={"maxRecords": 2})
    assert first.headers["Content-Type"].startswith("text/csv")
    assert first.headers["Sforce-NumberOfRecords"] == "2"
    assert first.text == '"Name"\n"A0"\n"A1"\n'
    locator = first.headers["Sforce-Locator"]
    assert locator not in ("", "null")
    again = _raw(sf, "GET", _job_url(sf, job["id"]) + "/results", params={"maxRecords": 2, "locator": locator})
    assert again.text == '"Name"\n"A2"\n"A3"\n'
    everything = _raw(sf, "GET", _job_url(sf, job["id"]) + "/results")  # the default page holds all five
    assert (everything.headers["Sforce-Locator"], everything.headers["Sforce-NumberOfRecords"]) == ("null", "5")
    info = _raw(sf, "GET", _job_url(sf, job["id"])).json()
    assert (info["numberRecordsProcessed"], info["jobType"], info["retries"]) == (5, "V2Query", 0)
    bad = _raw(sf, "GET", _job_url(sf, job["id"]) + "/results", params={"locator": "not-a-locator"})
    assert bad.status_code == 400


def test_query_all_includes_deleted_rows(sf: Salesforce) -> None:
    """queryAll returns a deleted record with IsDeleted true; query leaves it out."""
    kept = sf.Account.create({"Name": "Kept"})["id"]
    gone = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(gone)
    soql = "SELECT Id, IsDeleted FROM Account"
    live = [row for page in sf.bulk2.Account.query(soql, wait=POLL) for row in _rows(page)]
    assert live == [{"Id": kept, "IsDeleted": "false"}]
    everything = [row for page in sf.bulk2.Account.query_all(soql, wait=POLL) for row in _rows(page)]
    assert {row["Id"]: row["IsDeleted"] for row in everything} == {kept: "false", gone: "true"}


def test_relationship_columns_nulls_booleans_and_datetimes(sf: Salesforce) -> None:
    """`Account.Name` as written in the select list; a contact without account and a null field stay empty."""
    account = sf.Account.create({"Name": 'Acme "Quoted", Inc'})["id"]
    with_account = sf.Contact.create({"LastName": "Doe", "AccountId": account})["id"]
    orphan = sf.Contact.create({"LastName": "Roe"})["id"]
    (page,) = sf.bulk2.Contact.query("SELECT Id, Account.Name, Email, CreatedDate FROM Contact", wait=POLL)
    header, *lines = page.splitlines()
    assert header == '"Id","Account.Name","Email","CreatedDate"'
    rows = {row["Id"]: row for row in _rows(page)}
    assert rows[with_account]["Account.Name"] == 'Acme "Quoted", Inc'
    assert rows[orphan]["Account.Name"] == ""
    assert rows[orphan]["Email"] == ""
    assert any(line.endswith(',,"' + rows[orphan]["CreatedDate"] + '"') for line in lines)  # nulls: empty, unquoted
    rest = sf.Contact.get(orphan)
    assert rows[orphan]["CreatedDate"] == rest["CreatedDate"]
    sf.Product2.create({"Name": "Widget", "IsActive": True})
    (products,) = sf.bulk2.Product2.query("SELECT Name, IsActive FROM Product2", wait=POLL)
    assert _rows(products) == [{"Name": "Widget", "IsActive": "true"}]


def test_download_writes_each_page_to_a_file(
    sf: Salesforce, salesforce_emulator: SalesforceEmulator, tmp_path: Path
) -> None:
    """`download` streams the pages into files, with the locator and count of each."""
    salesforce_emulator.seed("Account", [{"Name": f"D{i}"} for i in range(3)])
    results = sf.bulk2.Account.download("SELECT Name FROM Account", str(tmp_path), max_records=2, wait=POLL)
    assert [r["number_of_records"] for r in results] == [2, 1]
    assert results[-1]["locator"] == ""
    names = [row["Name"] for r in results for row in _rows(Path(r["file"]).read_text(encoding="utf-8"))]
    assert sorted(names) == ["D0", "D1", "D2"]


def test_a_query_the_engine_refuses_is_refused_at_creation(sf: Salesforce) -> None:
    """Unknown fields, unknown objects, syntax errors and COUNT() answer 400 INVALIDJOB; no job is made."""
    for soql in (
        "SELECT Nope__c FROM Account",
        "SELECT Id FROM Nowhere",
        "SELECT FROM Account",
        "SELECT COUNT() FROM Account",
    ):
        refused = _raw(sf, "POST", _job_url(sf), json={"operation": "query", "query": soql})
        assert refused.status_code == 400, soql
        (error,) = refused.json()
        assert error["errorCode"] == "INVALIDJOB"
        assert error["message"].startswith("Failed to process query: ")
    assert (
        "No such column 'Nope__c'"
        in _raw(sf, "POST", _job_url(sf), json={"operation": "query", "query": "SELECT Nope__c FROM Account"}).json()[
            0
        ]["message"]
    )
    bad_operation = _raw(sf, "POST", _job_url(sf), json={"operation": "insert", "query": "SELECT Id FROM Account"})
    assert bad_operation.json()[0]["errorCode"] == "INVALIDJOB"
    assert _raw(sf, "GET", _job_url(sf)).json()["records"] == []


def test_a_compound_field_fails_the_job(sf: Salesforce) -> None:
    """Selecting an address fails the job as Salesforce does; simple-salesforce raises with the reason."""
    with pytest.raises(SalesforceOperationError, match="Selecting compound data not supported in Bulk Query"):
        list(sf.bulk2.Account.query("SELECT Id, BillingAddress FROM Account", wait=POLL))


def test_results_abort_and_delete_of_a_running_job(sf: Salesforce, salesforce_emulator: SalesforceEmulator) -> None:
    """While InProgress: results 412 JOB_NOT_COMPLETE, delete 400; abort works, then delete removes the job."""
    salesforce_emulator.tune(bulk_query_delay_ms=60_000)
    job = _create(sf, "SELECT Id FROM Account")
    wait_until(lambda: _state(sf, job["id"]), 10, "the job to run", until=lambda s: s == "InProgress", every=0.02)
    early = _raw(sf, "GET", _job_url(sf, job["id"]) + "/results")
    assert early.status_code == 412
    assert early.json()[0]["errorCode"] == "JOB_NOT_COMPLETE"
    refused = _raw(sf, "DELETE", _job_url(sf, job["id"]))
    assert refused.status_code == 400
    assert refused.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    aborted = _raw(sf, "PATCH", _job_url(sf, job["id"]), json={"state": "Aborted"})
    assert aborted.json()["state"] == "Aborted"
    assert _state(sf, job["id"]) == "Aborted"
    assert _raw(sf, "PATCH", _job_url(sf, job["id"]), json={"state": "Aborted"}).status_code == 400
    assert _raw(sf, "GET", _job_url(sf, job["id"]) + "/results").status_code == 412
    assert _raw(sf, "DELETE", _job_url(sf, job["id"])).status_code == 204
    gone = _raw(sf, "GET", _job_url(sf, job["id"]))
    assert gone.status_code == 404


def test_unknown_jobs_the_list_and_sessions(sf: Salesforce) -> None:
    """Unknown job 404 NOT_FOUND; the list holds query jobs only; no session 401; ingest and query stay apart."""
    unknown = _raw(sf, "GET", _job_url(sf, "750000000000000AAA"))
    assert unknown.status_code == 404
    assert unknown.json()[0]["errorCode"] == "NOT_FOUND"
    assert _raw(sf, "GET", _job_url(sf, "750000000000000AAA") + "/results").status_code == 404
    first = _create(sf, "SELECT Id FROM Account")
    second = _create(sf, "SELECT Id FROM Contact", operation="queryAll")
    listed = _raw(sf, "GET", _job_url(sf)).json()
    assert listed["done"] is True
    assert listed["nextRecordsUrl"] is None
    assert {j["id"]: j["operation"] for j in listed["records"]} == {first["id"]: "query", second["id"]: "queryAll"}
    assert _raw(sf, "GET", f"{sf.bulk2_url}ingest").json()["records"] == []
    assert _raw(sf, "GET", f"{sf.bulk2_url}ingest/{first['id']}").status_code == 404
    assert sf.session.get(_job_url(sf), timeout=10).status_code == 401


def test_column_delimiter_and_line_ending_of_the_job(sf: Salesforce) -> None:
    """PIPE and CRLF, as the job asked, in the header and every row."""
    sf.Account.create({"Name": "Pipe|Co"})
    pages = sf.bulk2.Account.query(
        "SELECT Name, Phone FROM Account", column_delimiter=ColumnDelimiter.PIPE, line_ending=LineEnding.CRLF, wait=POLL
    )
    assert list(pages) == ['"Name"|"Phone"\r\n"Pipe|Co"|\r\n']
