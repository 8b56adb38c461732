"""Acceptance tests of `sfls opportunity push|status`: the real broker and both emulators, through the CLI."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY
from simple_salesforce.api import Salesforce
from simple_salesforce.format import format_soql
from typer.testing import CliRunner, Result

from services.cli import app
from services.importer.publish import read_topic
from shared.events import RequestRecord, RequestStatus
from shared.kafka import Topics
from shared.settings import KafkaSettings
from tests.environment import sfls_env
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator

pytestmark = pytest.mark.integration

BOOK = "LogiSense Price Book"
ACCOUNT = {"name": "Acme Corp", "accountTypeId": 1, "accountStatusTypeId": 1, "billGroupId": 1, "currencyId": 1}
USD, CAD = 1, 2
# Catalogue of the test package, per service: recurring and one-time amounts in USD.
RECURRING, ONE_TIME = (40.0, 10.0), (25.0, 0.0)


@dataclass
class Package:
    identity: int
    frequency: int
    services: list[int]  # Package/Service identities, in service order


@dataclass
class World:
    """A LogiSense package and account, and the Salesforce account, book and products that go with them."""

    sf: Salesforce
    ls: LogisenseEmulator
    salesforce: SalesforceEmulator
    kafka: KafkaSettings
    monkeypatch: pytest.MonkeyPatch
    account_id: str = ""
    logisense_account: int = 0
    book_id: str = ""
    package: Package | None = None

    def run(self, *args: str) -> Result:
        for key, value in sfls_env(salesforce=self.salesforce, logisense=self.ls, kafka=self.kafka).items():
            if key.startswith("SFLS_"):
                self.monkeypatch.setenv(key, value)
        return CliRunner().invoke(app, ["opportunity", *args])

    def push(self, opportunity_id: str, *extra: str) -> dict[str, Any]:
        result = self.run("push", opportunity_id, "--json", *extra)
        answer: dict[str, Any] = json.loads(result.stdout.splitlines()[0])
        assert result.exit_code == (1 if answer["outcome"] == "refused" else 0), result.output
        return answer

    def product(self, frequency: int | None, code: str, list_price: float = 100.0) -> str:
        """A Product2 for the frequency with a standard price and an entry on the LogiSense book; the entry id."""
        body: dict[str, Any] = {"Name": f"Product {code}", "ProductCode": code, "IsActive": True}
        if frequency is not None:
            body["LogiSense_Id__c"] = str(frequency)
        product_id = self.sf.Product2.create(body)["id"]
        standard = self.sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
        entry = {"Product2Id": product_id, "UnitPrice": list_price, "IsActive": True}
        self.sf.PricebookEntry.create({**entry, "Pricebook2Id": standard})
        return str(self.sf.PricebookEntry.create({**entry, "Pricebook2Id": self.book_id})["id"])

    def opportunity(self, *lines: tuple[str, float], stage: str = "Closed Won", **extra: Any) -> str:
        """An opportunity on the LogiSense book with one line per (entry id, sales price)."""
        body = {"Name": "Acme deal", "AccountId": self.account_id, "StageName": stage, "CloseDate": "2026-11-30"}
        opportunity_id = str(self.sf.Opportunity.create({"Pricebook2Id": self.book_id, **body, **extra})["id"])
        for entry_id, price in lines:
            self.sf.OpportunityLineItem.create(
                {"OpportunityId": opportunity_id, "PricebookEntryId": entry_id, "Quantity": 1, "UnitPrice": price}
            )
        return opportunity_id

    def lines(self, opportunity_id: str) -> list[dict[str, Any]]:
        soql = format_soql(
            "SELECT Id, UnitPrice, Account_Product_Code_Name__c, LogiSense_Product_Code_Id__c "
            "FROM OpportunityLineItem WHERE OpportunityId = {}",
            opportunity_id,
        )
        return sorted(self.sf.query(soql)["records"], key=lambda r: r["Id"])

    def writes(self) -> int:
        return sum(self.ls.count(method=m) for m in ("PUT", "PATCH", "DELETE")) + self.ls.count(operation="create")


async def _package(ls: LogisenseEmulator, *, currencies: tuple[int, ...] = (USD,), **fields: Any) -> Package:
    """A package with one monthly frequency, two services and their catalogue prices in USD."""
    async with ls.client() as client:
        body = {"name": "Fibre", "isActive": True, "start": "2024-01-01T00:00:00Z", **fields}
        package = await client.create("Package", body)
        children = {
            "frequencies": [{"name": "Fibre Monthly", "frequency": 1, "frequencyTypeId": 3, "isActive": True}],
            "currencies": [{"currencyId": c} for c in currencies],
            "services": [{"serviceId": 1}, {"serviceId": 2}],
        }
        await client.patch("Package", package["identity"], children)
        [frequency] = await client.search("Package/Frequency", [("packageId", "eq", package["identity"])])
        services = await client.search("Package/Service", [("packageId", "eq", package["identity"])])
        services.sort(key=lambda s: s["serviceId"])
        for service, recurring, one_time in zip(services, RECURRING, ONE_TIME, strict=True):
            rule = {"packageFrequencyId": frequency["identity"], "serviceId": service["serviceId"], "currencyId": USD}
            await client.create("PricingRule", {**rule, "chargeType": "recurring", "amount": recurring})
            if one_time:
                await client.create("PricingRule", {**rule, "chargeType": "oneTime", "amount": one_time})
    return Package(package["identity"], frequency["identity"], [s["identity"] for s in services])


async def _create(ls: LogisenseEmulator, resource: str, body: dict[str, Any]) -> dict[str, Any]:
    async with ls.client() as client:
        return await client.create(resource, body)


async def _update(ls: LogisenseEmulator, resource: str, identity: int, body: dict[str, Any]) -> dict[str, Any]:
    async with ls.client() as client:
        return await client.update(resource, identity, body)


@pytest.fixture
def world(
    sf: Salesforce,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    kafka_settings: KafkaSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    """A synced account (LogiSense account with its sfdcid), the LogiSense book, and a USD package in LogiSense."""
    w = World(sf, logisense_emulator, salesforce_emulator, kafka_settings, monkeypatch)
    w.account_id = str(sf.Account.create({"Name": "Acme Corp"})["id"])
    account = asyncio.run(_create(logisense_emulator, "Account", {**ACCOUNT, "sfdcid": w.account_id}))
    w.logisense_account = account["identity"]
    w.book_id = str(sf.Pricebook2.create({"Name": BOOK, "IsActive": True})["id"])
    w.package = asyncio.run(_package(logisense_emulator))
    return w


def _entries(ls: LogisenseEmulator) -> set[tuple[str, int, float, float]]:
    """(product code, package service, recurring, one-time) of every price plan entry."""
    return {
        (e["productCode"], e["packageServiceId"], e["recurringAmount"], e["oneTimeAmount"])
        for plan in ls.price_plans()
        for e in plan["entries"]
    }


def _expected(package: Package, code: str, factor: float) -> set[tuple[str, int, float, float]]:
    return {
        (code, service, round(recurring * factor, 2), round(one_time * factor, 2))
        for service, recurring, one_time in zip(package.services, RECURRING, ONE_TIME, strict=True)
    }


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_won_opportunity_becomes_the_expected_price_plan_entries(world: World) -> None:
    """Two lines (one at 80% of list) become two product codes, four entries, the write-back and one log record."""
    assert world.package is not None
    entry = world.product(world.package.frequency, "FIB")
    opportunity_id = world.opportunity((entry, 100.0), (entry, 80.0))
    pushed_before = _metric("sfls_opportunity_pushes_total", outcome="pushed", reason="")
    writes_before = _metric("sfls_opportunity_push_logisense_writes_sum")

    answer = world.push(opportunity_id)

    assert answer["outcome"] == "pushed"
    [plan] = world.ls.price_plans()
    assert (plan["name"], plan["sfdcid"], plan["identity"]) == ("Salesforce", world.account_id, answer["price_plan_id"])
    assert _entries(world.ls) == _expected(world.package, "FIB-1", 1.0) | _expected(world.package, "FIB-2", 0.8)
    assert answer["logisense_writes"] == 4  # two product codes, the plan, one PATCH
    lines = world.lines(opportunity_id)
    assert [line["Account_Product_Code_Name__c"] for line in lines] == ["FIB-1", "FIB-2"]
    assert all(line["LogiSense_Product_Code_Id__c"] for line in lines)
    opportunity = world.sf.Opportunity.get(opportunity_id)
    assert opportunity["LogiSense_Push_Status__c"] == "Pushed"
    assert opportunity["LogiSense_Price_Plan_Id__c"] == str(plan["identity"])
    assert opportunity["LogiSense_Push_Hash__c"] == answer["hash"]
    assert opportunity["LogiSense_Pushed_At__c"]
    assert not opportunity["LogiSense_Push_Reason__c"]
    records = [
        RequestRecord.from_bytes(m.value() or b"")
        for m in read_topic(world.kafka, Topics(world.kafka.topic_prefix).requests)
    ]
    assert [(r.kind, r.key, r.status) for r in records] == [("opportunity_push", opportunity_id, RequestStatus.SUCCESS)]
    assert records[0].service == "opportunity"
    assert _metric("sfls_opportunity_pushes_total", outcome="pushed", reason="") == pushed_before + 1
    assert _metric("sfls_opportunity_push_logisense_writes_sum") == writes_before + 4
    write_back = [
        e["data"]["payload"]["ChangeEventHeader"]
        for e in world.salesforce.events()
        if opportunity_id in e["data"]["payload"]["ChangeEventHeader"]["recordIds"]
        and "LogiSense_Push_Status__c" in e["data"]["payload"]["ChangeEventHeader"]["changedFields"]
    ]
    assert write_back
    assert all("client=sfls" in header["changeOrigin"] for header in write_back)


def test_a_repush_without_changes_writes_nothing_to_logisense(world: World) -> None:
    """Pushing again with unchanged lines makes no LogiSense write at all and reports unchanged."""
    assert world.package is not None
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 90.0))
    world.push(opportunity_id)
    before, entries = world.writes(), _entries(world.ls)
    answer = world.push(opportunity_id)
    assert answer["outcome"] == "unchanged"
    assert world.writes() == before
    assert _entries(world.ls) == entries


def test_a_line_price_edit_updates_only_its_entries(world: World) -> None:
    """After one line's price changes, the re-push updates that line's entries and leaves the other's untouched."""
    assert world.package is not None
    entry = world.product(world.package.frequency, "FIB")
    opportunity_id = world.opportunity((entry, 100.0), (entry, 100.0))
    world.push(opportunity_id)
    first = {e["identity"]: e for plan in world.ls.price_plans() for e in plan["entries"]}
    world.sf.OpportunityLineItem.update(world.lines(opportunity_id)[1]["Id"], {"UnitPrice": 50})
    patches = world.ls.count(method="PATCH")
    answer = world.push(opportunity_id)
    assert answer["outcome"] == "pushed"
    assert answer["logisense_writes"] == 1
    assert world.ls.count(method="PATCH") == patches + 1
    after = {e["identity"]: e for plan in world.ls.price_plans() for e in plan["entries"]}
    assert set(after) == set(first)
    changed = {i for i in after if after[i] != first[i]}
    assert {after[i]["productCode"] for i in changed} == {"FIB-2"}
    assert _entries(world.ls) == _expected(world.package, "FIB-1", 1.0) | _expected(world.package, "FIB-2", 0.5)


def test_a_second_opportunity_of_the_account_reuses_the_plan(world: World) -> None:
    """A second won opportunity adds its codes and entries to the account's one price plan."""
    assert world.package is not None
    entry = world.product(world.package.frequency, "FIB")
    first = world.push(world.opportunity((entry, 100.0)))
    second = world.push(world.opportunity((entry, 70.0)))
    assert second["price_plan_id"] == first["price_plan_id"]
    assert len(world.ls.price_plans()) == 1
    assert _entries(world.ls) == _expected(world.package, "FIB-1", 1.0) | _expected(world.package, "FIB-2", 0.7)


def test_dry_run_prints_the_calls_and_writes_nothing(world: World) -> None:
    """--dry-run lists the planned LogiSense calls; neither LogiSense nor the opportunity changes."""
    assert world.package is not None
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 100.0))
    before = world.writes()
    result = world.run("push", opportunity_id, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "LogiSense POST Account/ProductCode name=FIB-1" in result.output
    assert "LogiSense PATCH Account/PricePlan/<new> packageServicePricePlan: 2 create, 0 update" in result.output
    assert world.writes() == before
    assert world.ls.price_plans() == []
    assert world.lines(opportunity_id)[0]["Account_Product_Code_Name__c"] is None
    assert world.sf.Opportunity.get(opportunity_id)["LogiSense_Push_Status__c"] in (None, "")


def test_status_shows_the_plan_and_its_entries(world: World) -> None:
    """`status` shows the write-back fields and the LogiSense entries of this opportunity's product codes."""
    assert world.package is not None
    entry = world.product(world.package.frequency, "FIB")
    other = world.opportunity((entry, 100.0))
    world.push(other)
    opportunity_id = world.opportunity((entry, 60.0))
    result = world.run("status", opportunity_id, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["price_plan"] is None
    world.push(opportunity_id)
    state = json.loads(world.run("status", opportunity_id, "--json").stdout)
    assert state["LogiSense_Push_Status__c"] == "Pushed"
    assert state["price_plan"]["identity"] == world.ls.price_plans()[0]["identity"]
    assert {e["productCode"] for e in state["price_plan"]["entries"]} == {"FIB-2"}
    assert len(state["price_plan"]["entries"]) == 2
    text = world.run("status", opportunity_id)
    assert text.exit_code == 0, text.output
    assert "FIB-2" in text.output


def _refused(world: World, opportunity_id: str, reason: str) -> None:
    before = world.writes()
    result = world.run("push", opportunity_id)
    assert result.exit_code == 1, result.output
    assert f"error: {reason}:" in result.output
    assert world.writes() == before
    assert world.ls.price_plans() == []
    opportunity = world.sf.Opportunity.get(opportunity_id)
    assert opportunity["LogiSense_Push_Status__c"] == "Failed"
    assert opportunity["LogiSense_Push_Reason__c"].startswith(f"{reason}:")
    assert _metric("sfls_opportunity_pushes_total", outcome="refused", reason=reason) >= 1


def test_refused_not_won(world: World) -> None:
    """not_won: an open opportunity is refused and marked Failed."""
    assert world.package is not None
    _refused(
        world, world.opportunity((world.product(world.package.frequency, "FIB"), 100.0), stage="Prospecting"), "not_won"
    )


def test_refused_not_logisense_price_book(world: World) -> None:
    """not_logisense_price_book: a won opportunity on another book is refused."""
    assert world.package is not None
    world.book_id = str(world.sf.Pricebook2.create({"Name": "Other", "IsActive": True})["id"])
    _refused(
        world, world.opportunity((world.product(world.package.frequency, "FIB"), 100.0)), "not_logisense_price_book"
    )


def test_refused_account_not_synced(world: World) -> None:
    """account_not_synced: no LogiSense account carries the opportunity's AccountId."""
    assert world.package is not None
    entry = world.product(world.package.frequency, "FIB")
    world.account_id = str(world.sf.Account.create({"Name": "Never synced"})["id"])
    _refused(world, world.opportunity((entry, 100.0)), "account_not_synced")


def test_refused_currency_mismatch(world: World) -> None:
    """currency_mismatch: a USD opportunity for a LogiSense account that bills in CAD (multi-currency org)."""
    assert world.package is not None
    world.salesforce.tune(multi_currency=True)
    entry = world.product(world.package.frequency, "FIB")
    world.account_id = str(world.sf.Account.create({"Name": "Maple"})["id"])
    maple = {**ACCOUNT, "name": "Maple", "currencyId": CAD, "sfdcid": world.account_id}
    asyncio.run(_create(world.ls, "Account", maple))
    _refused(world, world.opportunity((entry, 100.0)), "currency_mismatch")


def test_refused_product_not_from_logisense(world: World) -> None:
    """product_not_from_logisense: a line whose product has no LogiSense_Id__c."""
    _refused(world, world.opportunity((world.product(None, "HOMEMADE"), 100.0)), "product_not_from_logisense")


def test_refused_package_not_active(world: World) -> None:
    """package_not_active: a line of a package deactivated in LogiSense."""
    package = asyncio.run(_package(world.ls))
    asyncio.run(_update(world.ls, "Package", package.identity, {"isActive": False}))
    _refused(world, world.opportunity((world.product(package.frequency, "OLD"), 100.0)), "package_not_active")


def test_refused_package_currency_missing(world: World) -> None:
    """package_currency_missing: a line of a package sold only in CAD, for a USD account."""
    package = asyncio.run(_package(world.ls, currencies=(CAD,)))
    _refused(world, world.opportunity((world.product(package.frequency, "CANUCK"), 100.0)), "package_currency_missing")


def test_refused_product_code_conflict(world: World) -> None:
    """product_code_conflict: the line's product code name belongs to another LogiSense account."""
    assert world.package is not None
    stranger = asyncio.run(_create(world.ls, "Account", {**ACCOUNT, "name": "Stranger"}))
    asyncio.run(_create(world.ls, "Account/ProductCode", {"name": "TAKEN-1", "accountId": stranger["identity"]}))
    before = world.writes()
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 100.0))
    world.sf.OpportunityLineItem.update(
        world.lines(opportunity_id)[0]["Id"], {"Account_Product_Code_Name__c": "TAKEN-1"}
    )
    result = world.run("push", opportunity_id)
    assert result.exit_code == 1, result.output
    assert "error: product_code_conflict:" in result.output
    assert world.writes() == before
    assert world.sf.Opportunity.get(opportunity_id)["LogiSense_Push_Status__c"] == "Failed"


def test_refused_logisense_rejected(world: World) -> None:
    """logisense_rejected: LogiSense's 400 (a negative charge) is refused with its message."""
    assert world.package is not None
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), -10.0))
    result = world.run("push", opportunity_id)
    assert result.exit_code == 1, result.output
    assert "error: logisense_rejected:" in result.output
    assert "'amount' of at least 0" in result.output
    assert all(not plan["entries"] for plan in world.ls.price_plans())
    opportunity = world.sf.Opportunity.get(opportunity_id)
    assert opportunity["LogiSense_Push_Status__c"] == "Failed"


def test_won_then_lost_after_push_deletes_nothing(world: World) -> None:
    """Pushing an opportunity that went from won to lost is refused as Withdrawn; its entries stay in LogiSense."""
    assert world.package is not None
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 100.0))
    world.push(opportunity_id)
    entries = _entries(world.ls)
    world.sf.Opportunity.update(opportunity_id, {"StageName": "Closed Lost"})
    answer = world.push(opportunity_id)
    assert answer["reason"] == "not_won"
    assert _entries(world.ls) == entries
    opportunity = world.sf.Opportunity.get(opportunity_id)
    assert opportunity["LogiSense_Push_Status__c"] == "Withdrawn"
    assert opportunity["LogiSense_Price_Plan_Id__c"]


def test_a_push_after_a_crash_reuses_the_name_and_the_code(world: World) -> None:
    """A name already on the line and its code already in LogiSense (a crash after either step) are reused."""
    assert world.package is not None
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 100.0))
    line_id = world.lines(opportunity_id)[0]["Id"]
    world.sf.OpportunityLineItem.update(line_id, {"Account_Product_Code_Name__c": "FIB-7"})
    code = asyncio.run(
        _create(world.ls, "Account/ProductCode", {"name": "FIB-7", "accountId": world.logisense_account})
    )
    creates = world.ls.count(resource="Account/ProductCode", operation="create")
    answer = world.push(opportunity_id)
    assert answer["outcome"] == "pushed"
    assert world.ls.count(resource="Account/ProductCode", operation="create") == creates
    assert _entries(world.ls) == _expected(world.package, "FIB-7", 1.0)
    assert world.lines(opportunity_id)[0]["LogiSense_Product_Code_Id__c"] == str(code["identity"])


def test_a_dry_run_refusal_writes_nothing(world: World) -> None:
    """--dry-run of an open opportunity names the refusal but leaves its status and the request log alone."""
    assert world.package is not None
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 100.0), stage="Prospecting")
    result = world.run("push", opportunity_id, "--dry-run")
    assert result.exit_code == 1, result.output
    assert "error: not_won:" in result.output
    assert world.sf.Opportunity.get(opportunity_id)["LogiSense_Push_Status__c"] in (None, "")
