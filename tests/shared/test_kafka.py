"""The Kafka layer against a real broker: produce, consume, commit, resume, topics, transactions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from shared import kafka
from shared.kafka_reader import committed_records, read_to_end
from shared.settings import KafkaSettings

pytestmark = pytest.mark.integration


def _consume(consumer: Consumer, count: int, timeout: float = 30.0) -> list[Message]:
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        kafka.raise_for_message(message)
        if message.error() is None:
            messages.append(message)
    return messages


def _drain(consumer: Consumer, quiet_seconds: float = 3.0) -> list[Message]:
    """Everything that arrives until the topic has been quiet for a while."""
    messages: list[Message] = []
    quiet_until = time.monotonic() + quiet_seconds
    while time.monotonic() < quiet_until:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            messages.append(message)
            quiet_until = time.monotonic() + quiet_seconds
    return messages


def test_a_full_local_queue_waits_instead_of_failing(
    topic_factory: Callable[..., str], producer_factory: Callable[..., Producer], kafka_settings: KafkaSettings
) -> None:
    """With room for two records in librdkafka's queue, producing 200 waits on BufferError and loses none."""
    topic = topic_factory()
    producer = producer_factory(**{"queue.buffering.max.messages": 2})
    records = [(None, str(i).encode(), []) for i in range(200)]
    assert kafka.produce_and_flush(producer, topic, records) == 200
    values = [m.value() for m in read_to_end(kafka_settings, topic)]
    assert sorted(values, key=lambda v: int(v or b"0")) == [str(i).encode() for i in range(200)]


def test_produce_and_consume_round_trip(
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., Producer],
    consumer_factory: Callable[..., Consumer],
) -> None:
    """Records produced by the idempotent producer arrive in order with keys and headers."""
    topic = topic_factory()
    records = [(f"k{i}".encode(), f"v{i}".encode(), [("entity", b"Account")]) for i in range(20)]
    assert kafka.produce_and_flush(producer_factory(), topic, records) == 20
    consumer = consumer_factory()
    consumer.subscribe([topic])
    received = _consume(consumer, 20)
    assert [m.value() for m in received] == [f"v{i}".encode() for i in range(20)]
    assert received[0].key() == b"k0"
    assert received[0].headers() == [("entity", b"Account")]


def test_restarted_consumer_resumes_after_the_committed_offset(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., Producer],
    consumer_factory: Callable[..., Consumer],
) -> None:
    """A consumer that committed 4 of 10 records and restarts gets exactly the other 6."""
    topic = topic_factory()
    kafka.produce_and_flush(producer_factory(), topic, [(None, str(i).encode(), []) for i in range(10)])
    group = f"resume-{uuid.uuid4().hex[:8]}"

    first = consumer_factory(group)
    first.subscribe([topic])
    processed = _consume(first, 10)
    assert len(processed) == 10
    for message in processed[:4]:  # only the first four are "done"
        first.store_offsets(message)
    first.commit(asynchronous=False)
    committed = first.committed([TopicPartition(topic, 0)], timeout=10)
    assert committed[0].offset == 4
    assert committed_records(kafka_settings, group, topic) == 4
    assert committed_records(kafka_settings, group, f"{topic}-missing") == 0
    first.close()

    second = consumer_factory(group)
    second.subscribe([topic])
    # Awaited with a deadline (joining the group can outlast a quiet period), then drained for any extra.
    resumed = _consume(second, 6) + _drain(second)
    assert [m.value() for m in resumed] == [str(i).encode() for i in range(4, 10)]


def test_read_committed_hides_aborted_transactions(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    consumer_factory: Callable[..., Consumer],
) -> None:
    """Records of an aborted transaction never reach a read_committed consumer; committed ones do."""
    topic = topic_factory()
    producer = kafka.producer(kafka_settings, transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)
    consumer = consumer_factory()
    consumer.subscribe([topic])
    assert [m.value() for m in _consume(consumer, 1) + _drain(consumer)] == [b"committed"]


def test_topics_get_their_cleanup_policy(kafka_settings: KafkaSettings) -> None:
    """ensure_topics creates every sfls topic, compacted where the design says, and is idempotent."""
    topics = kafka.Topics(kafka_settings.topic_prefix)
    specs = topics.specs(kafka_settings)
    kafka.ensure_topics(kafka_settings, specs)
    kafka.ensure_topics(kafka_settings, specs)  # second call: nothing to do, no error
    client = kafka.admin(kafka_settings)
    metadata = client.list_topics(timeout=10)
    assert {spec.name for spec in specs} <= set(metadata.topics)
    assert len(metadata.topics[topics.changes].partitions) == kafka_settings.partitions
    names = (topics.changes, topics.changes_dlt, topics.listener_checkpoints, topics.catalogue("package"))
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    configs = {res.name: future.result() for res, future in client.describe_configs(resources).items()}
    policies = {name: configs[name]["cleanup.policy"].value for name in names}
    assert policies == {
        topics.changes: "delete",
        topics.changes_dlt: "delete",
        topics.listener_checkpoints: "compact",
        topics.catalogue("package"): "compact",
    }


def test_unreachable_broker_surfaces_as_a_transient_error() -> None:
    """Creating topics on a broker nobody listens on fails with a readable transient error."""
    from shared.errors import TransientError

    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="none")
    with pytest.raises(TransientError, match=r"could not list Kafka topics: .*transport failure"):
        kafka.ensure_topics(settings, [kafka.TopicSpec("none.x", 1)], timeout=2)
