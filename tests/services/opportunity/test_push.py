"""Acceptance tests of `sfls opportunity push|status`: the real broker and both emulators, through the CLI."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import REGISTRY

from services.importer.publish import read_topic
from shared.events import RequestRecord, RequestStatus
from shared.kafka import Topics
from tests.services.opportunity.world import (
    ACCOUNT,
    CAD,
    World,
    expected_entries,
    ls_create,
    ls_update,
    make_package,
    plan_entries,
)

pytestmark = pytest.mark.integration


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_won_opportunity_becomes_the_expected_price_planentries(world: World) -> None:
    """Two lines (one at 80% of list) become two product codes, four entries, the write-back and one log record."""
    assert world.package is not None
    entry = world.product(world.package.frequency, "FIB")
    opportunity_id = world.opportunity((entry, 100.0), (entry, 80.0))
    pushed_before = _metric("sfls_opportunity_pushes_total", outcome="pushed", reason="", trigger="command")
    writes_before = _metric("sfls_opportunity_push_logisense_writes_sum")

    answer = world.push(opportunity_id)

    assert answer["outcome"] == "pushed"
    [plan] = world.ls.price_plans()
    assert (plan["name"], plan["sfdcid"], plan["identity"]) == ("Salesforce", world.account_id, answer["price_plan_id"])
    assert plan_entries(world.ls) == expected_entries(world.package, "FIB-1", 1.0) | expected_entries(
        world.package, "FIB-2", 0.8
    )
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
    assert _metric("sfls_opportunity_pushes_total", outcome="pushed", reason="", trigger="command") == pushed_before + 1
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
    before, entries = world.writes(), plan_entries(world.ls)
    answer = world.push(opportunity_id)
    assert answer["outcome"] == "unchanged"
    assert world.writes() == before
    assert plan_entries(world.ls) == entries


def test_a_line_price_edit_updates_only_itsentries(world: World) -> None:
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
    assert plan_entries(world.ls) == expected_entries(world.package, "FIB-1", 1.0) | expected_entries(
        world.package, "FIB-2", 0.5
    )


def test_a_second_opportunity_of_the_account_reuses_the_plan(world: World) -> None:
    """A second won opportunity adds its codes and entries to the account's one price plan."""
    assert world.package is not None
    entry = world.product(world.package.frequency, "FIB")
    first = world.push(world.opportunity((entry, 100.0)))
    second = world.push(world.opportunity((entry, 70.0)))
    assert second["price_plan_id"] == first["price_plan_id"]
    assert len(world.ls.price_plans()) == 1
    assert plan_entries(world.ls) == expected_entries(world.package, "FIB-1", 1.0) | expected_entries(
        world.package, "FIB-2", 0.7
    )


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


def test_status_shows_the_plan_and_itsentries(world: World) -> None:
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
    assert _metric("sfls_opportunity_pushes_total", outcome="refused", reason=reason, trigger="command") >= 1


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
    asyncio.run(ls_create(world.ls, "Account", maple))
    _refused(world, world.opportunity((entry, 100.0)), "currency_mismatch")


def test_refused_product_not_from_logisense(world: World) -> None:
    """product_not_from_logisense: a line whose product has no LogiSense_Id__c."""
    _refused(world, world.opportunity((world.product(None, "HOMEMADE"), 100.0)), "product_not_from_logisense")


def test_refused_package_not_active(world: World) -> None:
    """package_not_active: a line of a package deactivated in LogiSense."""
    package = asyncio.run(make_package(world.ls))
    asyncio.run(ls_update(world.ls, "Package", package.identity, {"isActive": False}))
    _refused(world, world.opportunity((world.product(package.frequency, "OLD"), 100.0)), "package_not_active")


def test_refused_package_currency_missing(world: World) -> None:
    """package_currency_missing: a line of a package sold only in CAD, for a USD account."""
    package = asyncio.run(make_package(world.ls, currencies=(CAD,)))
    _refused(world, world.opportunity((world.product(package.frequency, "CANUCK"), 100.0)), "package_currency_missing")


def test_refused_product_code_conflict(world: World) -> None:
    """product_code_conflict: the line's product code name belongs to another LogiSense account."""
    assert world.package is not None
    stranger = asyncio.run(ls_create(world.ls, "Account", {**ACCOUNT, "name": "Stranger"}))
    asyncio.run(ls_create(world.ls, "Account/ProductCode", {"name": "TAKEN-1", "accountId": stranger["identity"]}))
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
    entries = plan_entries(world.ls)
    world.sf.Opportunity.update(opportunity_id, {"StageName": "Closed Lost"})
    answer = world.push(opportunity_id)
    assert answer["reason"] == "not_won"
    assert plan_entries(world.ls) == entries
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
        ls_create(world.ls, "Account/ProductCode", {"name": "FIB-7", "accountId": world.logisense_account})
    )
    creates = world.ls.count(resource="Account/ProductCode", operation="create")
    answer = world.push(opportunity_id)
    assert answer["outcome"] == "pushed"
    assert world.ls.count(resource="Account/ProductCode", operation="create") == creates
    assert plan_entries(world.ls) == expected_entries(world.package, "FIB-7", 1.0)
    assert world.lines(opportunity_id)[0]["LogiSense_Product_Code_Id__c"] == str(code["identity"])


def test_a_dry_run_refusal_writes_nothing(world: World) -> None:
    """--dry-run of an open opportunity names the refusal but leaves its status and the request log alone."""
    assert world.package is not None
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 100.0), stage="Prospecting")
    result = world.run("push", opportunity_id, "--dry-run")
    assert result.exit_code == 1, result.output
    assert "error: not_won:" in result.output
    assert world.sf.Opportunity.get(opportunity_id)["LogiSense_Push_Status__c"] in (None, "")


def test_refused_no_lines(world: World) -> None:
    """no_lines: a won opportunity on the book without products is refused."""
    _refused(world, world.opportunity(), "no_lines")


def test_unpush_removes_the_entries_and_codes_no_account_package_uses(world: World) -> None:
    """`unpush` deletes the opportunity's entries and codes, keeps a code an account package uses (and its
    entries), leaves the plan and other opportunities' entries, and marks the opportunity Withdrawn."""
    assert world.package is not None
    entry = world.product(world.package.frequency, "FIB")
    other = world.push(world.opportunity((entry, 100.0)))
    opportunity_id = world.opportunity((entry, 90.0), (entry, 80.0))
    world.push(opportunity_id)
    lines = world.lines(opportunity_id)
    used = int(lines[1]["LogiSense_Product_Code_Id__c"])
    order = {"accountId": world.logisense_account, "packageId": world.package.identity, "accountProductCodeId": used}
    asyncio.run(ls_create(world.ls, "Account/Package", order))

    dry = world.run("unpush", opportunity_id, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"keep Account/ProductCode/{used}: an account package uses it" in dry.output
    assert len(plan_entries(world.ls)) == 6

    result = world.run("unpush", opportunity_id, "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["outcome"] == "unpushed"
    assert answer["removed_codes"] == [int(lines[0]["LogiSense_Product_Code_Id__c"])]
    assert answer["kept_codes"] == [used]
    assert plan_entries(world.ls) == expected_entries(world.package, "FIB-1", 1.0) | expected_entries(
        world.package, "FIB-3", 0.8
    )
    [plan] = world.ls.price_plans()
    assert plan["identity"] == other["price_plan_id"]
    opportunity = world.sf.Opportunity.get(opportunity_id)
    assert opportunity["LogiSense_Push_Status__c"] == "Withdrawn"
    assert opportunity["LogiSense_Push_Reason__c"].startswith("unpushed: 2 entries and 1 product code(s) removed")
    assert opportunity["LogiSense_Product_Codes__c"] == str(used)
    after = world.lines(opportunity_id)
    assert (after[0]["Account_Product_Code_Name__c"], after[0]["LogiSense_Product_Code_Id__c"]) == (None, None)
    assert after[1]["LogiSense_Product_Code_Id__c"] == str(used)
    records = [
        RequestRecord.from_bytes(m.value() or b"")
        for m in read_topic(world.kafka, Topics(world.kafka.topic_prefix).requests)
    ]
    assert [r.kind for r in records].count("opportunity_unpush") == 1
