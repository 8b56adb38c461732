"""`sfls reconcile --scope price_plans|all`: what quote to cash pushed against LogiSense's price plans
(services/reconcile/price_plans.py). Drift injected after two pushes (through LogiSense's REST API and Salesforce)
is found exactly once, `--repair` leaves it, and a re-push as the README says clears it."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from devstack.process import sfls_command
from services.opportunity.opportunities import Line, Opportunity
from services.opportunity.plan import ENTRY, LinePlan, PushPlan
from services.reconcile.drift import Kind
from services.reconcile.price_plans import PricePlanDrift, compare
from shared.settings import KafkaSettings, Settings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.fixtures.schema import deploy_schema
from tests.services.opportunity.world import ACCOUNT, BOOK, World, ls_create, make_package
from tests.services.reconcile.support import run_reconcile
from tests.services.syncer.e2e import subprocess_env
from tests.waiting import wait_until

PRICE_PLAN_KINDS = [k for k in Kind if k.value.startswith("price_plan")]
Found = tuple[str, str, str, str]  # (kind, opportunity, product code, field or LogiSense id)


def test_price_plan_drift_is_never_an_account_repair() -> None:
    """The accounts repair would resync the opportunity's id as an account: none of these kinds is repairable."""
    assert len(PRICE_PLAN_KINDS) == 6
    for kind in PRICE_PLAN_KINDS:
        drift = PricePlanDrift(kind, "006000000000001AAA", 1, account_id="001000000000001AAA")
        assert drift.repair_account is None, kind


def _opportunity(lines: tuple[Line, ...], **written: Any) -> Opportunity:
    return Opportunity("006A", "Deal", "001A", True, "Won", None, "01s", "USD", {**written}, lines)


def test_an_entry_the_push_would_update_is_one_drift_per_charge_field_that_differs() -> None:
    line = Line("00kA", 1, 80, 100, "01s", "Fibre", "FIB", 7, "FIB-1", "31")
    wanted = {"recurringCharges": [{"amount": 32.0}], "oneTimeCharges": [{"amount": 20.0}]}
    held = {"identity": 90, "accountProductCodeId": 31, "packageServiceId": 5, "recurringCharges": [{"amount": 1.0}]}
    held["oneTimeCharges"] = [{"amount": 20}]
    push = PushPlan(
        {"identity": 3}, "USD", {"identity": 11}, [LinePlan(line, "FIB-1", 31, [{"packageServiceId": 5, **wanted}])]
    )
    push.existing = [held]
    [drift] = compare(_opportunity((line,), LogiSense_Price_Plan_Id__c="11"), push)
    assert (drift.kind, drift.logisense_id, drift.field) == (Kind.PRICE_PLAN_ENTRY_MISMATCH, 90, "recurringCharges")
    assert (drift.salesforce, drift.logisense) == ([{"amount": 32.0}], [{"amount": 1.0}])
    assert drift.to_json()["account_id"] == "001A"
    assert drift.to_json()["price_plan_id"] == 11


@pytest.fixture
def world(
    sf: Salesforce,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    kafka_settings: KafkaSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    """As tests/services/opportunity/conftest.py: a synced account, the LogiSense book, a USD package; and the
    importer's schema, so `--scope all` can read the catalogue too."""
    settings = _settings(kafka_settings, logisense_emulator, salesforce_emulator)
    deploy_schema(salesforce_emulator, settings)
    w = World(sf, logisense_emulator, salesforce_emulator, kafka_settings, monkeypatch)
    w.account_id = str(sf.Account.create({"Name": "Acme Corp"})["id"])
    account = asyncio.run(ls_create(logisense_emulator, "Account", {**ACCOUNT, "sfdcid": w.account_id}))
    w.logisense_account = account["identity"]
    w.book_id = str(sf.Pricebook2.create({"Name": BOOK, "IsActive": True})["id"])
    w.package = asyncio.run(make_package(logisense_emulator))
    return w


def _settings(kafka: KafkaSettings, logisense: LogisenseEmulator, salesforce: SalesforceEmulator) -> Settings:
    return Settings(kafka=kafka, logisense=logisense.settings(), salesforce=salesforce.settings())


def reconcile(world: World, *args: str) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """`sfls reconcile --format json ARGS` as a process: (exit code, drift lines, summary)."""
    return run_reconcile(_settings(world.kafka, world.ls, world.salesforce), *args)


def found(drifts: list[dict[str, Any]]) -> list[Found]:
    return sorted(
        (d["kind"], d["salesforce_id"], d.get("product_code") or "", d.get("field") or str(d.get("logisense_id")))
        for d in drifts
        if d["kind"].startswith("price_plan")
    )


async def _entries(world: World, plan: int) -> list[dict[str, Any]]:
    async with world.ls.client() as client:
        return await client.search(ENTRY, [("accountPricePlanId", "eq", plan)])


async def _inject(world: World, plan_a: int, codes: dict[str, int]) -> dict[str, Any]:
    """In LogiSense: delete FIB-1's first entry, change FIB-2's first entry's recurring price. What was touched."""
    assert world.package is not None
    first = world.package.services[0]
    entries = {(e["accountProductCodeId"], e["packageServiceId"]): e for e in await _entries(world, plan_a)}
    gone, changed = entries[codes["FIB-1"], first], entries[codes["FIB-2"], first]
    async with world.ls.client() as client:
        children = [
            {"identity": gone["identity"], "delete": True},
            {"identity": changed["identity"], "recurringCharges": [{"amount": 1.5}]},
        ]
        await client.patch("Account/PricePlan", plan_a, {"packageServicePricePlan": children})
    return {"changed": changed, "left": [e["identity"] for (c, _), e in entries.items() if c == codes["FIB-3"]]}


async def _remove(world: World, plan_a: int, plan_b: int, code: int) -> None:
    """In LogiSense: delete a product code (its entries first: LogiSense refuses to delete a code in use), and
    account B's price plan (its entries go with it)."""
    async with world.ls.client() as client:
        entries = await _entries(world, plan_a)
        children = [{"identity": e["identity"], "delete": True} for e in entries if e["accountProductCodeId"] == code]
        assert len(children) == 2
        await client.patch("Account/PricePlan", plan_a, {"packageServicePricePlan": children})
        await client.delete("Account/ProductCode", code)
        await client.delete("Account/PricePlan", plan_b)


@pytest.mark.integration
def test_each_injected_price_plan_drift_is_found_once_and_repair_leaves_it(world: World) -> None:
    assert world.package is not None
    entry = world.product(world.package.frequency, "FIB")
    opp_a = world.opportunity((entry, 100.0), (entry, 80.0), (entry, 90.0), (entry, 70.0))
    account_b = str(world.sf.Account.create({"Name": "Beta Ltd"})["id"])
    asyncio.run(ls_create(world.ls, "Account", {**ACCOUNT, "name": "Beta Ltd", "sfdcid": account_b}))
    opp_b = world.opportunity((entry, 100.0), AccountId=account_b)
    answers = {opp: world.push(opp) for opp in (opp_a, opp_b)}
    assert [a["outcome"] for a in answers.values()] == ["pushed", "pushed"]

    code, drifts, summary = reconcile(world, "--scope", "price_plans")
    assert (code, drifts, summary["scope"], summary["in_sync"]) == (0, [], "price_plans", True), drifts
    assert summary["records"]["salesforce_pushed_opportunities"] == 2
    assert summary["records"]["logisense_price_plans"] == 2
    assert summary["records"]["logisense_price_plan_entries"] == 10  # 5 lines, 2 services each
    assert "relanded" not in summary

    lines = world.lines(opp_a)
    codes = {line["Account_Product_Code_Name__c"]: int(line["LogiSense_Product_Code_Id__c"]) for line in lines}
    assert sorted(codes) == ["FIB-1", "FIB-2", "FIB-3", "FIB-4"]
    plan_a, plan_b = (int(answers[o]["price_plan_id"]) for o in (opp_a, opp_b))
    touched = asyncio.run(_inject(world, plan_a, codes))
    writes = world.writes()
    assert world.push(opp_a)["outcome"] == "unchanged"  # the hash covers Salesforce only: a re-push writes nothing
    assert world.writes() == writes
    asyncio.run(_remove(world, plan_a, plan_b, codes["FIB-4"]))
    fib3 = next(line["Id"] for line in lines if line["Account_Product_Code_Name__c"] == "FIB-3")
    world.sf.OpportunityLineItem.delete(fib3)
    wait_until(lambda: len(world.lines(opp_a)), 10, "the FIB-3 line gone", until=lambda n: n == 3)
    expected = sorted(
        [
            ("price_plan_entry_missing", opp_a, "FIB-1", "None"),
            ("price_plan_entry_mismatch", opp_a, "FIB-2", "recurringCharges"),
            *(("price_plan_entry_left_behind", opp_a, "FIB-3", str(identity)) for identity in touched["left"]),
            ("price_plan_code_missing", opp_a, "FIB-4", str(codes["FIB-4"])),
            ("price_plan_missing", opp_b, "", str(plan_b)),
        ]
    )
    assert len(touched["left"]) == 2

    code, drifts, summary = reconcile(world, "--scope", "price_plans")
    assert (code, found(drifts)) == (1, expected), drifts
    assert len(drifts) == len(expected)  # nothing but the price plan kinds
    assert summary["drift"] == {
        "price_plan_code_missing": 1,
        "price_plan_entry_left_behind": 2,
        "price_plan_entry_mismatch": 1,
        "price_plan_entry_missing": 1,
        "price_plan_missing": 1,
    }
    by_kind = {d["kind"]: d for d in drifts}
    mismatch = by_kind["price_plan_entry_mismatch"]
    assert (mismatch["logisense_id"], mismatch["logisense"]) == (touched["changed"]["identity"], [{"amount": 1.5}])
    assert mismatch["salesforce"] == touched["changed"]["recurringCharges"]
    assert mismatch["account_id"] == world.account_id
    assert by_kind["price_plan_missing"]["account_id"] == account_b

    writes, before = world.writes(), [world.sf.Opportunity.get(o) for o in (opp_a, opp_b)]
    code, drifts, _ = reconcile(world, "--scope", "price_plans", "--repair")
    assert (code, found(drifts)) == (1, expected)
    assert world.writes() == writes  # not one LogiSense write
    after = [world.sf.Opportunity.get(o) for o in (opp_a, opp_b)]
    assert [o["SystemModstamp"] for o in after] == [o["SystemModstamp"] for o in before]

    table = subprocess.run(
        [*sfls_command(), "reconcile", "--scope", "price_plans"],
        env=subprocess_env(_settings(world.kafka, world.ls, world.salesforce)),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert table.returncode == 1, table.stderr
    assert all(kind in table.stdout for kind, *_ in expected), table.stdout
    assert "DRIFT: 6 differences" in table.stdout

    code, drifts, summary = reconcile(world, "--scope", "all")
    assert (code, found(drifts), summary["scope"]) == (1, expected, "all")
    assert {"salesforce_pushed_opportunities", "logisense_price_plans", "logisense", "logisense_catalogue"} <= set(
        summary["records"]
    )

    # The README's repair: clear the push hash (a re-push of an unchanged hash writes nothing), push again.
    world.sf.Opportunity.update(opp_a, {"LogiSense_Push_Hash__c": None})
    assert [world.push(o)["outcome"] for o in (opp_a, opp_b)] == ["pushed", "pushed"]
    code, drifts, _ = reconcile(world, "--scope", "price_plans")
    assert (code, drifts) == (0, []), drifts
