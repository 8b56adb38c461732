"""The LogiSense emulator driven through sfls's own client: resources, envelopes, validation, search."""

from __future__ import annotations

import contextlib
import signal
import ssl
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.kafka import free_port
from devstack.logisense import seed
from devstack.logisense.resources import RESOURCES
from shared.errors import PermanentError, RejectedError
from shared.logisense_wire import Condition
from tests.fixtures.logisense import LogisenseEmulator

pytestmark = pytest.mark.integration

ACCOUNT = {"name": "Acme Corp", "accountTypeId": 1, "accountStatusTypeId": 1, "billGroupId": 1, "currencyId": 1}


def raw(emu: LogisenseEmulator, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request with a fresh token, without the client's error mapping."""
    with httpx.Client(verify=ssl.create_default_context(cafile=emu.ca_file), trust_env=False) as http:
        login = http.post(
            f"{emu.base_url}/AuthorizationServer/api/v10/Access/Login",
            data={
                "grant_type": "password",
                "client_id": emu.client_id,
                "username": emu.username,
                "password": emu.password,
            },
        )
        token = login.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return http.request(method, f"{emu.base_url}/ResourceServer/api/v10/{path}", headers=headers, **kwargs)


async def test_reference_data_is_seeded(logisense_emulator: LogisenseEmulator) -> None:
    """Reference data carries a Closed status, the link contact point on every contact type, and *Name partners."""
    async with logisense_emulator.client() as client:
        statuses = {s["name"] for s in await client.list("Account/StatusType")}
        contact_types = await client.list("ContactType")
        points = await client.list("ContactPointType")
        states = await client.list("State")
        currencies = await client.list("Owner/Currency")
        shares = await client.list("Usage/Bucket/ShareLevel")
    assert {"Active", "Closed"} <= statuses
    for contact_type in contact_types:
        names = {p["name"] for p in points if p["contactTypeId"] == contact_type["identity"]}
        assert names == {"email", "phone", "address", "sfdcid"}
    assert all(s["countryName"] for s in states)
    assert {c["currencyName"] for c in currencies} >= {"US Dollars", "Canadian Dollars"}
    assert [s["name"] for s in shares] == ["Account", "Invoice Recipient"]


async def test_account_crud_round_trip(logisense_emulator: LogisenseEmulator) -> None:
    """Create answers the instance with partner names; PUT is partial; PATCH and GET agree; DELETE cascades."""
    async with logisense_emulator.client() as client:
        created = await client.create("Account", {**ACCOUNT, "sfdcid": "001000000000001AAA", "ownerName": "ignored"})
        identity = created["identity"]
        assert created["accountTypeName"] == "Customer"
        assert created["ownerId"] == 1
        assert created["ownerName"] == "sfls Devstack Billing"
        updated = await client.update("Account", identity, {"name": "Acme Renamed"})
        assert updated["name"] == "Acme Renamed"
        assert updated["sfdcid"] == "001000000000001AAA"
        patched = await client.patch("Account", identity, {"accountStatusTypeId": 3})
        assert patched["accountStatusTypeName"] == "Closed"
        assert (await client.get("Account", identity))["name"] == "Acme Renamed"
        contact = await client.create("Contact", {"accountId": identity, "contactTypeId": 1, "firstName": "Jane"})
        await client.create(
            "Contact/Point", {"contactId": contact["identity"], "contactPointTypeId": 1, "value": "j@x.io"}
        )
        deleted = await client.delete("Account", identity)
        assert [(i.get("dtoTypeKey"), i["action"]) for i in deleted] == [
            ("account", "deleted"),
            ("contact", "deleted"),
            ("contactPoint", "deleted"),
        ]
        with pytest.raises(PermanentError, match="404"):
            await client.get("Account", identity)
    assert logisense_emulator.accounts() == []


async def test_patch_creates_contacts_with_points_in_one_transaction(logisense_emulator: LogisenseEmulator) -> None:
    """PATCH with child arrays adds contacts and points; a bad child rolls the whole request back."""
    async with logisense_emulator.client() as client:
        account = await client.create("Account", ACCOUNT)
        body = {
            "name": "With Contacts",
            "contacts": [
                {
                    "contactTypeId": 1,
                    "firstName": "Ann",
                    "lastName": "Lee",
                    "contactPoints": [{"contactPointTypeId": 4, "value": "003000000000001AAA"}],
                }
            ],
        }
        await client.patch("Account", account["identity"], body)
        bad = {"name": "Never", "contacts": [{"contactTypeId": 999, "firstName": "X"}]}
        with pytest.raises(RejectedError, match="ContactTypeId"):
            await client.patch("Account", account["identity"], bad)
    [stored] = logisense_emulator.accounts()
    assert stored["name"] == "With Contacts"
    [contact] = stored["contacts"]
    assert contact["name"] == "Ann Lee"
    assert [(p["contactPointTypeName"], p["value"]) for p in contact["contactPoints"]] == [
        ("sfdcid", "003000000000001AAA")
    ]


async def test_validation_gathers_every_error(logisense_emulator: LogisenseEmulator) -> None:
    """Unknown custom field, missing name, wrong reference id and a range error come back together."""
    response = raw(
        logisense_emulator,
        "POST",
        "Account",
        json={"accountTypeId": 999, "billDay": 45, "region": "West"},
    )
    assert response.status_code == 400
    body = response.json()
    codes = [e["code"] for e in body["errors"]]
    assert body["type"] == "create"
    assert body["trackingId"]
    assert codes == [10700000, 10400000, 13100000, 11900000, 2000]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**ACCOUNT, "region": "West"}, "'region' is not a field or custom field of 'Account'"),
        ({"accountTypeId": 1}, "'Name' is required for 'Account'"),
        ({**ACCOUNT, "billGroupId": 77}, "'BillGroupId' (77) does not exist in 'BillGroup'"),
        ({**ACCOUNT, "invoicerAccountId": 1, "usageInvoicerAccountId": 2}, "usage and subscription invoices"),
    ],
)
async def test_validation_errors_are_readable(
    logisense_emulator: LogisenseEmulator, body: dict[str, Any], message: str
) -> None:
    """Each rejected body surfaces as a RejectedError carrying LogiSense's message."""
    async with logisense_emulator.client() as client:
        await client.create("Account", {**ACCOUNT, "name": "Invoicer One"})
        await client.create("Account", {**ACCOUNT, "name": "Invoicer Two"})
        with pytest.raises(RejectedError) as caught:
            await client.create("Account", body)
    assert message in str(caught.value)
    assert caught.value.status == 400
    assert '"errors"' in caught.value.response_excerpt
    assert "Transaction rolled back" not in str(caught.value)


async def test_account_rules(logisense_emulator: LogisenseEmulator) -> None:
    """Parent cycles are refused; one invoicer moves both; custom fields added by admin become writable."""
    async with logisense_emulator.client() as client:
        parent = await client.create("Account", {**ACCOUNT, "name": "Parent"})
        child = await client.create("Account", {**ACCOUNT, "name": "Child", "parentAccountId": parent["identity"]})
        with pytest.raises(RejectedError, match="cycle"):
            await client.update("Account", parent["identity"], {"parentAccountId": child["identity"]})
        moved = await client.update("Account", child["identity"], {"invoicerAccountId": parent["identity"]})
        assert moved["usageInvoicerAccountId"] == parent["identity"]
        logisense_emulator.admin("POST", "custom-fields", {"resource": "Account", "column": "region"})
        regional = await client.update("Account", child["identity"], {"region": "West"})
        assert regional["region"] == "West"


async def test_contact_point_rules(logisense_emulator: LogisenseEmulator) -> None:
    """A second point of a single-valued type, a state of another country, or a foreign point type is refused."""
    async with logisense_emulator.client() as client:
        account = await client.create("Account", ACCOUNT)
        contact = await client.create("Contact", {"accountId": account["identity"], "contactTypeId": 1})
        point_types = await client.search("ContactPointType", [Condition("contactTypeId", "eq", 1)])
        by_name = {p["name"]: p["identity"] for p in point_types}
        other_type = await client.search("ContactPointType", [("contactTypeId", "eq", 2), ("name", "eq", "email")])
        states = await client.search("State", [{"name": "code", "operator": "eq", "value": "ON"}])
        point = {"contactId": contact["identity"], "contactPointTypeId": by_name["sfdcid"], "value": "003A"}
        await client.create("Contact/Point", point)
        with pytest.raises(RejectedError, match="allows only one"):
            await client.create("Contact/Point", {**point, "value": "003B"})
        phone = {"contactId": contact["identity"], "contactPointTypeId": by_name["phone"]}
        await client.create("Contact/Point", {**phone, "value": "1"})
        await client.create("Contact/Point", {**phone, "value": "2"})
        address = {"contactId": contact["identity"], "contactPointTypeId": by_name["address"], "city": "Toronto"}
        with pytest.raises(RejectedError, match="'StateId'"):
            await client.create("Contact/Point", {**address, "stateId": states[0]["identity"], "countryId": 1})
        with pytest.raises(RejectedError, match="contact type"):
            await client.create("Contact/Point", {**point, "contactPointTypeId": other_type[0]["identity"]})


async def test_search_operators_and_index_lookup(logisense_emulator: LogisenseEmulator) -> None:
    """eq (case-insensitive), notEq, lt/ltEq/gt/gtEq, in, like, isNull, fields, orderBy and top all apply."""
    async with logisense_emulator.client() as client:
        for n in range(5):
            await client.create("Account", {**ACCOUNT, "name": f"Acct {n}", "sfdcid": f"001X{n}", "billDay": n + 1})
        assert [a["name"] for a in await client.search("Account", [("sfdcid", "eq", "001x3")])] == ["Acct 3"]
        assert len(await client.search("Account", [("billDay", "notEq", 1)])) == 4
        assert [a["name"] for a in await client.search("Account", [("billDay", "eq", "2")])] == ["Acct 1"]
        assert len(await client.search("Account", [("billDay", "lt", 3)])) == 2
        assert len(await client.search("Account", [("billDay", "ltEq", 3)])) == 3
        assert len(await client.search("Account", [("billDay", "gt", 3)])) == 2
        assert len(await client.search("Account", [("billDay", "gtEq", 3), ("billDay", "lt", 5)])) == 2
        found = await client.search("Account", [("sfdcid", "in", ["001X1", "001X4", "nope"])], fields=["name"])
        assert found == [{"name": "Acct 1"}, {"name": "Acct 4"}]
        assert len(await client.search("Account", [("name", "like", "acct%")])) == 5
        assert len(await client.search("Account", [("parentAccountId", "isNull", True)])) == 5
        ordered = await client.search("Account", order_by=[("billDay", "desc")], top=2)
        assert [a["billDay"] for a in ordered] == [5, 4]


async def test_search_rejects_unknown_operator_and_field(logisense_emulator: LogisenseEmulator) -> None:
    """An unknown operator or field is a 400 naming it."""
    async with logisense_emulator.client() as client:
        with pytest.raises(RejectedError, match="Unknown search operator 'between'"):
            await client.search("Account", [("name", "between", 1)])
        with pytest.raises(RejectedError, match="Unknown search field 'nope'"):
            await client.search("Account", [("nope", "eq", 1)])
        with pytest.raises(RejectedError, match="'billDay' does not fit"):
            await client.search("Account", [("billDay", "gt", "soon")])
        with pytest.raises(RejectedError, match="'top'"):
            await client.search("Account", top=10_001)


async def test_paged_and_search_envelopes(logisense_emulator: LogisenseEmulator) -> None:
    """GET R/Paged and Search with pagination answer LogiSense's paged envelope."""
    response = raw(logisense_emulator, "GET", "Package/Paged", headers={"Pagination": '{"pageNumber":2,"pageSize":3}'})
    body = response.json()
    assert body["pagination"] == {"pageNumber": 2, "pageSize": 3, "excludeTotalCount": False}
    assert [p["identity"] for p in body["pagedResults"]["items"]] == [4, 5, 6]
    assert body["pagedResults"]["totalCount"] > 6
    query = {"query": {"search": [{"name": "frequency", "operator": "eq", "value": 1}], "pagination": {"pageSize": 2}}}
    searched = raw(logisense_emulator, "POST", "Package/Frequency/Search", json=query).json()
    assert len(searched["pagedResults"]["items"]) == 2
    assert all(f["frequency"] == 1 for f in searched["pagedResults"]["items"])


async def test_deep_search_children(logisense_emulator: LogisenseEmulator) -> None:
    """RatePlan/Search nests groups and rates; Invoice/Search nests items, tax summary and history."""
    logisense_emulator.reset(accounts=2, invoices_per_account=2)
    async with logisense_emulator.client() as client:
        plans = [p async for p in client.search_paged("RatePlan", children={"usageRateGroups": {"rates": {}}})]
        invoices = await client.search("Invoice", [("accountId", "eq", 1)])
        deep = [
            i
            async for i in client.search_paged(
                "Invoice",
                [("accountId", "eq", 1)],
                children={"invoiceItems": {}, "taxSummary": {"fields": ["taxRateName"]}},
            )
        ]
    assert plans
    assert all(len(p["usageRateGroups"]) == 2 for p in plans)
    assert all(len(g["rates"]) == 2 for p in plans for g in p["usageRateGroups"])
    assert len(invoices) == 2
    assert "invoiceItems" not in invoices[0]
    assert [len(i["invoiceItems"]) for i in deep] == [2, 2]
    assert deep[0]["taxSummary"] == [{"taxRateName": "HST 13%"}]


async def test_package_children_and_catalogue_delete(logisense_emulator: LogisenseEmulator) -> None:
    """PATCH adds a package frequency; deleting a package cascades to frequencies, currencies and pricing rules."""
    async with logisense_emulator.client() as client:
        package = (await client.list("Package"))[0]
        patched = await client.patch(
            "Package", package["identity"], {"frequencies": [{"name": "Weekly", "frequency": 1, "family": "Hardware"}]}
        )
        assert patched["identity"] == package["identity"]
        frequencies = await client.search("Package/Frequency", [("packageId", "eq", package["identity"])])
        assert "Weekly" in {f["name"] for f in frequencies}
        deleted = await client.delete("Package", package["identity"])
        kinds = {i["dtoTypeKey"] for i in deleted}
        assert {"package", "packageFrequency", "packageCurrency", "pricingRule"} <= kinds
        assert await client.search("Package/Frequency", [("packageId", "eq", package["identity"])]) == []


async def test_not_found_method_not_allowed_and_conflict(logisense_emulator: LogisenseEmulator) -> None:
    """Unknown ids and routes are 404, unsupported verbs 405, duplicate unique names 409."""
    async with logisense_emulator.client() as client:
        with pytest.raises(PermanentError, match="404"):
            await client.get("Account", 424242)
        with pytest.raises(PermanentError, match="405"):
            await client.create("Usage/Bucket/ShareLevel", {"name": "Nope"})
        with pytest.raises(PermanentError, match="409"):
            await client.create("AccountType", {"name": "customer"})
        await client.create("Account", ACCOUNT)
        with pytest.raises(PermanentError, match="409"):
            await client.delete("AccountType", 1)
    assert raw(logisense_emulator, "GET", "NoSuchThing").status_code == 404


def test_malformed_requests_get_the_error_shape(logisense_emulator: LogisenseEmulator) -> None:
    """Broken JSON, a non-object body and a bad Pagination header answer 400 in LogiSense's shape, no traceback."""
    cases = [
        raw(logisense_emulator, "POST", "Account", content=b"{not json", headers={"Content-Type": "application/json"}),
        raw(logisense_emulator, "POST", "Account", json=[1, 2]),
        raw(logisense_emulator, "GET", "Account/Paged", headers={"Pagination": "{{"}),
        raw(logisense_emulator, "POST", "Account/Search", json={"query": {"search": "x"}}),
        raw(logisense_emulator, "PUT", "Account/1", content=b"\xff\xfe", headers={"Content-Type": "application/json"}),
    ]
    for response in cases:
        body = response.json()
        assert response.status_code in (400, 404), response.text
        assert set(body) == {"trackingId", "type", "errors"}
        assert "Traceback" not in response.text


def test_auth_errors(logisense_emulator: LogisenseEmulator) -> None:
    """Bad password, unknown client and unknown grant answer OAuth errors; no bearer answers 401."""
    url = f"{logisense_emulator.base_url}/AuthorizationServer/Access/Login"
    base = {
        "grant_type": "password",
        "client_id": logisense_emulator.client_id,
        "username": logisense_emulator.username,
    }
    with httpx.Client(verify=ssl.create_default_context(cafile=logisense_emulator.ca_file), trust_env=False) as http:
        assert http.post(url, data={**base, "password": "wrong"}).json()["error"] == "invalid_grant"
        assert http.post(url, data={**base, "client_id": "x", "password": "p"}).json()["error"] == "invalid_client"
        assert http.post(url, data={**base, "grant_type": "magic"}).json() == {"error": "unsupported_grant_type"}
        token = http.post(url, data={**base, "password": logisense_emulator.password}).json()
        assert token["token_type"] == "bearer"
        assert token["expires_in"] == 1800
        assert token["access_token"].count(".") == 2
        assert token["audience"] == logisense_emulator.client_id
        denied = http.get(f"{logisense_emulator.base_url}/ResourceServer/api/v10/Account")
    assert denied.status_code == 401
    assert denied.json() == {"message": "Authorization has been denied for this request."}


async def test_metadata_describes_custom_fields(logisense_emulator: LogisenseEmulator) -> None:
    """GET R/Metadata lists updatable fields, routes and SQL columns including custom fields."""
    body = raw(logisense_emulator, "GET", "Account/Metadata").json()
    assert "sfdcid" in body["updateRequest"]["filters"]
    assert "identity" not in body["updateRequest"]["filters"]
    assert "POST Account" in body["resourceRouting"]["routes"]
    assert {"column": "parentAccountId", "references": "Account"} in body["sqlMetadata"]["foreignKeys"]


def test_seed_is_deterministic_and_sized() -> None:
    """The same seed gives the same data set, a different seed differs, and the catalogue has the asked size."""
    first, again, other = seed.build(5, 700), seed.build(5, 700), seed.build(6, 700)
    assert all(first.tables[r].rows == again.tables[r].rows for r in RESOURCES)
    assert any(first.tables[r].rows != other.tables[r].rows for r in seed.CATALOGUE_ROUTES)
    assert sum(len(first.tables[r]) for r in seed.CATALOGUE_ROUTES) == 700
    assert all(len(first.tables[r]) > 0 for r in seed.CATALOGUE_ROUTES)


def test_large_catalogue_is_fast_and_compact() -> None:
    """100,000 catalogue items build in a few seconds within a modest amount of memory."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        store = seed.build(1, 100_000)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(len(store.tables[r]) for r in seed.CATALOGUE_ROUTES) == 100_000
    assert elapsed < 10
    assert peak < 200 * 2**20


async def test_admin_accounts_counters_and_bill_run(logisense_emulator: LogisenseEmulator) -> None:
    """Admin shows accounts with contacts, counts requests per resource/operation/status, and runs bills."""
    async with logisense_emulator.client() as client:
        account = await client.create("Account", {**ACCOUNT, "sfdcid": "001B"})
        await client.create("Contact", {"accountId": account["identity"], "contactTypeId": 1, "lastName": "Doe"})
        await client.search("Account", [("sfdcid", "eq", "001B")])
    invoices = logisense_emulator.admin("POST", "bill-run", {"account_ids": [account["identity"]], "count": 2})
    assert len(invoices["invoices"]) == 2
    [stored] = logisense_emulator.accounts()
    assert stored["sfdcid"] == "001B"
    assert stored["contacts"][0]["name"] == "Doe"
    counters = logisense_emulator.counters()
    assert counters["resources"]["Account"]["create"] == {"201": 1}
    assert logisense_emulator.count(resource="Account", method="POST") == 2
    assert logisense_emulator.count(resource="Access/Login", status=200) == 1
    assert counters["total"] == sum(row["count"] for row in counters["requests"])


def test_runs_standalone_as_a_module(tmp_path: Path) -> None:
    """`python -m devstack.logisense` serves HTTPS with the local CA, answers health and exits cleanly on SIGTERM."""
    port = free_port()
    command = [sys.executable, "-m", "devstack.logisense", "--port", str(port), "--state-dir", str(tmp_path)]
    command += ["--catalogue-size", "50", "--seed", "3", "--token-ttl-seconds", "60"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        health = None
        while time.monotonic() < deadline and health is None:
            with contextlib.suppress(httpx.HTTPError, FileNotFoundError, ssl.SSLError):
                context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
                with httpx.Client(verify=context, trust_env=False) as http:
                    health = http.get(f"https://localhost:{port}/__admin/health").json()
            time.sleep(0.1)
        assert health == {"status": "ok", "seed": 3, "catalogue_size": 50}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
