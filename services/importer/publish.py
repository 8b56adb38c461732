"""Kafka side of an import: items to compacted topics, tombstones, dead letters, the request log.

Items: key = the LogiSense id (decimal text), value = the item's JSON as LogiSense returned it,
headers `entity` and `sfls.hash`. Publishing is asynchronous (delivery callbacks count acks and
failures); `flush()` waits for every ack before the entity is reported.

Tombstones: the state of "the last full run" is the compacted topic itself. Before a full run the
importer reads the topic from the beginning to the end offsets of that moment and keeps only the
ids whose latest record is not a tombstone (a set of ints: ~4 MB at 100,000 ids, values are
discarded as they are read). Each fetched id is removed from the set; what remains after the
fetch disappeared from LogiSense and gets a tombstone (key, null value). A filtered run (invoices
of one account) publishes no tombstones. If the topic was deleted, the importer cannot know what
disappeared and publishes none (it says so in the log).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from shared import kafka
from shared.deadletter import Failure, count_dead_letter, dead_letter_headers
from shared.errors import TransientError
from shared.events import RequestRecord
from shared.kafka_reader import read_to_end
from shared.settings import KafkaSettings

HASH_HEADER = "sfls.hash"
SERVICE = "importer"
Headers = kafka.Headers


class Publisher:
    """One idempotent producer for a run; counts acknowledged and failed deliveries."""

    def __init__(self, settings: KafkaSettings, producer: Producer | None = None) -> None:
        tuning: dict[str, Any] = {"linger.ms": 20, "batch.size": 1_000_000}
        self._producer = producer or kafka.producer(settings, **tuning)
        self.acked = 0
        self.failed = 0
        self.last_error = ""

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.acked += 1
        else:
            self.failed += 1
            self.last_error = err.str()

    def produce(self, topic: str, key: bytes, value: bytes | None, headers: Headers | None = None) -> None:
        kafka.produce(self._producer, topic, key, value, headers, on_delivery=self._on_delivery)
        self._producer.poll(0)

    def item(self, topic: str, entity: str, identity: int | str, item: dict[str, Any], digest: str) -> None:
        value = json.dumps(item, separators=(",", ":"), default=str).encode()
        self.produce(
            topic, str(identity).encode(), value, [("entity", entity.encode()), (HASH_HEADER, digest.encode())]
        )

    def tombstone(self, topic: str, entity: str, identity: int) -> None:
        self.produce(topic, str(identity).encode(), None, [("entity", entity.encode())])

    def dead_letter(
        self, topic: str, entity: str, identity: int | str, *, record: dict[str, Any], error: str, response: str
    ) -> None:
        """A record Salesforce rejected: the record we sent, and why, in the importer's dead-letter topic."""
        failure = Failure(
            error_class="SalesforceRejected",
            message=error,
            response_excerpt=response,
            first_failure=datetime.now(UTC),
            last_failure=datetime.now(UTC),
        )
        headers = dead_letter_headers(
            failure, service=SERVICE, original=[("entity", entity), ("logisense_id", str(identity))]
        )
        value = json.dumps(record, separators=(",", ":"), default=str).encode()
        self.produce(topic, str(identity).encode(), value, list(headers))
        count_dead_letter(SERVICE, topic, failure)

    def request(self, topic: str, record: RequestRecord) -> None:
        self.produce(topic, record.key.encode(), record.to_bytes(), [("service", SERVICE.encode())])

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for every outstanding delivery; raise if some were not acknowledged."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise TransientError(f"{remaining} Kafka records were not acknowledged within {timeout:.0f} s")


def live_ids(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> set[int] | None:
    """Ids whose latest record in the compacted topic is a value, not a tombstone; None if no topic."""
    if not topic_exists(settings, topic, timeout):
        return None
    ids: set[int] = set()
    for message in read_topic(settings, topic, timeout):
        key = message.key()
        if not key or not key.isdigit():
            continue
        if message.value() is None:
            ids.discard(int(key))
        else:
            ids.add(int(key))
    return ids


def topic_exists(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> bool:
    """Whether the topic exists (asked without naming it, so a broker that auto-creates topics does not)."""
    metadata = kafka.admin(settings).list_topics(timeout=timeout).topics.get(topic)
    return metadata is not None and metadata.error is None


def read_topic(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> Iterator[Message]:
    """Every record of a topic from the beginning to the end offsets of now (assigned, never committed)."""
    # Small prefetch: the ids are all we keep, so librdkafka's default 64 MiB queue is only RSS.
    return read_to_end(settings, topic, timeout=timeout, **{"queued.max.messages.kbytes": 8192})
