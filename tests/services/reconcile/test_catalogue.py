"""`sfls reconcile --scope catalogue|all`: drift injected into the emulators after an import is found exactly once,
missing and stale records are re-landed through the importer, left-behind ones are only reported
(services/reconcile/catalogue.py)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from devstack.process import sfls_command
from services.importer.app import run_import
from services.importer.targets import select
from services.importer.transform import Prepared
from services.reconcile.catalogue import CatalogueDrift, Relanded, check, left_behind
from services.reconcile.drift import Kind
from shared.settings import Settings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.reconcile.support import run_reconcile
from tests.services.syncer.e2e import seed_accounts, subprocess_env

EXT, KEY, HASH = "LogiSense_Id__c", "LogiSense_Key__c", "LogiSense_Hash__c"
BOOK_NAME = "LogiSense Price Book"
Found = tuple[str, str, str]  # (kind, entity, LogiSense id or price book entry key)


@pytest.fixture
def settings(importer_settings: Settings) -> Settings:
    return importer_settings


def found(drifts: list[dict[str, Any]]) -> list[Found]:
    return sorted((d["kind"], d["entity"], str(d.get("key") or d.get("logisense_id") or "")) for d in drifts)


def _by_ext(salesforce: SalesforceEmulator, sobject: str, field: str = EXT) -> dict[str, dict[str, Any]]:
    return {str(r[field]): r for r in salesforce.records(sobject) if r.get(field) and not r.get("IsDeleted")}


async def _items(emulator: LogisenseEmulator, resource: str) -> list[dict[str, Any]]:
    async with emulator.client() as client:
        return [item async for item in client.paged(resource)]


async def _imported(settings: Settings) -> None:
    report = await run_import(settings, select("catalogue"))
    assert report.ok, [(e.entity, e.error, e.reasons) for e in report.entities]


@pytest.mark.integration
async def test_a_synced_catalogue_exits_0_alone_and_with_the_accounts(
    settings: Settings, salesforce_emulator: SalesforceEmulator
) -> None:
    await _imported(settings)
    code, drifts, summary = run_reconcile(settings, "--scope", "catalogue")
    assert (code, drifts, summary["in_sync"], summary["scope"]) == (0, [], True, "catalogue"), drifts
    assert summary["records"]["logisense_catalogue"] == summary["records"]["salesforce_catalogue"] > 0, summary
    assert (summary["relanded"], summary["relanded_entities"]) == (0, [])
    code, drifts, summary = run_reconcile(settings, "--scope", "all")
    assert (code, drifts, summary["scope"]) == (0, [], "all"), drifts
    assert {"logisense", "salesforce", "logisense_catalogue", "salesforce_catalogue"} <= set(summary["records"])


@pytest.mark.integration
async def test_each_injected_catalogue_drift_is_found_once_and_repair_relands_all_but_the_left_behind(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    await _imported(settings)
    rate = (await _items(logisense_emulator, "Usage/Rate"))[2]
    share_plan = (await _items(logisense_emulator, "Usage/Bucket/SharePlan"))[0]
    package_service = (await _items(logisense_emulator, "Package/Service"))[1]
    share_level = (await _items(logisense_emulator, "Usage/Bucket/ShareLevel"))[0]
    entries = _by_ext(salesforce_emulator, "PricebookEntry", KEY)
    codes = {c["identity"]: c["code"] for c in await _items(logisense_emulator, "Currency")}
    rule = next(
        r
        for r in await _items(logisense_emulator, "PricingRule")
        if r["chargeType"] == "recurring" and f"{r['packageFrequencyId']}:{codes[r['currencyId']]}" in entries
    )
    pair = f"{rule['packageFrequencyId']}:{codes[rule['currencyId']]}"
    rates = _by_ext(salesforce_emulator, "LogiSense_Rate__c")
    plans = _by_ext(salesforce_emulator, "LogiSense_Share_Plan__c")
    services = _by_ext(salesforce_emulator, "LogiSense_Package_Service__c")
    levels = _by_ext(salesforce_emulator, "LogiSense_Share_Level__c")
    book = next(b for b in salesforce_emulator.records("Pricebook2") if b.get("Name") == BOOK_NAME)

    async with logisense_emulator.client() as client:
        await client.update("Usage/Rate", int(rate["identity"]), {"amount": float(rate["amount"] or 0) + 1.25})
        await client.update("PricingRule", int(rule["identity"]), {"amount": float(rule["amount"] or 0) + 7})
        deleted = await client.delete("Usage/Bucket/SharePlan", int(share_plan["identity"]))
    assert [d["identity"] for d in deleted] == [share_plan["identity"]]  # nothing cascaded
    rest = salesforce_emulator.rest()
    rest.delete("LogiSense_Package_Service__c", services[str(package_service["identity"])]["Id"])
    rest.update("LogiSense_Share_Level__c", levels[str(share_level["identity"])]["Id"], {EXT: None})  # de-linked
    rest.update("Pricebook2", book["Id"], {"IsActive": False})

    code, drifts, summary = run_reconcile(settings, "--scope", "catalogue")
    assert code == 1
    assert found(drifts) == sorted(
        [
            ("catalogue_missing", "package_service", str(package_service["identity"])),
            ("catalogue_missing", "share_level", str(share_level["identity"])),
            ("catalogue_stale", "rate", str(rate["identity"])),
            ("catalogue_stale", "pricing_rule", str(rule["identity"])),
            ("catalogue_stale", "price_book", ""),
            ("catalogue_stale", "price_book_entry", pair),
            ("catalogue_stale", "price_book_entry", f"std:{pair}"),
            ("catalogue_left_behind", "share_plan", str(share_plan["identity"])),
        ]
    ), drifts
    by_entity = {d["entity"]: d for d in drifts}
    assert by_entity["rate"]["salesforce_id"] == rates[str(rate["identity"])]["Id"]
    assert by_entity["share_plan"]["salesforce_id"] == plans[str(share_plan["identity"])]["Id"]
    assert by_entity["price_book"]["salesforce_id"] == book["Id"]
    assert "salesforce_id" not in by_entity["package_service"]  # no record to name
    assert by_entity["price_book_entry"]["logisense_id"] == rule["packageFrequencyId"]
    assert all(d["detail"].startswith(d["entity"]) and "field" not in d for d in drifts), drifts
    assert summary["drift"] == {"catalogue_left_behind": 1, "catalogue_missing": 2, "catalogue_stale": 5}

    code, _, summary = run_reconcile(settings, "--scope", "catalogue", "--repair")
    assert code == 1  # drift was found; the repair's effect shows in the next run
    assert (summary["relanded"], summary["relanding_failed"], summary["repaired"]) == (7, 0, 0), summary
    assert summary["relanded_entities"] == [
        "rate",
        "package_service",
        "pricing_rule",
        "share_level",
        "price_book",
        "price_book_entry",
    ]
    assert _by_ext(salesforce_emulator, "LogiSense_Rate__c")[str(rate["identity"])]["Amount__c"] == pytest.approx(
        float(rate["amount"] or 0) + 1.25
    )

    code, drifts, summary = run_reconcile(settings, "--scope", "catalogue")
    assert (code, found(drifts)) == (1, [("catalogue_left_behind", "share_plan", str(share_plan["identity"]))])
    assert str(share_plan["identity"]) in _by_ext(salesforce_emulator, "LogiSense_Share_Plan__c")  # never deleted


@pytest.mark.integration
async def test_scope_all_reports_accounts_then_catalogue_in_one_report(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    await _imported(settings)
    (account,) = seed_accounts(salesforce_emulator, 1)  # never synced: missing in LogiSense
    rate = (await _items(logisense_emulator, "Usage/Rate"))[0]
    async with logisense_emulator.client() as client:
        await client.update("Usage/Rate", int(rate["identity"]), {"displayName": "Renamed by hand"})

    code, drifts, summary = run_reconcile(settings, "--scope", "all")
    assert code == 1
    assert [(d["kind"], d.get("salesforce_id") if "entity" not in d else d["entity"]) for d in drifts] == [
        ("account_missing", account),
        ("catalogue_stale", "rate"),
    ]
    assert (summary["scope"], summary["drift"]) == ("all", {"account_missing": 1, "catalogue_stale": 1})
    assert summary["records"]["salesforce"] == 1
    assert summary["records"]["logisense_catalogue"] > 0
    code, drifts, summary = run_reconcile(settings, "--scope", "accounts")
    assert (code, [d["kind"] for d in drifts], summary["scope"]) == (1, ["account_missing"], "accounts")
    assert "relanded" not in summary  # the accounts summary is as it was


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--scope", "catalogue", "--where", "Name = 'x'"), "--where"),
        (("--scope", "everything"), "--scope"),
    ],
)
def test_bad_input_exits_2_naming_the_option(
    salesforce_emulator: SalesforceEmulator, args: tuple[str, ...], says: str
) -> None:
    done = subprocess.run(
        [*sfls_command(), "reconcile", *args],
        env=subprocess_env(Settings(salesforce=salesforce_emulator.settings())),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert says in done.stderr


def test_a_catalogue_drift_names_its_entity_in_json_and_is_never_an_account_resync() -> None:
    wanted = Prepared(12, {EXT: "12", "Name": "Gold", HASH: "b" * 32}, "b" * 32)
    stale = check("package", wanted, {"12": ("a01A", "a" * 32)})
    assert stale is not None
    assert stale.to_json() == {
        "kind": "catalogue_stale",
        "entity": "package",
        "salesforce_id": "a01A",
        "logisense_id": 12,
        "detail": "package 12 'Gold': changed since it landed (stored hash aaaaaaaa, "
        "the importer would write bbbbbbbb)",
    }
    assert stale.repair_account is None
    assert check("package", wanted, {"12": ("a01A", "b" * 32)}) is None
    entry = Prepared("std:12:USD", {KEY: "std:12:USD", HASH: "c" * 32}, "c" * 32)
    missing = check("price_book_entry", entry, {})
    assert missing is not None
    assert missing.to_json() == {
        "kind": "catalogue_missing",
        "entity": "price_book_entry",
        "key": "std:12:USD",
        "logisense_id": 12,
        "detail": "price_book_entry std:12:USD: not in Salesforce",
    }
    behind = list(left_behind("rate", {"7": ("a02B", None), "8": ("a02C", None)}, seen={"8"}))
    assert behind == [
        CatalogueDrift(
            Kind.CATALOGUE_LEFT_BEHIND,
            "a02B",
            7,
            detail="rate 7: its LogiSense item no longer exists (left for a person, never deleted)",
            entity="rate",
        )
    ]
    assert Relanded(("rate",), 3, 1).summary() == {
        "relanded": 3,
        "relanded_entities": ["rate"],
        "relanding_failed": 1,
    }
