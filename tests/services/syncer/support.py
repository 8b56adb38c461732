"""Helpers for syncer tests: change events, topics, reading a topic back."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

from confluent_kafka import Message, Producer

from shared import kafka
from shared.events import ChangeEvent, ChangeType, Entity
from shared.kafka_reader import read_to_end
from shared.settings import KafkaSettings

_counter = itertools.count(1)


def change(
    account_id: str,
    *,
    entity: Entity = Entity.ACCOUNT,
    change_type: ChangeType = ChangeType.UPDATE,
    record_id: str | None = None,
    fields: dict[str, object] | None = None,
) -> ChangeEvent:
    """A change event as the listener would publish it."""
    return ChangeEvent(
        event_id=uuid.uuid4().hex,
        entity=entity,
        change_type=change_type,
        record_id=record_id or account_id,
        account_id=account_id,
        changed_fields=tuple(fields or ()),
        fields=dict(fields or {}),
        commit_timestamp=datetime.now(UTC),
        replay_id=next(_counter),
    )


def create_syncer_topics(settings: KafkaSettings) -> kafka.Topics:
    topics = kafka.Topics(settings.topic_prefix)
    wanted = {topics.changes, topics.changes_dlt, topics.requests}
    kafka.ensure_topics(settings, [s for s in topics.specs(settings) if s.name in wanted])
    return topics


def publish(producer: Producer, topic: str, events: list[ChangeEvent]) -> None:
    kafka.produce_and_flush(producer, topic, ((e.key, e.to_bytes(), list(e.headers())) for e in events))


def read_all(settings: KafkaSettings, topic: str) -> list[Message]:
    return list(read_to_end(settings, topic, timeout=5))
