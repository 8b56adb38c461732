"""Reading Kafka without joining a group: a topic to its end, a partition's offsets, a group's progress.

`read_to_end` is the one way sfls reads a topic to its end: it assigns the partitions in the reader
group (`shared.kafka.reader_group`) and never commits. `committed_records` and `watermark_offsets` only
ask for offsets. Nothing here commits, so nothing here moves a consumer group's offsets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from shared.errors import TransientError
from shared.kafka import COORDINATOR_NOT_READY, consumer, raise_for_message, reader_group
from shared.settings import KafkaSettings

log = structlog.get_logger(__name__)


def read_to_end(
    settings: KafkaSettings, topic: str, *, tail: int | None = None, timeout: float = 30.0, **tuning: Any
) -> Iterator[Message]:
    """Every committed record of `topic` up to the end offsets of the moment it is called (or the last `tail`
    records of each partition): the one way sfls reads a topic to its end.

    Assigned, never committed, in the reader group. A topic that does not exist yields nothing. Raises
    TransientError naming the topic when no record arrives for `timeout` seconds before every partition
    reached its end, so a caller never acts on part of a topic believing it is all of it.
    """
    group = reader_group(settings.topic_prefix)
    reader = consumer(settings, group, **{"enable.partition.eof": True, **tuning})
    try:
        ends = _end_offsets(reader, topic, tail, timeout)
        deadline = time.monotonic() + timeout
        while ends:
            messages = reader.consume(1000, timeout=0.05)  # short waits: consume() waits for the whole count
            if messages:
                deadline = time.monotonic() + timeout
            elif time.monotonic() > deadline:
                left = ", ".join(f"{p} (end {end})" for p, end in sorted(ends.items()))
                raise TransientError(f"reading {topic} to its end stalled for {timeout:g} s; partitions left: {left}")
            for message in messages:
                try:
                    raise_for_message(message, group=group, group_operation="Describe", settings=settings)
                except TransientError:
                    if message.topic() == topic and message.partition() is not None:
                        raise
                    # A client-level hiccup (the group coordinator still loading, say): an assigned reader
                    # fetches without one, so it is no reason to stop reading. Refusals still raise.
                    log.debug("reader_client_error", topic=topic, error=str(message.error()))
                    continue
                if _before_end(message, ends):
                    yield message
    finally:
        reader.close()


def _end_offsets(reader: Consumer, topic: str, tail: int | None, timeout: float) -> dict[int, int]:
    """Assign the non-empty partitions of `topic` from their start (or `tail` before their end); their ends."""
    metadata = reader.list_topics(timeout=timeout).topics.get(topic)  # not by name: no auto-creation
    if metadata is None or metadata.error is not None:
        return {}
    ends: dict[int, int] = {}
    starts: list[TopicPartition] = []
    for partition in sorted(metadata.partitions):
        low, high = watermark_offsets(reader, TopicPartition(topic, partition), timeout)
        if high > low:
            ends[partition] = high
            starts.append(TopicPartition(topic, partition, max(low, high - tail) if tail is not None else low))
    if starts:
        reader.assign(starts)
    return ends


def _before_end(message: Message, ends: dict[int, int]) -> bool:
    """Whether the record lies before its partition's end; a partition at its end leaves `ends`.

    A partition EOF ends a partition too: under read_committed it is the end of what is committed now.
    """
    partition, offset = message.partition(), message.offset()
    if partition not in ends or offset is None:
        return False
    end = ends[partition]
    if message.error() is not None or offset + 1 >= end:
        del ends[partition]
    return message.error() is None and offset < end


def committed_records(settings: KafkaSettings, group: str, topic: str) -> int:
    """How far a consumer group has got on a topic: its committed offsets summed over the partitions.

    0 while the topic does not exist yet or the group coordinator is still moving or loading (a fresh
    broker answers NOT_COORDINATOR for a while), so callers can poll it until it reaches a count.
    """
    client = consumer(settings, group)
    try:
        metadata = client.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        parts = [TopicPartition(topic, p) for p in metadata.partitions]
        return sum(max(tp.offset, 0) for tp in client.committed(parts, timeout=10))
    except KafkaException as exc:
        if exc.args[0].retriable() or exc.args[0].code() in COORDINATOR_NOT_READY:
            return 0
        raise
    finally:
        client.close()


def watermark_offsets(consumer: Consumer, partition: TopicPartition, timeout: float = 30.0) -> tuple[int, int]:
    """Low and high offsets, waiting out a partition without a leader yet (a topic just created)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=max(1.0, deadline - time.monotonic()))
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise TransientError(f"could not read offsets of {partition.topic}: {exc.args[0].str()}") from exc
            time.sleep(0.2)
        else:
            return int(low), int(high)
