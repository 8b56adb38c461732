"""Integration tests on the real broker: item records, tombstone state from the compacted topic, dead letters."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from services.importer.publish import HASH_HEADER, Publisher, live_ids, read_topic
from shared.deadletter import ERROR_CLASS, ERROR_MESSAGE, parse_dead_letter
from shared.events import RequestRecord, RequestStatus
from shared.settings import KafkaSettings

pytestmark = pytest.mark.integration


def test_items_are_keyed_by_logisense_id_with_the_hash_header(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    """An item record has the LogiSense id as key, the item JSON as value, and entity and hash headers."""
    topic = topic_factory(compacted=True)
    publisher = Publisher(kafka_settings)
    publisher.item(topic, "package", 12, {"identity": 12, "name": "Fiber"}, "abc123")
    publisher.flush()
    [message] = list(read_topic(kafka_settings, topic))
    assert message.key() == b"12"
    assert json.loads(message.value() or b"") == {"identity": 12, "name": "Fiber"}
    headers = dict(message.headers() or [])
    assert headers["entity"] == b"package"
    assert headers[HASH_HEADER] == b"abc123"
    assert publisher.acked == 1


def test_live_ids_are_the_keys_whose_latest_record_is_not_a_tombstone(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    """The last full run's ids come from the topic: later values revive, tombstones remove, junk keys are ignored."""
    topic = topic_factory(partitions=2, compacted=True)
    publisher = Publisher(kafka_settings)
    for identity in (1, 2, 3, 4):
        publisher.item(topic, "state", identity, {"identity": identity}, "h")
    publisher.tombstone(topic, "state", 2)
    publisher.tombstone(topic, "state", 4)
    publisher.item(topic, "state", 4, {"identity": 4}, "h2")
    publisher.produce(topic, b"not-an-id", b"{}")
    publisher.flush()
    assert live_ids(kafka_settings, topic) == {1, 3, 4}


def test_live_ids_of_an_empty_or_missing_topic(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    """An empty topic means no previous ids; a missing topic means the state is unknown (None)."""
    assert live_ids(kafka_settings, topic_factory(compacted=True)) == set()
    assert live_ids(kafka_settings, f"{kafka_settings.topic_prefix}.catalogue.missing") is None


def test_dead_letter_and_request_records(kafka_settings: KafkaSettings, topic_factory: Callable[..., str]) -> None:
    """A rejected record carries entity, LogiSense id and Salesforce's reason; a request record round-trips."""
    dlt, requests = topic_factory(), topic_factory()
    publisher = Publisher(kafka_settings)
    publisher.dead_letter(
        dlt,
        "package",
        7,
        record={"Name": "x" * 100},
        error="STRING_TOO_LONG: too long (Name)",
        response='[{"statusCode": "STRING_TOO_LONG"}]',
    )
    record = RequestRecord(
        request_id="r1",
        service="importer",
        kind="import:package",
        status=RequestStatus.FAILED,
        key="package",
        started_at=datetime.now(UTC),
        duration_seconds=1.5,
        reason="package 7: STRING_TOO_LONG",
        counts={"fetched": 3, "failed": 1},
    )
    publisher.request(requests, record)
    publisher.flush()
    [letter] = [parse_dead_letter(m) for m in read_topic(kafka_settings, dlt)]
    assert letter.key == b"7"
    assert letter.headers[ERROR_CLASS] == "SalesforceRejected"
    assert letter.headers[ERROR_MESSAGE] == "STRING_TOO_LONG: too long (Name)"
    assert dict(letter.original_headers) == {"entity": b"package", "logisense_id": b"7"}
    [logged] = [RequestRecord.from_bytes(m.value() or b"") for m in read_topic(kafka_settings, requests)]
    assert logged == record
