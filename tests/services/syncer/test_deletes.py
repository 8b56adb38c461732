"""Deletes and edits: a deleted account is closed, a deleted contact removed, an edited contact updated in place."""

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


async def test_account_delete_closes_contact_delete_removes_contact_edit_updates_in_place(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """Next batch: account B deleted -> Closed; contact c1 deleted -> gone; c2 retyped, re-mailed -> same contact."""
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator)
    topics = create_syncer_topics(kafka_settings)
    a, b = seed_accounts(salesforce_emulator, 2)
    c1, c2 = seed_contacts(salesforce_emulator, [a], per_account=2)
    producer = producer_factory()
    publish(producer, topics.changes, [change(a), change(b)])
    await run_syncer(settings, lambda: committed(settings) >= 2)
    before = {x["sfdcid"]: x for x in logisense_emulator.accounts()}
    contact_ids = {c["identity"] for c in before[a]["contacts"]}

    rest = salesforce_emulator.rest()
    rest.delete("Contact", c1)
    rest.update("Contact", c2, {"Email": "new@example.com", "LogiSense_Contact_Type__c": "Shipping"})
    rest.delete("Account", b)
    publish(
        producer,
        topics.changes,
        [
            change(a, entity=Entity.CONTACT, change_type=ChangeType.DELETE, record_id=c1),
            change(a, entity=Entity.CONTACT, record_id=c2),
            change(b, change_type=ChangeType.DELETE),
        ],
    )
    await run_syncer(settings, lambda: committed(settings) >= 5)

    after = {x["sfdcid"]: x for x in logisense_emulator.accounts()}
    assert after[b]["accountStatusTypeName"] == "Closed"
    (remaining,) = after[a]["contacts"]
    assert remaining["identity"] in contact_ids
    assert remaining["contactTypeName"] == "Shipping"
    assert_same_state(salesforce_emulator, logisense_emulator, settings)
    assert logisense_emulator.count(resource="Account", operation="create") == 2
