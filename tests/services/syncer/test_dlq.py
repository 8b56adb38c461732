"""Dead letters end to end: a bad account is dead-lettered with a readable reason; replay after the fix delivers it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from services.cli import app
from services.syncer.dlq import DlqFilter, dead_letters, parse_time
from shared.deadletter import REPLAYED_AT, DeadLetter
from shared.kafka import Topics
from shared.settings import KafkaSettings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.syncer.e2e import committed, run_syncer, seed_accounts, settings_with_notes
from tests.services.syncer.support import change, create_syncer_topics, publish, read_all

pytestmark = pytest.mark.integration


def cli(kafka_settings: KafkaSettings, *args: str) -> str:
    env = {
        "SFLS_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "SFLS_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "COLUMNS": "250",
    }
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def json_lines(output: str) -> list[dict[str, Any]]:
    """`--json` output parsed line by line: every non-empty line must be one compact JSON object."""
    lines = output.splitlines()
    assert lines, "no output"
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(item, dict) for item in parsed), parsed
    return parsed


def assert_json_lines(kafka_settings: KafkaSettings, letters: list[DeadLetter]) -> None:
    """`sfls dlq list|show --json` and `sfls requests --json` print one object per line (for jq -c and grep)."""
    listed = json_lines(cli(kafka_settings, "dlq", "list", "--json"))
    assert [(item["partition"], item["offset"]) for item in listed] == [(lt.partition, lt.offset) for lt in letters]
    first = letters[0]
    (shown,) = json_lines(cli(kafka_settings, "dlq", "show", f"{first.partition}:{first.offset}", "--json"))
    assert shown == listed[0]
    failed = json_lines(cli(kafka_settings, "requests", "--status", "Failed", "--json"))
    assert {item["status"] for item in failed} == {"Failed"}
    assert {item["key"] for item in failed} >= {(lt.key or b"").decode() for lt in letters}


async def test_validation_error_dead_letters_only_its_account_and_replay_delivers_it(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """A LogiSense 400 and split invoice recipients dead-letter only their accounts; replay after the fix lands it."""
    settings = settings_with_notes(kafka_settings, salesforce_emulator, logisense_emulator)
    topics = create_syncer_topics(kafka_settings)
    good = seed_accounts(salesforce_emulator, 3, prefix="Good", Description="Key account")
    (bad,) = seed_accounts(salesforce_emulator, 1, prefix="Bad", Description="x" * 300)
    (split,) = seed_accounts(
        salesforce_emulator,
        1,
        prefix="Split",
        Usage_Invoice_Recipient__c=good[0],
        Subscription_Invoice_Recipient__c=good[1],
    )
    publish(producer_factory(), topics.changes, [change(a) for a in [*good, bad, split]])

    await run_syncer(settings, lambda: committed(settings) >= 5)

    letters = dead_letters(kafka_settings, topics.changes_dlt)
    reasons = {(letter.key or b"").decode(): letter for letter in letters}
    assert set(reasons) == {bad, split}
    assert reasons[bad].error_class == "RejectedError"
    assert "notes" in reasons[bad].message
    assert reasons[bad].headers["sfls.error.http_status"] == "400"
    assert reasons[split].error_class == "MappingError"
    assert "no split" in reasons[split].message
    landed = {a["sfdcid"]: a for a in logisense_emulator.accounts()}
    assert set(landed) == set(good)

    listed = cli(kafka_settings, "dlq", "list", "--error-class", "RejectedError")
    assert bad in listed
    assert split not in listed
    assert_json_lines(kafka_settings, letters)
    assert "would replay 1" in cli(kafka_settings, "dlq", "replay", "--key", bad, "--dry-run")
    assert len(read_all(kafka_settings, topics.changes)) == 5

    salesforce_emulator.rest().update("Account", bad, {"Description": "Fixed"})
    assert "replayed 1 dead letter" in cli(kafka_settings, "dlq", "replay", "--key", bad)
    changes = read_all(kafka_settings, topics.changes)
    replayed = [m for m in changes if any(k == REPLAYED_AT for k, _ in m.headers() or [])]
    assert len(replayed) == 1
    assert replayed[0].key() == bad.encode()
    assert replayed[0].value() == reasons[bad].value

    await run_syncer(settings, lambda: committed(settings) >= 6)

    landed = {a["sfdcid"]: a for a in logisense_emulator.accounts()}
    assert landed[bad]["notes"] == "Fixed"
    assert split not in landed
    assert "Failed" in cli(kafka_settings, "requests", "--status", "Failed", "--kind", "account_sync")


def test_dlq_filters_by_time() -> None:
    """Relative and ISO times parse, and a filter outside the failure time matches nothing."""
    since = parse_time("1h")
    assert parse_time("2026-01-31T12:00").tzinfo is not None
    assert DlqFilter(since=since).since == since
    assert Topics("x").changes_dlt == "x.changes.dlt"
