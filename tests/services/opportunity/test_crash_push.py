"""kill -9 of the syncer in the middle of an automatic push, twice, then a restart: no duplicate code or entry.

The LogiSense emulator holds a request open (`hang`) at a chosen step, so the kill lands there for certain:
first while the account's price plan is being created (the product codes exist, named on the lines), then,
after a restart, while the entries' PATCH is in flight. The third syncer finishes the push.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer

from shared.events import ChangeEvent, ChangeType, Entity
from tests.reliability.support import pipeline
from tests.services.opportunity.world import World, expected_entries, plan_entries
from tests.services.syncer.support import create_syncer_topics, publish
from tests.waiting import wait_until

pytestmark = [pytest.mark.failure, pytest.mark.integration]


def _hung(world: World, resource: str, method: str) -> bool:
    """True once a request of the hanging rule is being held (the rule has fired)."""
    rules = world.ls.admin("GET", "faults")["faults"]
    return any(r["resource"] == resource and r["method"] == method and r.get("fired", 0) > 0 for r in rules)


@pytest.mark.timeout(240)
def test_kill_9_during_an_automatic_push_leaves_no_duplicate(
    world: World, producer_factory: Callable[..., Producer], tmp_path: Path
) -> None:
    """Two kill -9s mid-push (plan create, entries PATCH), then a clean restart: exactly one code per line, one
    plan, the expected entries once, the opportunity Pushed."""
    assert world.package is not None
    entry = world.product(world.package.frequency, "FIB")
    opportunity_id = world.opportunity((entry, 100.0), (entry, 60.0), (entry, 30.0))
    topics = create_syncer_topics(world.kafka)
    event = ChangeEvent(
        event_id=uuid.uuid4().hex,
        entity=Entity.OPPORTUNITY,
        change_type=ChangeType.UPDATE,
        record_id=opportunity_id,
        account_id=world.account_id,
        commit_timestamp=datetime.now(UTC),
        opportunity_id=opportunity_id,
    )
    publish(producer_factory(), topics.changes, [event])
    env = {"SFLS_OPPORTUNITY__AUTO_PUSH": "true"}
    with pipeline(
        world.kafka, world.salesforce, world.ls, tmp_path, sync={"interval_minutes": 0.01}, env_extra=env
    ) as run:
        for resource, method in (("Account/PricePlan", "POST"), ("Account/PricePlan", "PATCH")):
            world.ls.faults(resource=resource, method=method, hang=True)
            held = run.start_syncer()
            wait_until(
                lambda resource=resource, method=method: _hung(world, resource, method),
                60,
                f"the syncer held at {method} {resource}",
                until=bool,
                context=lambda held=held: held.tail(2000),
            )
            held.kill()
            world.ls.clear_faults()
        names = [line["Account_Product_Code_Name__c"] for line in world.lines(opportunity_id)]
        assert names == ["FIB-1", "FIB-2", "FIB-3"]  # named before the first kill, kept across both
        syncer = run.start_syncer()
        wait_until(
            lambda: world.sf.Opportunity.get(opportunity_id)["LogiSense_Push_Status__c"],
            90,
            "the opportunity Pushed after the restart",
            until=lambda status: status == "Pushed",
            context=lambda: syncer.tail(2000),
        )
    plans = world.ls.price_plans()
    assert len(plans) == 1
    codes = [e["productCode"] for e in plans[0]["entries"]]
    assert sorted(codes) == sorted(["FIB-1", "FIB-2", "FIB-3"] * len(world.package.services))
    assert plan_entries(world.ls) == (
        expected_entries(world.package, "FIB-1", 1.0)
        | expected_entries(world.package, "FIB-2", 0.6)
        | expected_entries(world.package, "FIB-3", 0.3)
    )
    created = world.ls.count(resource="Account/ProductCode", operation="create", status=201)
    assert created == 3, f"{created} product codes created for 3 lines"
    assert world.ls.count(resource="Account/PricePlan", operation="create", status=201) == 1
