"""The world of the quote-to-cash tests: a LogiSense package and account, the Salesforce book and products."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.format import format_soql
from typer.testing import CliRunner, Result

from services.cli import app
from shared.settings import KafkaSettings
from tests.environment import sfls_env
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator

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


async def make_package(ls: LogisenseEmulator, *, currencies: tuple[int, ...] = (USD,), **fields: Any) -> Package:
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


async def ls_create(ls: LogisenseEmulator, resource: str, body: dict[str, Any]) -> dict[str, Any]:
    async with ls.client() as client:
        return await client.create(resource, body)


async def ls_update(ls: LogisenseEmulator, resource: str, identity: int, body: dict[str, Any]) -> dict[str, Any]:
    async with ls.client() as client:
        return await client.update(resource, identity, body)


def plan_entries(ls: LogisenseEmulator) -> set[tuple[str, int, float, float]]:
    """(product code, package service, recurring, one-time) of every price plan entry."""
    return {
        (e["productCode"], e["packageServiceId"], e["recurringAmount"], e["oneTimeAmount"])
        for plan in ls.price_plans()
        for e in plan["entries"]
    }


def expected_entries(package: Package, code: str, factor: float) -> set[tuple[str, int, float, float]]:
    return {
        (code, service, round(recurring * factor, 2), round(one_time * factor, 2))
        for service, recurring, one_time in zip(package.services, RECURRING, ONE_TIME, strict=True)
    }
