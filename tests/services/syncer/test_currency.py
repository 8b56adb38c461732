"""Account currency: a multi-currency org's CurrencyIsoCode becomes the LogiSense currency, set once, shared in a
hierarchy; a single-currency org keeps LogiSense's default currency and no checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from services.syncer.dlq import DlqFilter, dead_letters
from shared.deadletter import DeadLetter
from shared.mapping import CURRENCY_FIELD, account_query_fields, account_trigger_fields
from shared.settings import KafkaSettings, Settings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.syncer.e2e import assert_same_state, committed, run_syncer, seed_accounts, syncer_settings
from tests.services.syncer.support import change, create_syncer_topics, publish
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def multi_currency(salesforce_emulator: SalesforceEmulator) -> Iterator[SalesforceEmulator]:
    """The emulator as a multi-currency org (USD first, then EUR, GBP, CAD, AUD, JPY), reset when the test ends."""
    salesforce_emulator.tune(multi_currency=True)
    yield salesforce_emulator
    salesforce_emulator.admin("POST", "reset")  # back to a single-currency org for every later test


async def currency_ids(ls: LogisenseEmulator) -> dict[str, int]:
    """LogiSense currency ids by ISO code."""
    async with ls.client() as client:
        return {str(c["code"]): int(c["identity"]) for c in await client.list("Currency")}


def letters_by_key(settings: Settings, count: int, error_class: str | None = None) -> dict[str, DeadLetter]:
    """The dead letters of the syncer's changes topic (of `error_class`, when given), once there are `count`."""
    topic = f"{settings.kafka.topic_prefix}.changes.dlt"
    found = wait_until(
        lambda: dead_letters(settings.kafka, topic, DlqFilter(error_class=error_class)),
        15,
        f"{count} dead letters",
        until=lambda letters: len(letters) >= count,
    )
    return {(letter.key or b"").decode(): letter for letter in found}


def by_link(ls: LogisenseEmulator) -> dict[str, dict[str, Any]]:
    return {str(a["sfdcid"]): a for a in ls.accounts()}


async def test_multi_currency_org_creates_accounts_in_their_currency(
    kafka_settings: KafkaSettings,
    multi_currency: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """EUR, GBP and USD accounts land in those LogiSense currencies; an AUD one LogiSense lacks is a MappingError."""
    settings = syncer_settings(kafka_settings, multi_currency, logisense_emulator)
    topics = create_syncer_topics(kafka_settings)
    codes = ("EUR", "GBP", "USD", "AUD")
    accounts = {code: seed_accounts(multi_currency, 1, prefix=code, CurrencyIsoCode=code)[0] for code in codes}
    publish(producer_factory(), topics.changes, [change(a) for a in accounts.values()])

    await run_syncer(settings, lambda: committed(settings) >= len(codes))

    ids = await currency_ids(logisense_emulator)
    landed = by_link(logisense_emulator)
    assert set(landed) == {accounts[c] for c in ("EUR", "GBP", "USD")}
    for code in ("EUR", "GBP", "USD"):
        assert landed[accounts[code]]["currencyId"] == ids[code]
    letters = letters_by_key(settings, 1)
    assert set(letters) == {accounts["AUD"]}
    assert letters[accounts["AUD"]].error_class == "MappingError"
    assert "CurrencyIsoCode 'AUD'" in letters[accounts["AUD"]].message
    assert "add a Currency with code 'AUD' in LogiSense" in letters[accounts["AUD"]].message


async def test_currency_change_after_sync_is_dead_lettered_and_nothing_is_written(
    kafka_settings: KafkaSettings,
    multi_currency: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """A synced EUR account moved to GBP (and renamed) is a CurrencyError; its LogiSense account stays as it was."""
    settings = syncer_settings(kafka_settings, multi_currency, logisense_emulator)
    topics = create_syncer_topics(kafka_settings)
    (account,) = seed_accounts(multi_currency, 1, CurrencyIsoCode="EUR")
    producer = producer_factory()
    publish(producer, topics.changes, [change(account)])
    await run_syncer(settings, lambda: committed(settings) >= 1)
    before = by_link(logisense_emulator)[account]
    updates = logisense_emulator.count(resource="Account", operation="update")

    multi_currency.rest().update("Account", account, {"CurrencyIsoCode": "GBP", "Name": "Renamed"})
    publish(producer, topics.changes, [change(account, fields={"CurrencyIsoCode": "GBP", "Name": "Renamed"})])
    await run_syncer(settings, lambda: committed(settings) >= 2)

    letter = letters_by_key(settings, 1, error_class="CurrencyError")[account]
    assert "cannot change an account's currency once set" in letter.message
    assert "now in GBP" in letter.message
    assert "bills in EUR" in letter.message
    assert "set the Salesforce account's currency back to EUR" in letter.message
    assert by_link(logisense_emulator)[account] == before
    assert logisense_emulator.count(resource="Account", operation="update") == updates


async def test_child_in_another_currency_than_its_parent_is_dead_lettered(
    kafka_settings: KafkaSettings,
    multi_currency: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """Children in EUR (parent) and GBP (invoice recipient) of a USD account fail; the parent and a USD child land."""
    settings = syncer_settings(kafka_settings, multi_currency, logisense_emulator)
    topics = create_syncer_topics(kafka_settings)
    (parent,) = seed_accounts(multi_currency, 1, prefix="Parent", CurrencyIsoCode="USD")
    (euro,) = seed_accounts(multi_currency, 1, prefix="Euro", CurrencyIsoCode="EUR", ParentId=parent)
    (pound,) = seed_accounts(
        multi_currency,
        1,
        prefix="Pound",
        CurrencyIsoCode="GBP",
        Usage_Invoice_Recipient__c=parent,
        Subscription_Invoice_Recipient__c=parent,
    )
    (dollar,) = seed_accounts(multi_currency, 1, prefix="Dollar", CurrencyIsoCode="USD", ParentId=parent)
    multi_currency.seed("Contact", [{"AccountId": euro, "FirstName": "Eu", "LastName": "Ro", "Email": "e@x.com"}])
    publish(producer_factory(), topics.changes, [change(euro), change(pound), change(dollar)])  # parent pulled in

    await run_syncer(settings, lambda: committed(settings) >= 3)

    letters = letters_by_key(settings, 2)
    assert set(letters) == {euro, pound}
    assert {letter.error_class for letter in letters.values()} == {"CurrencyError"}
    assert f"its parent {parent} bills in USD" in letters[euro].message
    assert f"its invoice recipient {parent} bills in USD" in letters[pound].message
    landed = by_link(logisense_emulator)
    assert set(landed) == {parent, dollar}
    assert landed[dollar]["parentAccountId"] == landed[parent]["identity"]
    assert (
        landed[parent]["currencyId"] == landed[dollar]["currencyId"] == (await currency_ids(logisense_emulator))["USD"]
    )


async def test_single_currency_org_gets_the_default_currency_and_no_checks(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """Without CurrencyIsoCode, accounts get LogiSense's default currency and a parent in another one is no error."""
    assert "CurrencyIsoCode" not in {f["name"] for f in salesforce_emulator.rest().describe("Account")["fields"]}
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator)
    topics = create_syncer_topics(kafka_settings)
    (parent,) = seed_accounts(salesforce_emulator, 1, prefix="Parent")
    (child,) = seed_accounts(salesforce_emulator, 1, prefix="Child", ParentId=parent)
    producer = producer_factory()
    publish(producer, topics.changes, [change(parent)])
    await run_syncer(settings, lambda: committed(settings) >= 1)
    ids = await currency_ids(logisense_emulator)
    default = ids["USD"]  # the seed's default currency
    assert by_link(logisense_emulator)[parent]["currencyId"] == default
    async with logisense_emulator.client() as client:
        await client.update("Account", int(by_link(logisense_emulator)[parent]["identity"]), {"currencyId": ids["CAD"]})

    publish(producer, topics.changes, [change(child), change(parent)])
    await run_syncer(settings, lambda: committed(settings) >= 3)

    landed = by_link(logisense_emulator)
    assert landed[child]["currencyId"] == default
    assert landed[child]["parentAccountId"] == landed[parent]["identity"]
    assert landed[parent]["currencyId"] == ids["CAD"]  # never written after the create
    assert not dead_letters(kafka_settings, f"{kafka_settings.topic_prefix}.changes.dlt")
    assert_same_state(salesforce_emulator, logisense_emulator, settings)


def test_currency_is_a_trigger_field_but_read_only_in_a_multi_currency_org() -> None:
    """A CurrencyIsoCode change resyncs the account; the Account SOQL selects it only for a multi-currency org."""
    settings = Settings()
    assert CURRENCY_FIELD in account_trigger_fields(settings)
    assert CURRENCY_FIELD not in account_query_fields(settings)
    assert account_query_fields(settings, multi_currency=True)[-1] == CURRENCY_FIELD
