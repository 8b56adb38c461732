"""The LogiSense emulator's account price plans, their package service price plans and account product codes,
driven through sfls's own client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from shared.errors import PermanentError, RejectedError
from shared.logisense import LogisenseClient
from tests.fixtures.logisense import LogisenseEmulator

pytestmark = pytest.mark.integration

ACCOUNT = {"name": "Acme Corp", "accountTypeId": 1, "accountStatusTypeId": 1, "billGroupId": 1, "currencyId": 1}
ENTRY = "Package/Service/PricePlan"


@dataclass(frozen=True)
class Catalogue:
    """What one package offers: its frequencies, currencies by ISO code, and package services."""

    package: int
    frequencies: list[int]
    currencies: dict[str, int]  # ISO code -> Package/Currency identity
    services: list[dict[str, Any]]  # Package/Service rows (identity, serviceId, serviceName)

    def entry(self, currency: str = "USD", **fields: Any) -> dict[str, Any]:
        """A price plan entry body for the first service and frequency of the package."""
        return {
            "packageServiceId": self.services[0]["identity"],
            "packageFrequencyId": self.frequencies[0],
            "packageCurrencyId": self.currencies[currency],
            **fields,
        }


async def catalogue_of(client: LogisenseClient, package: int) -> Catalogue:
    """The package's frequencies, currencies (with ISO codes) and services, found through search."""
    codes = {c["identity"]: c["code"] for c in await client.list("Currency")}
    frequencies = await client.search("Package/Frequency", [("packageId", "eq", package)])
    currencies = await client.search("Package/Currency", [("packageId", "eq", package)])
    services = await client.search("Package/Service", [("packageId", "eq", package)])
    return Catalogue(
        package,
        [f["identity"] for f in frequencies],
        {codes[c["currencyId"]]: c["identity"] for c in currencies},
        services,
    )


async def new_package(client: LogisenseClient, **fields: Any) -> Catalogue:
    """A package with one monthly frequency, USD and CAD, and one service."""
    body = {"name": "Test Package", "isActive": True, "start": "2024-01-01T00:00:00Z", **fields}
    package = await client.create("Package", body)
    children = {
        "frequencies": [{"name": "Monthly", "frequency": 1, "frequencyTypeId": 3}],
        "currencies": [{"currencyId": 1}, {"currencyId": 2}],
        "services": [{"serviceId": 1}],
    }
    await client.patch("Package", package["identity"], children)
    return await catalogue_of(client, package["identity"])


async def account_with_plan(client: LogisenseClient, **account: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    created = await client.create("Account", {**ACCOUNT, **account})
    plan = await client.create("Account/PricePlan", {"name": "Acme prices", "accountId": created["identity"]})
    return created, plan


async def test_seeded_package_offers_frequencies_currencies_and_services(
    logisense_emulator: LogisenseEmulator,
) -> None:
    """A seeded package can be looked up for its frequencies, its currencies' ISO codes and its services."""
    async with logisense_emulator.client() as client:
        catalogue = await catalogue_of(client, 1)
    assert catalogue.frequencies
    assert "USD" in catalogue.currencies
    assert catalogue.services
    assert all(s["serviceName"] for s in catalogue.services)


async def test_price_plan_round_trip_through_search(logisense_emulator: LogisenseEmulator) -> None:
    """A plan created for an account reads back through Search and GET with partners; lastUsedForBilling is RO."""
    async with logisense_emulator.client() as client:
        account = await client.create("Account", ACCOUNT)
        body = {
            "name": "Acme prices",
            "accountId": account["identity"],
            "description": "Negotiated",
            "start": "2025-01-01T00:00:00Z",
            "includeChildAccounts": True,
            "lastUsedForBilling": "2025-02-01T00:00:00Z",
        }
        created = await client.create("Account/PricePlan", body)
        [found] = await client.search("Account/PricePlan", [("accountId", "eq", account["identity"])])
        fetched = await client.get("Account/PricePlan", created["identity"])
        paged = [p async for p in client.paged("Account/PricePlan")]
    assert found == fetched == paged[0]
    assert len(paged) == 1
    assert found["accountName"] == "Acme Corp"
    assert found["ownerName"] == "sfls Devstack Billing"
    assert found["includeChildAccounts"] is True
    assert found["isConsolidatedByInvoicer"] is False
    assert found["lastUsedForBilling"] is None


async def test_second_plan_and_unknown_account_are_refused(logisense_emulator: LogisenseEmulator) -> None:
    """An account has one price plan (400, code 10800000); an unknown account is a missing reference."""
    async with logisense_emulator.client() as client:
        account, plan = await account_with_plan(client)
        with pytest.raises(RejectedError, match="already has 'Account/PricePlan'") as caught:
            await client.create("Account/PricePlan", {"name": "Again", "accountId": account["identity"]})
        assert caught.value.status == 400
        assert "10800000" in caught.value.response_excerpt
        with pytest.raises(RejectedError, match=r"'AccountId' \(4242\) does not exist in 'Account'"):
            await client.create("Account/PricePlan", {"name": "Nobody", "accountId": 4242})
        renamed = await client.update("Account/PricePlan", plan["identity"], {"name": "Renamed"})
    assert renamed["name"] == "Renamed"


async def test_product_code_name_reused_is_refused(logisense_emulator: LogisenseEmulator) -> None:
    """Product code names are unique within the owner, across accounts and regardless of case."""
    async with logisense_emulator.client() as client:
        first = await client.create("Account", ACCOUNT)
        second = await client.create("Account", {**ACCOUNT, "name": "Other Corp"})
        code = await client.create("Account/ProductCode", {"name": "ACME-GOLD", "accountId": first["identity"]})
        with pytest.raises(RejectedError, match="unique per owner"):
            await client.create("Account/ProductCode", {"name": "acme-gold", "accountId": second["identity"]})
        other = await client.create("Account/ProductCode", {"name": "OTHER-GOLD", "accountId": second["identity"]})
        with pytest.raises(RejectedError, match="unique per owner"):
            await client.update("Account/ProductCode", other["identity"], {"name": "Acme-Gold"})
    assert code["accountName"] == "Acme Corp"
    assert code["ownerId"] == 1


@pytest.mark.parametrize(
    ("package", "reason"),
    [
        ({"isActive": False}, "is inactive"),
        ({"expiry": "2020-01-01T00:00:00Z"}, "has expired"),
        ({"start": "2999-01-01T00:00:00Z"}, "has not started yet"),
    ],
)
async def test_entry_for_a_package_that_is_not_active_is_refused(
    logisense_emulator: LogisenseEmulator, package: dict[str, Any], reason: str
) -> None:
    """Only active packages can be priced: inactive, expired and future packages are refused."""
    async with logisense_emulator.client() as client:
        _, plan = await account_with_plan(client)
        catalogue = await new_package(client, **package)
        with pytest.raises(RejectedError, match=reason):
            await client.create(ENTRY, catalogue.entry(accountPricePlanId=plan["identity"]))
        assert await client.search(ENTRY, [("accountPricePlanId", "eq", plan["identity"])]) == []


async def test_entry_parts_must_belong_to_the_package(logisense_emulator: LogisenseEmulator) -> None:
    """A frequency or currency of another package, or another account's product code, is refused."""
    async with logisense_emulator.client() as client:
        _, plan = await account_with_plan(client)
        stranger = await client.create("Account", {**ACCOUNT, "name": "Stranger"})
        foreign_code = await client.create("Account/ProductCode", {"name": "X-1", "accountId": stranger["identity"]})
        mine, theirs = await new_package(client), await new_package(client, name="Second")
        body = mine.entry(accountPricePlanId=plan["identity"])
        with pytest.raises(RejectedError, match=r"'PackageFrequencyId'.*does not exist in 'Package/Frequency'"):
            await client.create(ENTRY, {**body, "packageFrequencyId": theirs.frequencies[0]})
        with pytest.raises(RejectedError, match=r"'PackageCurrencyId'.*does not exist in 'Package/Currency'"):
            await client.create(ENTRY, {**body, "packageCurrencyId": theirs.currencies["USD"]})
        with pytest.raises(RejectedError, match=r"'AccountProductCodeId'.*for 'Account'"):
            await client.create(ENTRY, {**body, "accountProductCodeId": foreign_code["identity"]})
        with pytest.raises(RejectedError, match="'amount' of at least 0"):
            await client.create(ENTRY, {**body, "recurringCharges": [{"amount": -1}]})


async def test_entry_in_another_currency_than_the_account_is_refused(logisense_emulator: LogisenseEmulator) -> None:
    """A Canadian-dollar account's plan refuses the package's USD currency and accepts its CAD one."""
    async with logisense_emulator.client() as client:
        _, plan = await account_with_plan(client, currencyId=2)
        catalogue = await new_package(client)
        with pytest.raises(RejectedError, match=r"is in USD but 'Account' .* bills in CAD"):
            await client.create(ENTRY, catalogue.entry("USD", accountPricePlanId=plan["identity"]))
        created = await client.create(ENTRY, catalogue.entry("CAD", accountPricePlanId=plan["identity"]))
    assert created["packageCurrencyName"] == "Canadian Dollars"
    assert created["accountPricePlanName"] == "Acme prices"


async def test_patch_with_children_is_one_transaction(logisense_emulator: LogisenseEmulator) -> None:
    """PATCH creates, updates and deletes entries in one go; a failing child rolls the whole PATCH back."""
    async with logisense_emulator.client() as client:
        account, plan = await account_with_plan(client)
        plan_id = plan["identity"]
        code = await client.create("Account/ProductCode", {"name": "ACME-1", "accountId": account["identity"]})
        catalogue = await catalogue_of(client, 1)
        gold = catalogue.entry(accountProductCodeId=code["identity"], recurringCharges=[{"amount": 10}])
        plain = catalogue.entry(oneTimeCharges=[{"amount": 5}])
        patched = await client.patch(
            "Account/PricePlan", plan_id, {"name": "Two entries", "packageServicePricePlan": [gold, plain]}
        )
        assert patched["name"] == "Two entries"
        entries = await client.search(ENTRY, [("accountPricePlanId", "eq", plan_id)], order_by=[("identity", "asc")])
        assert [e["accountProductCodeName"] for e in entries] == ["ACME-1", None]
        gold_id, plain_id = entries[0]["identity"], entries[1]["identity"]

        changes = [
            {"identity": gold_id, "recurringCharges": [{"amount": 12.5, "serviceStatusTypeId": 1}]},
            {"identity": plain_id, "delete": True},
            catalogue.entry(recurringCharges=[{"amount": 3}]),
        ]
        await client.patch("Account/PricePlan", plan_id, {"packageServicePricePlan": changes})
        after = await client.search(ENTRY, [("accountPricePlanId", "eq", plan_id)], order_by=[("identity", "asc")])
        assert after[0]["identity"] == gold_id
        assert plain_id not in {e["identity"] for e in after}
        assert after[0]["recurringCharges"] == [{"amount": 12.5, "serviceStatusTypeId": 1}]
        assert len(after) == 2

        failing = [
            {"identity": gold_id, "recurringCharges": [{"amount": 99}]},
            catalogue.entry(),  # a second entry for the same service without a code
        ]
        with pytest.raises(RejectedError, match="already prices"):
            await client.patch("Account/PricePlan", plan_id, {"name": "Never", "packageServicePricePlan": failing})
        with pytest.raises(RejectedError, match="needs its 'identity'"):
            await client.patch("Account/PricePlan", plan_id, {"packageServicePricePlan": [{"delete": True}]})
        assert (await client.get("Account/PricePlan", plan_id))["name"] == "Two entries"
        unchanged = await client.search(ENTRY, [("accountPricePlanId", "eq", plan_id)], order_by=[("identity", "asc")])
    assert unchanged == after


async def test_deleting_a_product_code_in_use_is_refused(logisense_emulator: LogisenseEmulator) -> None:
    """A product code a price plan entry uses cannot be deleted (409); deleting the account cascades everything."""
    async with logisense_emulator.client() as client:
        account, plan = await account_with_plan(client)
        code = await client.create("Account/ProductCode", {"name": "ACME-1", "accountId": account["identity"]})
        catalogue = await catalogue_of(client, 1)
        entry = await client.create(
            ENTRY, catalogue.entry(accountPricePlanId=plan["identity"], accountProductCodeId=code["identity"])
        )
        with pytest.raises(PermanentError, match="409"):
            await client.delete("Account/ProductCode", code["identity"])
        deleted = await client.delete("Account", account["identity"])
        assert {(i["dtoTypeKey"], i["action"]) for i in deleted} >= {
            ("account", "deleted"),
            ("accountPricePlan", "deleted"),
            ("packageServicePricePlan", "deleted"),
            ("accountProductCode", "deleted"),
        }
        with pytest.raises(PermanentError, match="404"):
            await client.get(ENTRY, entry["identity"])
    assert logisense_emulator.price_plans() == []


async def test_admin_price_plans_and_reset(logisense_emulator: LogisenseEmulator) -> None:
    """`/__admin/price_plans` shows each entry with the sfdcid, product code and summed amounts; reset clears it."""
    async with logisense_emulator.client() as client:
        account, plan = await account_with_plan(client, sfdcid="001000000000001AAA")
        code = await client.create("Account/ProductCode", {"name": "ACME-1", "accountId": account["identity"]})
        catalogue = await catalogue_of(client, 1)
        body = catalogue.entry(
            accountProductCodeId=code["identity"],
            recurringCharges=[{"amount": 10, "serviceStatusTypeId": 1}, {"amount": "2.5"}],
            oneTimeCharges=[{"amount": 50}],
        )
        await client.patch("Account/PricePlan", plan["identity"], {"packageServicePricePlan": [body]})
        [entry] = await client.search(ENTRY, [("accountPricePlanId", "eq", plan["identity"])])
    assert logisense_emulator.price_plans() == [
        {
            "identity": plan["identity"],
            "name": "Acme prices",
            "accountId": account["identity"],
            "sfdcid": "001000000000001AAA",
            "entries": [
                {
                    "identity": entry["identity"],
                    "packageFrequencyId": catalogue.frequencies[0],
                    "packageServiceId": catalogue.services[0]["identity"],
                    "serviceId": catalogue.services[0]["serviceId"],
                    "productCode": "ACME-1",
                    "productCodeId": code["identity"],
                    "currencyCode": "USD",
                    "recurringAmount": 12.5,
                    "oneTimeAmount": 50.0,
                }
            ],
        }
    ]
    logisense_emulator.reset()
    assert logisense_emulator.price_plans() == []
    async with logisense_emulator.client() as client:
        assert await client.list("Account/ProductCode") == []
        assert await client.list(ENTRY) == []
