"""The automatic path: opportunity events on `sfls.changes` through the real syncer, the broker and both emulators.

Events are published as the listener would (keyed by the AccountId, naming the opportunity); the listener's
side is tested in tests/services/listener/test_listener.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from services.importer.publish import read_topic
from services.syncer.dlq import dead_letters
from shared.deadletter import DeadLetter
from shared.events import ChangeEvent, ChangeType, Entity, RequestRecord, RequestStatus
from shared.kafka import Topics
from shared.settings import OpportunitySettings, Settings
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
from tests.services.syncer.e2e import committed, run_syncer, seed_accounts, syncer_settings
from tests.services.syncer.support import change, create_syncer_topics, publish
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def opportunity_event(
    account_id: str,
    opportunity_id: str,
    *,
    line_id: str | None = None,
    change_type: ChangeType = ChangeType.UPDATE,
) -> ChangeEvent:
    """An Opportunity (or, with `line_id`, OpportunityLineItem) event as the listener publishes it."""
    return ChangeEvent(
        event_id=uuid.uuid4().hex,
        entity=Entity.OPPORTUNITY_LINE if line_id else Entity.OPPORTUNITY,
        change_type=change_type,
        record_id=line_id or opportunity_id,
        account_id=account_id,
        commit_timestamp=datetime.now(UTC),
        opportunity_id=opportunity_id,
    )


def settings_for(world: World, **opportunity: Any) -> Settings:
    base = syncer_settings(world.kafka, world.salesforce, world.ls)
    return base.model_copy(update={"opportunity": OpportunitySettings(**opportunity)})


async def sync(world: World, producer: Producer, events: list[ChangeEvent], **opportunity: Any) -> Settings:
    """Publish `events` and run the syncer (auto_push unless told otherwise) until it committed all of them."""
    settings = settings_for(world, **({"auto_push": True} | opportunity))
    topics = create_syncer_topics(world.kafka)
    before = committed(settings)
    publish(producer, topics.changes, events)
    await run_syncer(settings, lambda: committed(settings) >= before + len(events))
    return settings


def letters(settings: Settings) -> list[DeadLetter]:
    return dead_letters(settings.kafka, Topics(settings.kafka.topic_prefix).changes_dlt)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_an_opportunity_of_an_account_not_in_logisense_pulls_the_account_in(
    world: World, producer_factory: Callable[..., Producer]
) -> None:
    """Only an Opportunity event: the syncer creates the LogiSense account first, then pushes the price plan."""
    assert world.package is not None
    (account_id,) = seed_accounts(world.salesforce, 1, prefix="Newco")
    world.account_id = account_id
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 80.0))
    pushed_before = _metric("sfls_opportunity_pushes_total", outcome="pushed", reason="", trigger="automatic")

    settings = await sync(world, producer_factory(), [opportunity_event(account_id, opportunity_id)])

    assert account_id in {a["sfdcid"] for a in world.ls.accounts()}
    [plan] = [p for p in world.ls.price_plans() if p["sfdcid"] == account_id]
    assert plan_entries(world.ls) == expected_entries(world.package, "FIB-1", 0.8)
    opportunity = world.sf.Opportunity.get(opportunity_id)
    assert opportunity["LogiSense_Push_Status__c"] == "Pushed"
    assert opportunity["LogiSense_Price_Plan_Id__c"] == str(plan["identity"])
    assert letters(settings) == []
    records = [
        RequestRecord.from_bytes(m.value() or b"")
        for m in read_topic(world.kafka, f"{settings.kafka.topic_prefix}.requests")
    ]
    pushes = [r for r in records if r.kind == "opportunity_push"]
    assert [(r.service, r.key, r.status) for r in pushes] == [("syncer", opportunity_id, RequestStatus.SUCCESS)]
    assert [r.key for r in records if r.kind == "account_sync"] == [account_id]  # pulled in, so logged
    assert (
        _metric("sfls_opportunity_pushes_total", outcome="pushed", reason="", trigger="automatic") == pushed_before + 1
    )


async def test_an_account_and_its_opportunity_in_one_batch(
    world: World, producer_factory: Callable[..., Producer]
) -> None:
    """The account's change and its opportunity's in one batch: the account is written, then the plan."""
    assert world.package is not None
    (account_id,) = seed_accounts(world.salesforce, 1, prefix="Sameco")
    world.account_id = account_id
    entry = world.product(world.package.frequency, "FIB")
    first, second = world.opportunity((entry, 100.0)), world.opportunity((entry, 50.0))
    events = [change(account_id, change_type=ChangeType.CREATE)]
    events += [opportunity_event(account_id, first), opportunity_event(account_id, second)]

    await sync(world, producer_factory(), events)

    plans = [p for p in world.ls.price_plans() if p["sfdcid"] == account_id]
    assert len(plans) == 1  # both opportunities feed the account's one plan
    assert {e["productCode"] for e in plans[0]["entries"]} == {"FIB-1", "FIB-2"}
    for opportunity_id in (first, second):
        assert world.sf.Opportunity.get(opportunity_id)["LogiSense_Push_Status__c"] == "Pushed"


async def test_an_unchanged_opportunity_event_writes_nothing(
    world: World, producer_factory: Callable[..., Producer]
) -> None:
    """A second event for a pushed, unchanged opportunity makes no LogiSense write (the account is not resynced)."""
    assert world.package is not None
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 100.0))
    await sync(world, producer_factory(), [opportunity_event(world.account_id, opportunity_id)])
    before, entries = world.writes(), plan_entries(world.ls)

    await sync(world, producer_factory(), [opportunity_event(world.account_id, opportunity_id)])

    assert world.writes() == before
    assert plan_entries(world.ls) == entries


async def test_a_removed_line_loses_its_entries_and_code_unless_an_account_package_uses_it(
    world: World, producer_factory: Callable[..., Producer]
) -> None:
    """After a push, a deleted line's entries and product code go; a code an account package uses stays, named."""
    assert world.package is not None
    entry = world.product(world.package.frequency, "FIB")
    opportunity_id = world.opportunity((entry, 100.0), (entry, 90.0), (entry, 80.0))
    await sync(world, producer_factory(), [opportunity_event(world.account_id, opportunity_id)])
    lines = world.lines(opportunity_id)
    codes = {line["Account_Product_Code_Name__c"]: int(line["LogiSense_Product_Code_Id__c"]) for line in lines}
    assert set(codes) == {"FIB-1", "FIB-2", "FIB-3"}
    order = {"accountId": world.logisense_account, "packageId": world.package.identity}
    await ls_create(world.ls, "Account/Package", {**order, "accountProductCodeId": codes["FIB-3"]})
    world.sf.OpportunityLineItem.delete(lines[1]["Id"])
    world.sf.OpportunityLineItem.delete(lines[2]["Id"])
    events = [
        opportunity_event(world.account_id, opportunity_id, line_id=line["Id"], change_type=ChangeType.DELETE)
        for line in lines[1:]
    ]

    settings = await sync(world, producer_factory(), events)

    assert plan_entries(world.ls) == expected_entries(world.package, "FIB-1", 1.0) | expected_entries(
        world.package, "FIB-3", 0.8
    )
    async with world.ls.client() as client:
        left = {
            c["name"]
            for c in await client.search("Account/ProductCode", [("accountId", "eq", world.logisense_account)])
        }
    assert left == {"FIB-1", "FIB-3"}
    opportunity = world.sf.Opportunity.get(opportunity_id)
    assert opportunity["LogiSense_Push_Status__c"] == "Pushed"
    assert opportunity["LogiSense_Push_Reason__c"].startswith("product_code_in_use:")
    assert str(codes["FIB-3"]) in opportunity["LogiSense_Push_Reason__c"]
    assert sorted(map(int, opportunity["LogiSense_Product_Codes__c"].split(","))) == sorted(
        [codes["FIB-1"], codes["FIB-3"]]
    )
    assert letters(settings) == []


async def test_won_then_lost_is_withdrawn_and_nothing_is_deleted(
    world: World, producer_factory: Callable[..., Producer]
) -> None:
    """A pushed opportunity that is lost becomes Withdrawn by the next event; LogiSense keeps its entries."""
    assert world.package is not None
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 100.0))
    await sync(world, producer_factory(), [opportunity_event(world.account_id, opportunity_id)])
    entries = plan_entries(world.ls)
    world.sf.Opportunity.update(opportunity_id, {"StageName": "Closed Lost"})

    settings = await sync(world, producer_factory(), [opportunity_event(world.account_id, opportunity_id)])

    assert plan_entries(world.ls) == entries
    opportunity = world.sf.Opportunity.get(opportunity_id)
    assert opportunity["LogiSense_Push_Status__c"] == "Withdrawn"
    assert opportunity["LogiSense_Push_Reason__c"].startswith("not_won:")
    assert letters(settings) == []


async def test_watch_without_auto_push_marks_ready_then_stale(
    world: World, producer_factory: Callable[..., Producer]
) -> None:
    """`opportunity.watch` alone: a won opportunity becomes Ready (no LogiSense write); pushed, then edited: Stale."""
    assert world.package is not None
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 100.0))
    before = world.writes()
    await sync(
        world, producer_factory(), [opportunity_event(world.account_id, opportunity_id)], watch=True, auto_push=False
    )
    assert world.sf.Opportunity.get(opportunity_id)["LogiSense_Push_Status__c"] == "Ready"
    assert world.writes() == before
    assert world.ls.price_plans() == []

    await asyncio.to_thread(world.push, opportunity_id)
    line = world.lines(opportunity_id)[0]
    world.sf.OpportunityLineItem.update(line["Id"], {"UnitPrice": 75.0})
    event = opportunity_event(world.account_id, opportunity_id, line_id=line["Id"])
    await sync(world, producer_factory(), [event], watch=True, auto_push=False)
    assert world.sf.Opportunity.get(opportunity_id)["LogiSense_Push_Status__c"] == "Stale"
    assert plan_entries(world.ls) == expected_entries(world.package, "FIB-1", 1.0)  # not pushed by the mark


async def test_opportunities_that_cannot_be_pushed_are_dead_lettered_with_their_reason(
    world: World, producer_factory: Callable[..., Producer]
) -> None:
    """Every refusal reason of the automatic path is a dead letter of that opportunity's records, naming the
    reason and its fix; not won, other price books and no lines yet are skipped, not dead-lettered; the rest
    of the batch (a good opportunity of the same account) is pushed."""
    assert world.package is not None
    fibre = world.product(world.package.frequency, "FIB")
    inactive = await make_package(world.ls)
    await ls_update(world.ls, "Package", inactive.identity, {"isActive": False})
    canadian = await make_package(world.ls, currencies=(CAD,))
    stranger = await ls_create(world.ls, "Account", {**ACCOUNT, "name": "Stranger"})
    await ls_create(world.ls, "Account/ProductCode", {"name": "TAKEN-1", "accountId": stranger["identity"]})
    cases: dict[str, str] = {
        "product_not_from_logisense": world.opportunity((world.product(None, "HOMEMADE"), 100.0)),
        "package_not_active": world.opportunity((world.product(inactive.frequency, "OLD"), 100.0)),
        "package_currency_missing": world.opportunity((world.product(canadian.frequency, "CANUCK"), 100.0)),
        "product_code_conflict": world.opportunity((fibre, 100.0)),
        "logisense_rejected": world.opportunity((fibre, -10.0)),
    }
    taken = world.lines(cases["product_code_conflict"])[0]["Id"]
    world.sf.OpportunityLineItem.update(taken, {"Account_Product_Code_Name__c": "TAKEN-1"})
    maple = world.sf.Account.create({"Name": "Maple"})["id"]
    await ls_create(world.ls, "Account", {**ACCOUNT, "name": "Maple", "currencyId": CAD, "sfdcid": maple})
    good_account = world.account_id
    world.account_id = maple
    cases["currency_mismatch"] = world.opportunity((fibre, 100.0))
    world.account_id = good_account
    good = world.opportunity((fibre, 100.0))
    open_one = world.opportunity((fibre, 100.0), stage="Prospecting")
    empty = world.opportunity()
    other = await make_package(world.ls)
    world.book_id = str(world.sf.Pricebook2.create({"Name": "Other", "IsActive": True})["id"])
    elsewhere = world.opportunity((world.product(other.frequency, "ELSE"), 100.0))
    account_of = {o: (maple if reason == "currency_mismatch" else good_account) for reason, o in cases.items()}
    events = [opportunity_event(account_of[o], o) for o in cases.values()]
    events += [opportunity_event(good_account, o) for o in (good, open_one, empty, elsewhere)]

    settings = await sync(world, producer_factory(), events)

    found = wait_until(lambda: letters(settings), 15, "the dead letters", until=lambda seen: len(seen) >= len(cases))
    by_opportunity = {ChangeEvent.from_bytes(letter.value or b"").record_id: letter for letter in found}
    assert set(by_opportunity) == set(cases.values())
    for reason, opportunity_id in cases.items():
        letter = by_opportunity[opportunity_id]
        assert letter.error_class == "PushRefusedError", (reason, letter.message)
        assert letter.message.startswith(f"{reason}:"), (reason, letter.message)
        opportunity = world.sf.Opportunity.get(opportunity_id)
        assert opportunity["LogiSense_Push_Status__c"] == "Failed"
        assert opportunity["LogiSense_Push_Reason__c"].startswith(f"{reason}:")
    assert "'amount' of at least 0" in by_opportunity[cases["logisense_rejected"]].message
    assert world.sf.Opportunity.get(good)["LogiSense_Push_Status__c"] == "Pushed"
    for skipped in (open_one, empty, elsewhere):
        assert world.sf.Opportunity.get(skipped)["LogiSense_Push_Status__c"] in (None, "")
    for reason in ("not_won", "not_logisense_price_book", "no_lines"):
        assert _metric("sfls_opportunity_pushes_total", outcome="skipped", reason=reason, trigger="automatic") >= 1


async def test_a_failed_account_dead_letters_its_opportunity_with_the_account_error(
    world: World, producer_factory: Callable[..., Producer]
) -> None:
    """An account that cannot be synced (an unknown Type) fails its opportunity too, with the account's error."""
    assert world.package is not None
    (account_id,) = seed_accounts(world.salesforce, 1, prefix="Broken", Type="No Such Type")
    world.account_id = account_id
    opportunity_id = world.opportunity((world.product(world.package.frequency, "FIB"), 100.0))

    settings = await sync(world, producer_factory(), [opportunity_event(account_id, opportunity_id)])

    [letter] = wait_until(lambda: letters(settings), 15, "the dead letter", until=lambda seen: len(seen) >= 1)
    assert letter.error_class == "MappingError"
    assert "No Such Type" in letter.message
    assert ChangeEvent.from_bytes(letter.value or b"").opportunity_id == opportunity_id
    assert world.ls.price_plans() == []


async def test_other_price_books_refuse_dead_letters_a_won_opportunity_on_another_book(
    world: World, producer_factory: Callable[..., Producer]
) -> None:
    """`opportunity.other_price_books: refuse`: a won opportunity on another book is Failed and dead-lettered as
    not_logisense_price_book (the default skips it)."""
    assert world.package is not None
    world.book_id = str(world.sf.Pricebook2.create({"Name": "Other", "IsActive": True})["id"])
    opportunity_id = world.opportunity((world.product(world.package.frequency, "ELSE"), 100.0))

    settings = await sync(
        world, producer_factory(), [opportunity_event(world.account_id, opportunity_id)], other_price_books="refuse"
    )

    [letter] = wait_until(lambda: letters(settings), 15, "the dead letter", until=lambda seen: len(seen) >= 1)
    assert letter.message.startswith("not_logisense_price_book:")
    assert world.sf.Opportunity.get(opportunity_id)["LogiSense_Push_Status__c"] == "Failed"
