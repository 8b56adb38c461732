"""Contact creation is atomic: the contact and all its points in one LogiSense request and transaction.

A contact created as `POST Contact` then `POST Contact/Point` is left without its `sfdcid` link when
the second request never lands (a kill -9 in between, a failure); one `PATCH Account/{id}` with the
contact and its points either lands whole or not at all. The faults below stand in for the crash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from services.syncer.dlq import dead_letters
from shared.settings import KafkaSettings, MappingSettings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.syncer.e2e import (
    CONTACT_POINTS,
    assert_same_state,
    committed,
    run_syncer,
    seed_accounts,
    seed_contacts,
    settings_with_notes,
    syncer_settings,
)
from tests.services.syncer.support import change, create_syncer_topics, publish

pytestmark = pytest.mark.integration

WRITES = ("create", "update", "patch", "delete")


def unlinked_contacts(ls: LogisenseEmulator) -> list[dict[str, Any]]:
    """LogiSense contacts without an `sfdcid` point: what an interrupted two-request create leaves."""
    return [
        contact
        for account in ls.accounts()
        for contact in account.get("contacts", [])
        if not any(p.get("contactPointTypeName") == "sfdcid" and p.get("value") for p in contact["contactPoints"])
    ]


def writes(ls: LogisenseEmulator, resource: str | None = None, status: int | None = None) -> int:
    return sum(ls.count(resource=resource, operation=op, status=status) for op in WRITES)


async def test_new_contact_is_one_write_and_never_needs_a_point_create(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """Default setting, every `POST Contact/Point` refused: 6 new contacts land linked, in 6 writes."""
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator)
    assert settings.sync.atomic_contact_create
    topics = create_syncer_topics(kafka_settings)
    accounts = seed_accounts(salesforce_emulator, 3)
    contacts = seed_contacts(salesforce_emulator, accounts, per_account=2)
    logisense_emulator.faults(resource="Contact/Point", method="POST", operation="create", status=400)
    logisense_emulator.faults(resource="Contact", method="POST", operation="create", status=400)
    publish(producer_factory(), topics.changes, [change(a) for a in accounts])

    await run_syncer(settings, lambda: committed(settings) >= len(accounts))

    assert dead_letters(kafka_settings, topics.changes_dlt) == []
    assert unlinked_contacts(logisense_emulator) == []
    assert_same_state(salesforce_emulator, logisense_emulator, settings)
    assert logisense_emulator.count(resource="Contact", operation="create") == 0
    assert logisense_emulator.count(resource="Contact/Point", operation="create") == 0
    assert logisense_emulator.count(resource="Account", operation="patch", status=200) == len(contacts)
    assert writes(logisense_emulator) == len(accounts) + len(contacts)  # account creates, then one per contact


async def test_a_contact_whose_point_fails_inside_the_patch_leaves_nothing_behind(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """A point LogiSense rejects rolls back its contact too; once fixed in Salesforce, the contact lands linked."""
    points = {name: {**mapping, "email": "Description"} for name, mapping in CONTACT_POINTS.items()}
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator).model_copy(
        update={"mappings": MappingSettings(contact_points=points)}
    )
    topics = create_syncer_topics(kafka_settings)
    good, bad = seed_accounts(salesforce_emulator, 2)
    seed_contacts(salesforce_emulator, [good, bad])
    (bad_contact,) = [c["Id"] for c in salesforce_emulator.records("Contact") if c["AccountId"] == bad]
    rest = salesforce_emulator.rest()
    rest.update("Contact", bad_contact, {"Description": "x" * 4001})  # LogiSense point values hold 4,000
    for contact in salesforce_emulator.records("Contact"):
        if contact["AccountId"] == good:
            rest.update("Contact", contact["Id"], {"Description": "ok@example.com"})
    producer = producer_factory()
    publish(producer, topics.changes, [change(good), change(bad)])

    await run_syncer(settings, lambda: committed(settings) >= 2)

    (letter,) = dead_letters(kafka_settings, topics.changes_dlt)
    assert (letter.key or b"").decode() == bad
    assert letter.error_class == "RejectedError"
    landed = {a["sfdcid"]: a for a in logisense_emulator.accounts()}
    assert (
        landed[bad].get("contacts", []) == []
    )  # the contact was written in the PATCH, then rolled back with its point
    assert len(landed[good].get("contacts", [])) == 1
    assert unlinked_contacts(logisense_emulator) == []
    assert logisense_emulator.count(resource="Account", operation="patch", status=400) == 1

    rest.update("Contact", bad_contact, {"Description": "fixed@example.com"})
    publish(producer, topics.changes, [change(bad)])
    await run_syncer(settings, lambda: committed(settings) >= 3)

    (contact,) = {a["sfdcid"]: a for a in logisense_emulator.accounts()}[bad]["contacts"]
    values = {p["contactPointTypeName"]: p.get("value") for p in contact["contactPoints"]}
    assert values["sfdcid"] == bad_contact
    assert values["email"] == "fixed@example.com"
    assert unlinked_contacts(logisense_emulator) == []


async def test_two_request_create_when_the_setting_is_off(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """`atomic_contact_create=false`: `POST Contact` and `POST Contact/Point`; a failed link point leaves an
    unlinked contact (the crash window), which the account's next sync takes over instead of duplicating."""
    settings = syncer_settings(
        kafka_settings, salesforce_emulator, logisense_emulator, atomic_contact_create=False, max_attempts=1
    )
    topics = create_syncer_topics(kafka_settings)
    (account,) = seed_accounts(salesforce_emulator, 1)
    seed_contacts(salesforce_emulator, [account])
    logisense_emulator.faults(resource="Contact/Point", method="POST", operation="create", status=503, count=1)
    producer = producer_factory()
    publish(producer, topics.changes, [change(account)])

    await run_syncer(settings, lambda: committed(settings) >= 1)

    assert len(unlinked_contacts(logisense_emulator)) == 1
    (left,) = unlinked_contacts(logisense_emulator)

    publish(producer, topics.changes, [change(account)])
    await run_syncer(settings, lambda: committed(settings) >= 2)

    assert unlinked_contacts(logisense_emulator) == []
    (contact,) = {a["sfdcid"]: a for a in logisense_emulator.accounts()}[account]["contacts"]
    assert contact["identity"] == left["identity"]
    assert logisense_emulator.count(resource="Account", operation="patch") == 0
    assert_same_state(salesforce_emulator, logisense_emulator, settings)


async def test_account_waiting_for_a_failed_parent_is_dead_lettered_as_dependency_failed(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """A child whose parent LogiSense rejects: DependencyFailedError naming the parent and its RejectedError."""
    settings = settings_with_notes(kafka_settings, salesforce_emulator, logisense_emulator)
    topics = create_syncer_topics(kafka_settings)
    (parent,) = seed_accounts(salesforce_emulator, 1, prefix="Parent", Description="x" * 300)
    (child,) = seed_accounts(salesforce_emulator, 1, prefix="Child", ParentId=parent)
    publish(producer_factory(), topics.changes, [change(child), change(parent)])

    await run_syncer(settings, lambda: committed(settings) >= 2)

    letters = {(d.key or b"").decode(): d for d in dead_letters(kafka_settings, topics.changes_dlt)}
    assert letters[parent].error_class == "RejectedError"
    assert letters[child].error_class == "DependencyFailedError"
    assert f"account {parent}," in letters[child].message
    assert "could not be synced (RejectedError): " in letters[child].message
