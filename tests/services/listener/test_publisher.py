"""Transactional publish + checkpoint against the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

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
