"""Transactional publishing: change events and the replay checkpoint commit together, or not at all.

When the checkpoint moves
-------------------------
The listener owns one transactional producer (`transactional.id` = the setting
`listener.transactional_id`, stable across restarts). For each batch of CDC messages it
begins a transaction, produces the change events (and dead letters) of every message of the
batch plus one checkpoint record per channel (the last replay id of the batch), and commits.
The checkpoint topic is compacted and keyed by channel; its value is JSON:
`{"channel": "/data/AccountChangeEvent", "replay_id": 4810262, "commit_timestamp": 1719876940000}`.
Backfill progress lives in the same topic under the key `backfill:<name>`.

What a crash does at each step
------------------------------
- before `commit_transaction` returns: the transaction is never committed (the broker aborts it
  when the next producer with the same transactional id calls `init_transactions`, or after the
  transaction timeout). read_committed consumers never see its events; the checkpoint did not
  move, so the restarted listener replays those CDC messages from the last committed replay id
  and publishes them again, once.
- after `commit_transaction` returns: events and checkpoint are both visible; the restart
  resumes after the new replay id, so nothing is published twice.
- a zombie (an old listener process still alive) is fenced: `init_transactions` of the new one
  bumps the producer epoch and the zombie's next commit fails with a fatal error.
- the broker crashes (not the listener): the open transaction fails (messages time out, or after
  the restart OUT_OF_ORDER_SEQUENCE_NUMBER, "requires epoch bump"). It is aborted, which bumps the
  epoch; if the abort fails too, or the error is fatal without being fencing, the producer is
  replaced and its `init_transactions` aborts the transaction. Nothing of it is visible and the
  checkpoint did not move, so the batch is replayed from the checkpoint, once.

On start the listener first calls `init_transactions` (fencing and aborting any open
transaction) and only then reads the checkpoint topic to its end with read_committed, so what
it resumes from is exactly what was committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException

from services.listener.metrics import TRANSACTIONS
from shared import kafka
from shared.deadletter import Failure, dead_letter_headers
from shared.errors import AuthorizationError, SflsError, TransientError
from shared.events import ChangeEvent
from shared.kafka import Topics
from shared.kafka_reader import read_to_end
from shared.retry import call_in_slices
from shared.settings import KafkaSettings

BACKFILL_KEY_PREFIX = "backfill:"
COMMIT_CALL_SECONDS = 1.0  # the longest single commit_transaction call (see _commit_with_retries)

log = structlog.get_logger(__name__)


class ProducerFencedError(SflsError):
    """Another listener with the same transactional id took over; this one must stop."""


@dataclass(frozen=True)
class Checkpoint:
    """The last replay id of a channel (a CometD channel or a Pub/Sub topic) whose events are committed.

    A Pub/Sub checkpoint holds the opaque replay id itself (`pubsub_replay_id`, base64), which a resubscribe
    sends back unchanged; its `replay_id` is only a number for metrics. A checkpoint of the other transport
    means nothing to the configured one (services/listener/app.py resyncs instead).
    """

    channel: str
    replay_id: int
    commit_timestamp: int | None = None  # epoch ms of that CDC message
    transport: str = "cometd"
    pubsub_replay_id: str | None = None

    @classmethod
    def at(cls, channel: str, replay_id: int, commit_timestamp: int | None, opaque: str | None) -> Checkpoint:
        """The checkpoint of a message: a Pub/Sub one when it carries an opaque replay id."""
        if opaque is None:
            return cls(channel, replay_id, commit_timestamp)
        return cls(channel, replay_id, commit_timestamp, transport="pubsub", pubsub_replay_id=opaque)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()


@dataclass(frozen=True)
class BackfillProgress:
    """How far a backfill got: the last Account Id published, in Id order."""

    name: str
    run_id: str
    where: str = ""
    last_id: str = ""
    published: int = 0
    done: bool = False
    reason: str = "backfill"

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()


@dataclass
class ListenerState:
    """What the checkpoint topic says: replay ids per channel and backfill progress by name."""

    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    backfills: dict[str, BackfillProgress] = field(default_factory=dict)


Record = tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]


def event_record(topics: Topics, event: ChangeEvent) -> Record:
    return (topics.changes, event.key, event.to_bytes(), event.headers())


def checkpoint_record(topics: Topics, checkpoint: Checkpoint) -> Record:
    return (topics.listener_checkpoints, checkpoint.channel.encode(), checkpoint.to_bytes(), [])


def backfill_record(topics: Topics, progress: BackfillProgress) -> Record:
    key = f"{BACKFILL_KEY_PREFIX}{progress.name}".encode()
    return (topics.listener_checkpoints, key, progress.to_bytes(), [])


def dead_letter_record(topics: Topics, raw: bytes, failure: Failure, channel: str | None) -> Record:
    original = [("channel", channel.encode())] if channel else []
    headers = dead_letter_headers(failure, service="listener", original=original)
    return (topics.listener_dlt, (channel or "").encode(), raw, headers)


def parse_state_record(key: bytes | None, value: bytes | None, state: ListenerState) -> None:
    """Fold one checkpoint-topic record into `state` (later records win; a tombstone deletes)."""
    if key is None:
        return
    name = key.decode()
    if name.startswith(BACKFILL_KEY_PREFIX):
        backfill = name.removeprefix(BACKFILL_KEY_PREFIX)
        if value is None:
            state.backfills.pop(backfill, None)
        else:
            state.backfills[backfill] = BackfillProgress(**json.loads(value))
    elif value is None:
        state.checkpoints.pop(name, None)
    else:
        state.checkpoints[name] = Checkpoint(**json.loads(value))


class TransactionalPublisher:
    """One transactional producer; `commit(records)` is all-or-nothing."""

    def __init__(
        self, settings: KafkaSettings, transactional_id: str, *, timeout_seconds: float = 60.0, **overrides: Any
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.transactional_id = transactional_id
        self._timeout = timeout_seconds
        self._overrides = {"transaction.timeout.ms": int(timeout_seconds * 1000), **overrides}
        self._producer = kafka.producer(settings, transactional_id=transactional_id, **self._overrides)
        self._started = False
        self._topics_in_flight: set[str] = set()  # of the open transaction: named when Kafka refuses a write
        self._renewed = False  # a fresh producer that still needs init_transactions

    def start(self) -> None:
        """Fence older producers with our transactional id and abort their open transaction."""
        try:
            self._producer.init_transactions(self._timeout)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
                what = [f"Write on TransactionalId '{self.transactional_id}'"]
                raise AuthorizationError(kafka.denied_message(what, self.settings)) from None
            raise TransientError(f"could not initialise Kafka transactions: {exc.args[0].str()}") from exc
        self._started = True

    def load_state(self) -> ListenerState:
        """Read the checkpoint topic from the beginning to its end (read_committed)."""
        state = ListenerState()
        for message in read_to_end(self.settings, self.topics.listener_checkpoints, timeout=self._timeout):
            parse_state_record(message.key(), message.value(), state)
        return state

    def commit(self, records: Iterable[Record]) -> int:
        """Produce every record in one transaction and commit it; return how many were produced.

        Raises TransientError after aborting when the transaction can be retried, and
        ProducerFencedError when another listener took over (this process must stop).
        """
        if not self._started:
            raise RuntimeError("call start() before commit()")
        if self._renewed:
            self.start()
            self._renewed = False
        count = 0
        try:
            self._producer.begin_transaction()
            self._topics_in_flight = set()
            for topic, key, value, headers in records:
                self._topics_in_flight.add(topic)
                kafka.produce(self._producer, topic, key, value, list(headers))
                count += 1
            self._commit_with_retries()
        except KafkaException as exc:
            self._fail(exc)
        except BaseException:
            self._abort()
            raise
        TRANSACTIONS.labels(outcome="committed").inc()
        return count

    def _commit_with_retries(self) -> None:
        """Commit in short calls, retrying retriable errors for one transaction timeout (then the caller aborts).

        `commit_transaction` first waits for every produced message to be delivered. After a broker
        crash the transaction can fail while it waits (OUT_OF_ORDER_SEQUENCE_NUMBER, "requires epoch
        bump"): the messages then stay queued, so one long call sits out its whole timeout and returns
        a retriable _TIMED_OUT. The next call reports the abortable error at once, so short calls let
        the caller abort (which bumps the epoch) within a second instead of a transaction timeout.
        A commit still timing out at the deadline stays in progress inside librdkafka, which then
        refuses the abort: the caller replaces the producer instead.
        """
        call_in_slices(
            self._producer.commit_transaction,
            self._timeout,
            slice_seconds=COMMIT_CALL_SECONDS,
            retriable=lambda exc: isinstance(exc, KafkaException) and bool(exc.args[0].retriable()),
        )

    def _fail(self, exc: KafkaException) -> None:
        error: KafkaError = exc.args[0]
        if error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
            TRANSACTIONS.labels(outcome="fenced").inc()
            raise ProducerFencedError(f"Kafka producer fenced: {error.str()}") from exc
        if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            self._abort()
            topics = ", ".join(f"'{name}'" for name in sorted(self._topics_in_flight))
            raise AuthorizationError(kafka.denied_message([f"Write on Topic {topics}"], self.settings)) from None
        if error.fatal() or not self._abort():
            # Not another listener: e.g. a broker that crashed lost the transaction's state. A fresh
            # producer (init_transactions before its first commit) starts over; the batch is replayed.
            self._renew(error)
        raise TransientError(f"Kafka transaction aborted: {error.str()}") from exc

    def _abort(self) -> bool:
        TRANSACTIONS.labels(outcome="aborted").inc()
        try:
            self._producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            log.warning("transaction_abort_failed", error=exc.args[0].str())
            return False
        return True

    def _renew(self, error: KafkaError) -> None:
        log.warning("producer_replaced", transactional_id=self.transactional_id, error=error.str())
        self._producer = kafka.producer(self.settings, transactional_id=self.transactional_id, **self._overrides)
        self._renewed = True

    def close(self) -> None:
        self._producer.flush(self._timeout)


def records_of(topics: Topics, events: Iterable[ChangeEvent]) -> Iterator[Record]:
    for event in events:
        yield event_record(topics, event)
