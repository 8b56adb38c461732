"""The syncer end to end: real broker, both emulators, change events produced straight to the topic."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from shared.events import ChangeType, Entity
from shared.settings import KafkaSettings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.syncer.e2e import (
    assert_same_state,
    committed,
    run_syncer,
    seed_accounts,
    seed_contacts,
    syncer_settings,
)
from tests.services.syncer.support import change, create_syncer_topics, publish

pytestmark = pytest.mark.integration


async def test_thousand_changes_on_hundred_accounts_make_at_most_hundred_account_writes(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """1,000 change events on 100 accounts in one interval: ≤ 100 account writes, LogiSense equals Salesforce."""
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator, interval_minutes=0.1)
    topics = create_syncer_topics(kafka_settings)
    accounts = seed_accounts(salesforce_emulator, 100)
    contacts = seed_contacts(salesforce_emulator, accounts[:30])
    events = []
    for round_ in range(8):
        events += [change(a, fields={"Name": f"v{round_}"}) for a in accounts]
    events += [change(a, entity=Entity.CONTACT, record_id=c) for a, c in zip(accounts[:30], contacts, strict=True)]
    while len(events) < 1000:
        events.append(change(accounts[len(events) % 100], change_type=ChangeType.RESYNC))
    publish(producer_factory(), topics.changes, events)

    await run_syncer(settings, lambda: committed(settings) >= 1000)

    account_writes = sum(logisense_emulator.count(resource="Account", operation=op) for op in ("create", "update"))
    assert 0 < account_writes <= 100
    assert_same_state(salesforce_emulator, logisense_emulator, settings)


async def test_parent_and_child_in_one_batch_land_parent_first(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """A child, its parent and grandparent changed together: each is created after the account it points to."""
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator)
    topics = create_syncer_topics(kafka_settings)
    (top,) = seed_accounts(salesforce_emulator, 1, prefix="Top")
    (middle,) = seed_accounts(salesforce_emulator, 1, prefix="Middle", ParentId=top)
    (leaf,) = seed_accounts(salesforce_emulator, 1, prefix="Leaf", ParentId=middle)
    publish(producer_factory(), topics.changes, [change(leaf), change(middle), change(top)])

    await run_syncer(settings, lambda: committed(settings) >= 3)

    by_link = {a["sfdcid"]: a for a in logisense_emulator.accounts()}
    assert by_link[leaf]["parentAccountId"] == by_link[middle]["identity"]
    assert by_link[middle]["parentAccountId"] == by_link[top]["identity"]
    assert by_link[top]["identity"] < by_link[middle]["identity"] < by_link[leaf]["identity"]
    assert_same_state(salesforce_emulator, logisense_emulator, settings)


async def test_parent_outside_the_batch_is_synced_first(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """A child whose parent is in no batch yet pulls the parent in, so the hierarchy lands whole."""
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator)
    topics = create_syncer_topics(kafka_settings)
    (parent,) = seed_accounts(salesforce_emulator, 1, prefix="Parent")
    (child,) = seed_accounts(salesforce_emulator, 1, prefix="Child", ParentId=parent)
    publish(producer_factory(), topics.changes, [change(child)])

    await run_syncer(settings, lambda: committed(settings) >= 1)

    by_link = {a["sfdcid"]: a for a in logisense_emulator.accounts()}
    assert set(by_link) == {parent, child}
    assert by_link[child]["parentAccountId"] == by_link[parent]["identity"]
    assert by_link[parent]["identity"] < by_link[child]["identity"]  # identities count up: the parent came first
    assert_same_state(salesforce_emulator, logisense_emulator, settings)


async def test_injected_5xx_and_429_still_converge(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """With 30 % of LogiSense requests answering 503 or 429, every account still lands once and right."""
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator, max_attempts=14)
    topics = create_syncer_topics(kafka_settings)
    accounts = seed_accounts(salesforce_emulator, 30)
    seed_contacts(salesforce_emulator, accounts[:10])
    logisense_emulator.faults(probability=0.2, status=503, seed=7)
    logisense_emulator.faults(probability=0.125, status=429, retry_after=0, seed=8)
    publish(producer_factory(), topics.changes, [change(a) for a in accounts])

    await run_syncer(settings, lambda: committed(settings) >= 30)

    failed = logisense_emulator.count(status=503) + logisense_emulator.count(status=429)
    assert failed > 0
    logisense_emulator.clear_faults()
    assert_same_state(salesforce_emulator, logisense_emulator, settings)
