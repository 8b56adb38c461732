"""Lag reporting after a batch: one OffsetFetch and the watermarks librdkafka holds, never a request per partition.

At the default 12 partitions, asking the broker for each partition's watermarks took about 6 s after every
batch, inside the loop; the cached watermarks cost nothing.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from services.syncer.consume import ConsumeLoop
from shared import kafka


class LocalOnly:
    """The consumer calls lag reporting may make; a watermark request to the broker fails the test."""

    def __init__(self, committed: dict[int, int], high: dict[int, int]) -> None:
        self._committed = committed
        self._high = high
        self.requests = 0

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t.changes", p) for p in self._committed]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.requests += 1
        return [TopicPartition(tp.topic, tp.partition, self._committed[tp.partition]) for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = 0, cached: bool = False) -> tuple[int, int]:
        assert cached, f"a watermark request to the broker for partition {tp.partition}"
        return (0, self._high.get(tp.partition, -1001))


class Lags:
    def __init__(self) -> None:
        self.seen: dict[int, int] = {}

    def lag(self, topic: str, partition: int, lag: int) -> None:
        self.seen[partition] = lag


def test_lag_comes_from_one_offset_fetch_and_cached_watermarks() -> None:
    consumer = LocalOnly(committed={0: 10, 1: -1001, 2: 5}, high={0: 25, 1: 7})  # partition 2 not fetched yet
    hooks = Lags()
    loop: Any = ConsumeLoop(
        consumer=consumer,  # type: ignore[arg-type]
        producer=None,  # type: ignore[arg-type]
        topics=kafka.Topics("t"),
        process=None,  # type: ignore[arg-type]
        interval_seconds=1,
        max_events=1,
        hooks=hooks,  # type: ignore[arg-type]
    )
    loop._report_lag()
    assert hooks.seen == {0: 15, 1: 7}
    assert consumer.requests == 1
