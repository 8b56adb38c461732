"""The emulator's admin API, malformed requests, latency, counters and the standalone process."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from devstack.salesforce.__main__ import parse_args
from tests.fixtures.salesforce import SalesforceEmulator, SalesforceProcess

pytestmark = pytest.mark.integration


def _rest_url(emulator: SalesforceEmulator, path: str) -> str:
    return f"{emulator.instance_url}/services/data/v62.0/{path}"


def _auth(emulator: SalesforceEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulator.rest().sf.session_id}"}


def test_health_and_reset(salesforce_emulator: SalesforceEmulator) -> None:
    """health answers ok; reset clears records, events and counters."""
    assert salesforce_emulator.admin("GET", "health") == {"status": "ok"}
    salesforce_emulator.rest().create("Account", {"Name": "Temp"})
    salesforce_emulator.admin("POST", "reset")
    assert salesforce_emulator.records("Account") == []
    assert salesforce_emulator.events() == []
    assert salesforce_emulator.counters()["total"] == 0


def test_admin_records_keep_given_ids_without_cdc(salesforce_emulator: SalesforceEmulator) -> None:
    """Seeded records keep their Ids, are queryable and produce no change event."""
    given = "001000000000042AAA"
    ids = salesforce_emulator.seed("Account", [{"Id": given, "Name": "Seeded"}, {"Name": "Generated"}])
    assert ids[0] == given
    assert ids[1].startswith("001")
    rows = salesforce_emulator.rest().query_all("SELECT Id, Name FROM Account ORDER BY Name")
    assert [r["Name"] for r in rows] == ["Generated", "Seeded"]
    assert salesforce_emulator.events() == []


def test_counters_by_kind(salesforce_emulator: SalesforceEmulator) -> None:
    """Counters split API calls into token, query, sObject reads/writes by object, describe, composite."""
    rest = salesforce_emulator.rest()
    account_id = rest.create("Account", {"Name": "Counted"})
    rest.get("Account", account_id)
    rest.query_all("SELECT Id FROM Account")
    rest.describe("Account")
    rest.describe("Account")
    rest.upsert_collection("Contact", "LogiSense_Id__c", [{"LogiSense_Id__c": "c1", "LastName": "X"}])
    counters = salesforce_emulator.counters()
    assert counters["token"] == 1
    assert counters["query"] == 1
    assert counters["sobject_write"] == {"Account": 1, "Contact": 1}
    assert counters["sobject_read"] == {"Account": 1}
    assert counters["describe"] == {"Account": 1}
    assert counters["composite"] == 1
    assert counters["total"] == 5


def test_latency_injection(salesforce_emulator: SalesforceEmulator) -> None:
    """Injected latency delays REST calls but not the admin API."""
    rest = salesforce_emulator.rest()
    salesforce_emulator.admin("POST", "latency", {"ms": 300})
    started = time.monotonic()
    rest.query_all("SELECT Id FROM Account")
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    salesforce_emulator.admin("GET", "counters")
    assert time.monotonic() - started < 0.3


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "sobjects/Account", b"{not json", 400, "JSON_PARSER_ERROR"),
        ("POST", "sobjects/Account", b"[1,2]", 400, "JSON_PARSER_ERROR"),
        ("POST", "sobjects/Account", b'{"Name": {"nested": 1}}', 400, "JSON_PARSER_ERROR"),
        ("POST", "sobjects/Account", b'{"Name": "x", "IsDeleted": true}', 400, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ("POST", "sobjects/Account", b"{}", 400, "REQUIRED_FIELD_MISSING"),
        ("GET", "sobjects/Nope/describe", None, 404, "NOT_FOUND"),
        ("GET", "sobjects/Account/not-an-id", None, 404, "NOT_FOUND"),
        ("PATCH", "sobjects/Account/001000000000000AAA", b'{"Name": "x"}', 404, "NOT_FOUND"),
        ("PATCH", "sobjects/Account/Name/x", b'{"Name": "x"}', 404, "NOT_FOUND"),
        ("GET", "query", None, 400, "MALFORMED_QUERY"),
        ("GET", "query/01gdoesnotexist-2000", None, 400, "INVALID_QUERY_LOCATOR"),
        ("GET", "no/such/resource", None, 404, "NOT_FOUND"),
        ("PUT", "sobjects/Account/001000000000000AAA", b"{}", 405, "METHOD_NOT_ALLOWED"),
        ("POST", "composite/sobjects", b'{"records": [{"Name": "no type"}]}', 200, None),
    ],
)
def test_malformed_requests_get_salesforce_errors(
    salesforce_emulator: SalesforceEmulator, method: str, path: str, body: bytes | None, status: int, code: str | None
) -> None:
    """Malformed requests get Salesforce's JSON error list (or per-record errors), never a traceback."""
    response = salesforce_emulator.http.request(
        method,
        _rest_url(salesforce_emulator, path),
        data=body,
        headers={**_auth(salesforce_emulator), "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == status
    assert "Traceback" not in response.text
    payload = response.json()
    if code is None:
        assert payload[0]["success"] is False
        assert payload[0]["errors"][0]["statusCode"] == "INVALID_TYPE"
    else:
        assert payload[0]["errorCode"] == code
        assert isinstance(payload[0]["message"], str)


def test_missing_token_is_invalid_session(salesforce_emulator: SalesforceEmulator) -> None:
    """A REST call without a bearer token gets 401 INVALID_SESSION_ID."""
    response = salesforce_emulator.http.get(_rest_url(salesforce_emulator, "sobjects"), timeout=10)
    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_token_lifetime(salesforce_emulator: SalesforceEmulator) -> None:
    """Access tokens expire after token_ttl_seconds."""
    salesforce_emulator.tune(token_ttl_seconds=0.2)
    headers = _auth(salesforce_emulator)
    assert salesforce_emulator.http.get(_rest_url(salesforce_emulator, "limits"), headers=headers, timeout=10).ok
    time.sleep(0.3)
    expired = salesforce_emulator.http.get(_rest_url(salesforce_emulator, "limits"), headers=headers, timeout=10)
    assert expired.status_code == 401


def test_bad_admin_requests(salesforce_emulator: SalesforceEmulator) -> None:
    """Admin errors are JSON with an error message."""
    url = salesforce_emulator.admin_url
    bad = salesforce_emulator.http.post(f"{url}/cdc/gap", json={"entity": "Account"}, timeout=10)
    assert bad.status_code == 400
    assert "changeType" in bad.json()["error"] or "recordIds" in bad.json()["error"]
    unknown = salesforce_emulator.http.post(f"{url}/settings", json={"nope": 1}, timeout=10)
    assert unknown.status_code == 400
    missing = salesforce_emulator.http.get(f"{url}/nothing-here", timeout=10)
    assert missing.status_code == 404


def test_cli_help_lists_stack_flags() -> None:
    """The command line takes the flags devstack/stack.py passes, plus tuning flags."""
    args = parse_args(["--client-id", "a", "--client-secret", "b", "--username", "c", "--password", "d"])
    assert (args.host, args.port, args.token_ttl_seconds, args.cometd_timeout_ms) == ("127.0.0.1", 8443, 7200.0, 110000)


def test_standalone_process_serves_and_stops(salesforce_process: Callable[..., SalesforceProcess]) -> None:
    """`python -m devstack.salesforce` serves HTTPS on localhost and exits cleanly on SIGTERM."""
    emulator = salesforce_process()
    account_id = emulator.rest().create("Account", {"Name": "In a process"})
    assert emulator.records("Account")[0]["Id"] == account_id
    assert emulator.process is not None
    emulator.stop()
    assert emulator.process.returncode == 0
