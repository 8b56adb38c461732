"""The consume/commit loop against the real broker, with a stand-in for the LogiSense delivery."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from services.syncer.batch import Coalesced
from services.syncer.consume import CommitFailedError, ConsumeLoop
from services.syncer.hooks import BatchResult
from shared import kafka
from shared.deadletter import ERROR_CLASS, ERROR_MESSAGE, ORIGINAL_OFFSET, ORIGINAL_TOPIC, Failure, parse_dead_letter
from shared.errors import RejectedError, TransientError
from shared.settings import KafkaSettings
from tests.services.syncer.support import change, create_syncer_topics, publish, read_all
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

A = "001000000000001AAA"
B = "001000000000002AAA"


def committed_total(consumer: Consumer, topic: str) -> int:
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    parts = [TopicPartition(topic, p) for p in metadata.partitions]
    return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))


async def run_until(loop: ConsumeLoop, done: Callable[[], bool]) -> bool:
    """Run the loop until `done()` (at most 30 s), then stop it; True when it got there while running (not only
    on the way out)."""
    task = asyncio.create_task(loop.run())
    running = False
    for _ in range(300):
        if task.done():
            break
        if done():
            running = True
            break
        await asyncio.sleep(0.1)
    loop.request_stop()
    await asyncio.wait_for(task, 30)  # a loop that failed raises here
    assert done(), f"the consume loop did not get there in 30 s; last seen: {loop.batches_committed} batches committed"
    return running


def make_loop(
    kafka_settings: KafkaSettings, consumer: Consumer, producer: Producer, process: Callable[[Coalesced], object]
) -> ConsumeLoop:
    async def run(batch: Coalesced) -> BatchResult:
        result = process(batch)
        assert isinstance(result, BatchResult)
        return result

    return ConsumeLoop(
        consumer=consumer,
        producer=producer,
        topics=kafka.Topics(kafka_settings.topic_prefix),
        process=run,
        interval_seconds=0.5,
        max_events=10_000,
        retry_pause_seconds=0.1,
    )


async def test_batch_is_coalesced_processed_and_committed(
    kafka_settings: KafkaSettings, consumer_factory: Callable[..., Consumer], producer_factory: Callable[..., Producer]
) -> None:
    """Thirty changes to two accounts reach the processor as two accounts and are committed once done."""
    topics = create_syncer_topics(kafka_settings)
    publish(producer_factory(), topics.changes, [change(A) for _ in range(20)] + [change(B) for _ in range(10)])
    seen: list[dict[str, int]] = []

    def process(batch: Coalesced) -> BatchResult:
        seen.append({a: len(w.records) for a, w in batch.accounts.items()})
        return BatchResult(synced_accounts=len(batch.accounts))

    group = "g-commit"
    consumer = consumer_factory(group)
    loop = make_loop(kafka_settings, consumer, producer_factory(), process)
    await run_until(loop, lambda: loop.batches_committed >= 1)
    assert seen == [{A: 20, B: 10}]
    assert committed_total(consumer_factory(group), topics.changes) == 30
    assert read_all(kafka_settings, topics.changes_dlt) == []


async def test_failed_account_is_dead_lettered_and_the_rest_committed(
    kafka_settings: KafkaSettings, consumer_factory: Callable[..., Consumer], producer_factory: Callable[..., Producer]
) -> None:
    """A permanent failure dead-letters exactly that account's records, with error and origin headers."""
    topics = create_syncer_topics(kafka_settings)
    events = [change(A), change(B), change(A)]
    publish(producer_factory(), topics.changes, events)

    def process(batch: Coalesced) -> BatchResult:
        error = RejectedError("'Name' is required for 'Account'.", status=400)
        return BatchResult(failures={A: Failure.from_exception(error)}, synced_accounts=1)

    group = "g-dlt"
    loop = make_loop(kafka_settings, consumer_factory(group), producer_factory(), process)
    await run_until(loop, lambda: loop.batches_committed >= 1)
    letters = [parse_dead_letter(m) for m in read_all(kafka_settings, topics.changes_dlt)]
    assert sorted(letter.value or b"" for letter in letters) == sorted(
        e.to_bytes() for e in events if e.account_id == A
    )
    for letter in letters:
        assert letter.key == A.encode()
        assert letter.headers[ERROR_CLASS] == "RejectedError"
        assert "'Name' is required" in letter.headers[ERROR_MESSAGE]
        assert letter.headers[ORIGINAL_TOPIC] == topics.changes
        assert ORIGINAL_OFFSET in letter.headers
        assert ("entity", b"Account") in letter.original_headers
    assert committed_total(consumer_factory(group), topics.changes) == 3


async def test_batch_failing_as_a_whole_is_not_committed_and_is_retried(
    kafka_settings: KafkaSettings, consumer_factory: Callable[..., Consumer], producer_factory: Callable[..., Producer]
) -> None:
    """When processing raises, nothing is committed and the same records come back in the next batch."""
    topics = create_syncer_topics(kafka_settings)
    publish(producer_factory(), topics.changes, [change(A), change(B)])
    calls: list[int] = []
    group = "g-retry"
    observer = consumer_factory(group)

    hooks = RecordingHooks()
    lag_after_failure: dict[int, int] = {}

    def process(batch: Coalesced) -> BatchResult:
        calls.append(batch.size)
        if len(calls) == 1:
            assert committed_total(observer, topics.changes) == 0
            raise TransientError("Salesforce is unavailable", status=503)
        lag_after_failure.update(hooks.lags)
        return BatchResult(synced_accounts=len(batch.accounts))

    loop = make_loop(kafka_settings, consumer_factory(group), producer_factory(), process)
    loop._hooks = hooks
    await run_until(loop, lambda: loop.batches_committed >= 1)
    assert calls == [2, 2]
    assert committed_total(observer, topics.changes) == 2
    assert sum(lag_after_failure.values()) == 2, "the failed batch's records wait: its lag is reported"


async def test_malformed_record_is_dead_lettered(
    kafka_settings: KafkaSettings, consumer_factory: Callable[..., Consumer], producer_factory: Callable[..., Producer]
) -> None:
    """A value that is not a change event goes to the dead-letter topic as MalformedMessageError."""
    topics = create_syncer_topics(kafka_settings)
    producer = producer_factory()
    kafka.produce_and_flush(producer, topics.changes, [(A.encode(), b"{not json", [])])
    publish(producer, topics.changes, [change(A)])
    loop = make_loop(
        kafka_settings,
        consumer_factory(),
        producer_factory(),
        lambda batch: BatchResult(synced_accounts=len(batch.accounts)),
    )
    await run_until(loop, lambda: loop.batches_committed >= 1)
    letters = [parse_dead_letter(m) for m in read_all(kafka_settings, topics.changes_dlt)]
    assert [letter.error_class for letter in letters] == ["MalformedMessageError"]
    assert letters[0].value == b"{not json"


class RecordingHooks:
    """The loop's hooks, remembering which batches finished and which failed (and why)."""

    def __init__(self) -> None:
        self.finished: list[int] = []
        self.failed: list[BaseException] = []
        self.pauses: list[float] = []
        self.lags: dict[int, int] = {}
        self.late_commits = 0

    def batch_started(self, batch: Coalesced) -> None:
        return None

    def batch_finished(self, batch: Coalesced, result: BatchResult, dead_letters: int, seconds: float) -> None:
        self.finished.append(batch.size)

    def batch_failed(self, batch: Coalesced, error: BaseException) -> None:
        self.failed.append(error)

    def lag(self, topic: str, partition: int, lag: int) -> None:
        self.lags[partition] = lag

    def retry_pause(self, seconds: float) -> None:
        self.pauses.append(seconds)

    def late_commit(self) -> None:
        self.late_commits += 1


class CommitsRefused(Consumer):
    """A real consumer whose commits Kafka refuses, as during a rebalance that never settles."""

    def commit(self, *args: object, **kwargs: object) -> None:
        raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))


async def test_a_batch_whose_commit_fails_counts_as_failed(
    kafka_settings: KafkaSettings, producer_factory: Callable[..., Producer]
) -> None:
    """Delivered but not committed is a failed batch: no `committed` count, no last-batch timestamp, lag reported."""
    topics = create_syncer_topics(kafka_settings)
    publish(producer_factory(), topics.changes, [change(A), change(B)])
    config = {**kafka_settings.librdkafka(), "group.id": f"g-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
    consumer = CommitsRefused({**config, "enable.auto.commit": False, "enable.auto.offset.store": False})
    hooks = RecordingHooks()
    loop = make_loop(kafka_settings, consumer, producer_factory(), lambda batch: BatchResult(synced_accounts=2))
    loop._hooks = hooks
    await run_until(loop, lambda: len(hooks.failed) >= 1 and bool(hooks.lags))
    assert hooks.finished == []
    assert loop.batches_committed == 0
    assert isinstance(hooks.failed[0], CommitFailedError)
    # The records still wait, and the lag says so: the stalled-syncer alert needs it (deploy/prometheus/alerts.yaml).
    assert sum(hooks.lags.values()) == 2, hooks.lags


class FirstCommitRefused(Consumer):
    """A real consumer whose first commit Kafka refuses (a coordinator moving); later ones go through."""

    refused = 0

    def commit(self, *args: object, **kwargs: object) -> None:
        if not self.refused:
            self.refused += 1
            raise KafkaException(KafkaError(KafkaError.NOT_COORDINATOR))
        super().commit(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_refused_commit_is_made_later_although_no_new_record_arrives(
    kafka_settings: KafkaSettings, consumer_factory: Callable[..., Consumer], producer_factory: Callable[..., Producer]
) -> None:
    """Delivered records whose commit failed are committed at the next quiet poll, not left for a restart."""
    topics = create_syncer_topics(kafka_settings)
    publish(producer_factory(), topics.changes, [change(A), change(B)])
    group = f"g-{uuid.uuid4().hex[:8]}"
    observer = consumer_factory(group)
    config = {**kafka_settings.librdkafka(), "group.id": group, "auto.offset.reset": "earliest"}
    consumer = FirstCommitRefused({**config, "enable.auto.commit": False, "enable.auto.offset.store": False})
    calls: list[int] = []
    hooks = RecordingHooks()

    def process(batch: Coalesced) -> BatchResult:
        calls.append(batch.size)
        return BatchResult(synced_accounts=len(batch.accounts))

    loop = make_loop(kafka_settings, consumer, producer_factory(), process)
    loop._hooks = hooks
    assert await run_until(loop, lambda: hooks.late_commits >= 1), "committed only on the way out"
    assert calls == [2], "the delivered batch is not processed again"
    assert isinstance(hooks.failed[0], CommitFailedError)
    assert committed_total(observer, topics.changes) == 2
    assert sum(hooks.lags.values()) == 0, hooks.lags


async def test_a_failed_batch_loses_nothing_polled_from_a_partition_assigned_meanwhile(
    kafka_settings: KafkaSettings, consumer_factory: Callable[..., Consumer], producer_factory: Callable[..., Producer]
) -> None:
    """A partition that arrives while a batch runs (another member left) and whose records were polled in the
    meantime is read again after the batch fails: every record is processed and committed in the end."""
    topics = create_syncer_topics(kafka_settings)
    producer = producer_factory()
    partitions = range(kafka_settings.partitions)
    for partition in partitions:
        for _ in range(3):
            producer.produce(topics.changes, key=A.encode(), value=change(A).to_bytes(), partition=partition)
    producer.flush(10)
    group = f"g-{uuid.uuid4().hex[:8]}"
    other = consumer_factory(group)  # holds every partition until the loop joins and takes some
    other.subscribe([topics.changes])
    stop_other = threading.Event()

    def keep_other_alive() -> None:
        while not stop_other.is_set():
            other.poll(0.2)  # serves its rebalances; it never commits

    wait_until(lambda: (other.poll(0.2), len(other.assignment()))[1], 30, "the other member's assignment")
    thread = threading.Thread(target=keep_other_alive, daemon=True)
    thread.start()
    processed: list[tuple[int, int]] = []
    batches = 0

    async def process(batch: Coalesced) -> BatchResult:
        nonlocal batches
        batches += 1
        if batches == 1:  # the other member leaves; its partitions come to the loop while this batch runs
            stop_other.set()
            thread.join(10)
            other.close()
            for _ in range(200):
                if loop._carry:
                    break
                await asyncio.sleep(0.1)
            assert loop._carry, "no record was polled from the partitions assigned during the batch"
            raise TransientError("LogiSense is unavailable", status=503)
        processed.extend((r.partition, r.offset) for w in batch.accounts.values() for r in w.records)
        return BatchResult(synced_accounts=len(batch.accounts))

    loop = ConsumeLoop(
        consumer=consumer_factory(group),
        producer=producer,
        topics=topics,
        process=process,
        interval_seconds=0.5,
        max_events=10_000,
        retry_pause_seconds=0.1,
    )
    total = 3 * kafka_settings.partitions
    observer = consumer_factory(group)
    await run_until(loop, lambda: committed_total(observer, topics.changes) >= total)
    assert sorted(set(processed)) == sorted((p, o) for p in partitions for o in range(3))


async def test_failed_batches_back_off_and_the_pause_resets_after_a_commit(
    kafka_settings: KafkaSettings, consumer_factory: Callable[..., Consumer], producer_factory: Callable[..., Producer]
) -> None:
    """Each failure in a row may wait longer (full jitter under a doubling ceiling); a commit resets it to 0."""
    topics = create_syncer_topics(kafka_settings)
    publish(producer_factory(), topics.changes, [change(A)])
    calls = 0

    def process(batch: Coalesced) -> BatchResult:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise TransientError("Salesforce is unavailable", status=503)
        return BatchResult(synced_accounts=1)

    hooks = RecordingHooks()
    loop = make_loop(kafka_settings, consumer_factory(), producer_factory(), process)
    loop._hooks = hooks
    await run_until(loop, lambda: loop.batches_committed >= 1)
    assert len(hooks.failed) == 3
    assert len(hooks.pauses) == 4, hooks.pauses
    for failures, pause in enumerate(hooks.pauses[:3], 1):
        assert 0 <= pause <= 0.1 * 2 ** (failures - 1), hooks.pauses
    assert hooks.pauses[3] == 0.0
