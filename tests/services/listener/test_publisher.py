"""Transactional publish + checkpoint against the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.listener import publisher as publisher_module
from services.listener.publisher import (
    BackfillProgress,
    Checkpoint,
    ProducerFencedError,
    Record,
    TransactionalPublisher,
    backfill_record,
    checkpoint_record,
    event_record,
)
from shared import kafka
from shared.errors import TransientError
from shared.events import ChangeEvent, ChangeType, Entity, make_event_id
from shared.settings import KafkaSettings
from tests.services.listener.support import ACCOUNT_A, ACCOUNT_B, change_events

pytestmark = pytest.mark.integration


def _event(record_id: str, replay_id: int) -> ChangeEvent:
    return ChangeEvent(
        event_id=make_event_id(f"cdc:{replay_id}", record_id),
        entity=Entity.ACCOUNT,
        change_type=ChangeType.UPDATE,
        record_id=record_id,
        account_id=record_id,
        changed_fields=("Name",),
        fields={"Name": "x"},
        commit_timestamp=datetime.now(UTC),
        replay_id=replay_id,
    )


@pytest.fixture
def publisher_factory(kafka_settings: KafkaSettings) -> Iterator[Callable[..., TransactionalPublisher]]:
    """Started transactional publishers whose topics exist; closed at the end."""
    topics = kafka.Topics(kafka_settings.topic_prefix)
    kafka.ensure_topics(kafka_settings, topics.specs(kafka_settings))
    made: list[TransactionalPublisher] = []

    def create(transactional_id: str | None = None) -> TransactionalPublisher:
        publisher = TransactionalPublisher(
            kafka_settings, transactional_id or f"tx-{uuid.uuid4().hex[:8]}", timeout_seconds=20
        )
        publisher.start()
        made.append(publisher)
        return publisher

    yield create
    for publisher in made:
        publisher.close()


def test_events_and_checkpoint_commit_together(publisher_factory: Callable[..., TransactionalPublisher]) -> None:
    """Committed events are readable (read_committed) and the checkpoint reads back as state."""
    publisher = publisher_factory()
    topics = publisher.topics
    checkpoint = Checkpoint("/data/AccountChangeEvent", 7, 1_700_000_000_000)
    progress = BackfillProgress(name="manual", run_id="r1", last_id=ACCOUNT_B, published=2)
    records = [event_record(topics, _event(ACCOUNT_A, 7)), checkpoint_record(topics, checkpoint)]
    assert publisher.commit([*records, backfill_record(topics, progress)]) == 3
    assert publisher.commit([checkpoint_record(topics, Checkpoint("/data/AccountChangeEvent", 9))]) == 1
    state = publisher.load_state()
    assert state.checkpoints == {"/data/AccountChangeEvent": Checkpoint("/data/AccountChangeEvent", 9)}
    assert state.backfills == {"manual": progress}
    assert [e.record_id for e in change_events(publisher.settings)] == [ACCOUNT_A]


def test_a_failure_mid_transaction_publishes_nothing(publisher_factory: Callable[..., TransactionalPublisher]) -> None:
    """An error while producing aborts the transaction: neither events nor checkpoint are visible."""
    publisher = publisher_factory()
    topics = publisher.topics

    def records() -> Iterator[Record]:
        yield event_record(topics, _event(ACCOUNT_A, 5))
        yield checkpoint_record(topics, Checkpoint("/data/AccountChangeEvent", 5))
        raise ValueError("lookup failed")

    with pytest.raises(ValueError, match="lookup failed"):
        publisher.commit(records())
    publisher.commit([event_record(topics, _event(ACCOUNT_B, 6))])
    assert publisher.load_state().checkpoints == {}
    assert [e.record_id for e in change_events(publisher.settings)] == [ACCOUNT_B]


def test_a_new_listener_fences_the_old_one(publisher_factory: Callable[..., TransactionalPublisher]) -> None:
    """A second producer with the same transactional id fences the first: its next commit is refused."""
    old = publisher_factory("tx-same-" + uuid.uuid4().hex[:6])
    old.commit([checkpoint_record(old.topics, Checkpoint("/data/ContactChangeEvent", 1))])
    new = publisher_factory(old.transactional_id)
    with pytest.raises(ProducerFencedError):
        old.commit([checkpoint_record(old.topics, Checkpoint("/data/ContactChangeEvent", 2))])
    new.commit([checkpoint_record(new.topics, Checkpoint("/data/ContactChangeEvent", 3))])
    assert new.load_state().checkpoints["/data/ContactChangeEvent"].replay_id == 3


class _FakeProducer:
    """Just enough of confluent_kafka.Producer for the publisher's error handling; records calls."""

    def __init__(self, commit_errors: list[KafkaError], *, abort_error: KafkaError | None = None) -> None:
        self.commit_errors = commit_errors
        self.abort_error = abort_error
        self.calls: list[tuple[str, float | None]] = []

    def init_transactions(self, timeout: float) -> None:
        self.calls.append(("init_transactions", timeout))

    def begin_transaction(self) -> None:
        self.calls.append(("begin_transaction", None))

    def produce(self, topic: str, **_: object) -> None:
        self.calls.append(("produce", None))

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append(("commit_transaction", timeout))
        if self.commit_errors:
            raise KafkaException(self.commit_errors.pop(0))

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append(("abort_transaction", timeout))
        if self.abort_error is not None:
            raise KafkaException(self.abort_error)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def _fake_publisher(monkeypatch: pytest.MonkeyPatch, *producers: _FakeProducer) -> TransactionalPublisher:
    made = iter(producers)
    monkeypatch.setattr(publisher_module.kafka, "producer", lambda *_, **__: next(made))
    publisher = TransactionalPublisher(KafkaSettings(bootstrap_servers="unused:9092"), "tx-fake", timeout_seconds=20)
    publisher.start()
    return publisher


TIMED_OUT = KafkaError(KafkaError._TIMED_OUT, "Failed to flush all outstanding messages", retriable=True)
OUT_OF_ORDER = KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "skipped sequence numbers", txn_requires_abort=True)


def test_an_abortable_error_while_committing_aborts_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a broker crash the commit's flush fails with OUT_OF_ORDER_SEQUENCE_NUMBER (requires epoch bump).

    Commit calls are short, so the abortable error is seen on the next call instead of after a whole
    transaction timeout; the transaction is aborted (the epoch bump), the batch is left to be
    replayed, and the same producer carries on.
    """
    producer = _FakeProducer([TIMED_OUT, OUT_OF_ORDER])
    publisher = _fake_publisher(monkeypatch, producer)
    record = checkpoint_record(publisher.topics, Checkpoint("/data/AccountChangeEvent", 5))
    with pytest.raises(TransientError, match="skipped sequence numbers"):
        publisher.commit([record])
    commits = [timeout for name, timeout in producer.calls if name == "commit_transaction"]
    assert len(commits) == 2
    assert all(t is not None and t <= publisher_module.COMMIT_CALL_SECONDS for t in commits)
    assert producer.names()[-1] == "abort_transaction"
    producer.calls.clear()
    assert publisher.commit([record]) == 1
    assert producer.names() == ["begin_transaction", "produce", "commit_transaction"]


def test_an_abort_that_fails_replaces_the_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    """When even the abort fails the producer is replaced; the new one fences the old before committing."""
    broken = _FakeProducer([OUT_OF_ORDER], abort_error=KafkaError(KafkaError.INVALID_TXN_STATE, "invalid state"))
    fresh = _FakeProducer([])
    publisher = _fake_publisher(monkeypatch, broken, fresh)
    record = checkpoint_record(publisher.topics, Checkpoint("/data/AccountChangeEvent", 5))
    with pytest.raises(TransientError):
        publisher.commit([record])
    assert publisher.commit([record]) == 1
    assert fresh.names() == ["init_transactions", "begin_transaction", "produce", "commit_transaction"]


def test_fencing_while_committing_stops_the_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fenced producer is not retried nor replaced: another listener took over."""
    fenced = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
    producer = _FakeProducer([fenced])
    publisher = _fake_publisher(monkeypatch, producer)
    with pytest.raises(ProducerFencedError):
        publisher.commit([checkpoint_record(publisher.topics, Checkpoint("/data/AccountChangeEvent", 5))])
    assert "abort_transaction" not in producer.names()
