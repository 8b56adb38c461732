"""Batches: collect change events for one interval, then coalesce them per account.

This is the one place a batch is coalesced. A batch closes `interval` after its first record
arrived, or early when it holds `max_events` records, or when the service is asked to stop.
Coalescing keeps every record (each must be committed or dead-lettered) but turns all the
records of one account into one unit of work: the syncer then reads that account's current
Salesforce state once and writes it to LogiSense once, however many changes it saw.
Opportunity and line events (keyed by the opportunity's AccountId) stay in their account's work,
grouped per opportunity: each opportunity is read and pushed once per batch, after its account.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

import structlog
from confluent_kafka import Consumer, Message
from pydantic import ValidationError as PydanticValidationError

from shared.deadletter import REPLAY_OF
from shared.errors import TransientError
from shared.events import ChangeEvent, ChangeType, Entity, Source
from shared.kafka import raise_for_message

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class EventRef:
    """What coalescing needs of a change event. The syncer reads each account's current state from
    Salesforce, so the event's field values are never used; keeping only this (not the parsed
    ChangeEvent) roughly halves the memory a 100,000-event batch holds."""

    event_id: str
    entity: Entity
    change_type: ChangeType
    record_id: str
    account_id: str
    opportunity_id: str | None = None
    source: Source = Source.CDC

    @classmethod
    def of(cls, event: ChangeEvent) -> EventRef:
        return cls(
            event.event_id,
            event.entity,
            event.change_type,
            event.record_id,
            event.account_id,
            event.opportunity_id,
            event.source,
        )

    def headers(self) -> list[tuple[str, bytes]]:
        """The headers the listener gives such an event (shared/events.py ChangeEvent.headers)."""
        return [
            ("entity", self.entity.value.encode()),
            ("change_type", self.change_type.value.encode()),
            ("source", self.source.value.encode()),
        ]


@dataclass(frozen=True, slots=True)
class Received:
    """One consumed record: what its event says (None when malformed) and where it came from.

    The raw key, value and headers stay because an undeliverable record is dead-lettered as it was;
    `headers` is None when they are exactly the ones its event implies (`original_headers` rebuilds them),
    which saves a third of a batch's memory.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    event: EventRef | None
    parse_error: str = ""

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        if self.headers is not None:
            return self.headers
        assert self.event is not None  # headers are only left out for a parsed event
        return self.event.headers()

    @property
    def replay_of(self) -> str:
        """The request id a replayed dead letter failed under (shared/deadletter.py REPLAY_OF), or ""."""
        for name, value in self.headers or ():
            if name == REPLAY_OF:
                return value.decode(errors="replace")
        return ""

    @classmethod
    def from_message(cls, message: Message) -> Received:
        raw = message.headers() or []
        headers: list[tuple[str, bytes]]
        if isinstance(raw, list) and all(isinstance(v, bytes) for _, v in raw):
            headers = cast("list[tuple[str, bytes]]", raw)  # the consumer's own pairs: no second copy per record
        else:
            pairs = raw.items() if isinstance(raw, dict) else raw
            headers = [(str(k), v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs]
        value = message.value()
        event: EventRef | None = None
        error = ""
        try:
            event = EventRef.of(ChangeEvent.from_bytes(value or b""))
        except PydanticValidationError as exc:
            error = f"not a change event: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
        kept: list[tuple[str, bytes]] | None = headers
        if event is not None and headers == event.headers():
            kept = None
        return cls(
            topic=sys.intern(message.topic() or ""),  # one string for every record of the topic
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=message.key(),
            value=value,
            headers=kept,
            event=event,
            parse_error=error,
        )

    @property
    def account_id(self) -> str | None:
        if self.event is not None:
            return self.event.account_id
        return self.key.decode(errors="replace") if self.key else None


@dataclass
class AccountWork:
    """Everything one batch says about one account: sync it once, answer for every record."""

    account_id: str
    records: list[Received] = field(default_factory=list)
    account_events: int = 0
    contact_events: int = 0
    deleted: bool = False  # the last Account event of the batch was a DELETE
    contact_ids: set[str] = field(default_factory=set)
    # Opportunity id (15 characters) -> the records of its Opportunity and line events, in offset order.
    opportunities: dict[str, list[Received]] = field(default_factory=dict)

    @property
    def event_ids(self) -> tuple[str, ...]:
        return tuple(r.event.event_id for r in self.records if r.event is not None)

    @property
    def replayed_requests(self) -> list[str]:
        """The failed requests this work replays (in first-seen order): its outcome is written under them."""
        return list(dict.fromkeys(r.replay_of for r in self.records if r.replay_of))

    @property
    def only_opportunities(self) -> bool:
        """No Account or Contact event: the account is synced only if LogiSense does not have it yet."""
        return self.account_events == 0 and self.contact_events == 0


@dataclass
class Coalesced:
    """A batch after coalescing: work per account (in first-seen order) and the malformed records."""

    accounts: dict[str, AccountWork]
    malformed: list[Received]
    size: int

    def summary(self) -> dict[str, int]:
        return {"events": self.size, "accounts": len(self.accounts)}

    @property
    def ratio(self) -> float:
        """Events per account synced (1.0 when nothing coalesced)."""
        return self.size / len(self.accounts) if self.accounts else 0.0


def coalesce(records: Iterable[Received]) -> Coalesced:
    """Group a batch's records per account, in offset order within each partition."""
    accounts: dict[str, AccountWork] = {}
    malformed: list[Received] = []
    size = 0
    for record in records:
        size += 1
        event = record.event
        if event is None:
            malformed.append(record)
            continue
        work = accounts.get(event.account_id)
        if work is None:
            work = accounts[event.account_id] = AccountWork(event.account_id)
        work.records.append(record)
        if event.entity is Entity.ACCOUNT:
            work.account_events += 1
            if event.record_id[:15] == event.account_id[:15]:
                work.deleted = event.change_type is ChangeType.DELETE
        elif event.entity.is_opportunity:
            opportunity = (event.opportunity_id or event.record_id)[:15]
            work.opportunities.setdefault(opportunity, []).append(record)
        else:
            work.contact_events += 1
            work.contact_ids.add(event.record_id)
    return Coalesced(accounts=accounts, malformed=malformed, size=size)


def collect(
    consumer: Consumer,
    *,
    interval_seconds: float,
    max_events: int,
    should_stop: Callable[[], bool],
    tick: Callable[[], None] = lambda: None,
    poll_seconds: float = 0.2,
    idle_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Received]:
    """Poll until the batch's interval has passed since its first record, it is full, or we stop; with
    `idle_seconds`, also when that long brought no record at all (an empty batch: the caller has other work)."""
    batch: list[Received] = []
    deadline: float | None = None
    started = clock()
    while not should_stop():
        tick()
        now = clock()
        if deadline is not None and now >= deadline:
            break
        if not batch and idle_seconds is not None and now - started >= idle_seconds:
            break
        wait = poll_seconds if deadline is None else max(0.0, min(poll_seconds, deadline - now))
        messages = consumer.consume(num_messages=min(max_events - len(batch), 10_000), timeout=wait)
        for message in messages:
            try:
                raise_for_message(message)
            except TransientError as exc:  # librdkafka recovers by itself; fatal errors do raise
                log.warning("kafka_consumer_error", error=str(exc))
                continue
            if message.error() is not None:  # partition EOF
                continue
            batch.append(Received.from_message(message))
        if batch and deadline is None:
            deadline = clock() + interval_seconds
        if len(batch) >= max_events:
            break
    return batch
