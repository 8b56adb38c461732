"""One batch of CDC messages -> one Kafka transaction (events, dead letters, checkpoints).

Steps for a batch (the messages the streaming client had pending, in arrival order):
1. skip messages at or below the committed replay id of their channel (a re-subscribe after a
   re-handshake replays what we already committed), counted as `replayed`;
2. parse each message (its JSON is decoded once); a malformed one becomes a dead letter with the
   raw message and the reason, and still moves the checkpoint (it would fail the same way on every
   replay);
3. resolve, in one batched lookup per entity, the AccountId of every Contact, Opportunity and line
   whose payload lacks it (resolve.py);
4. normalize (normalize.py) and, for GAP_OVERFLOW, query the entity's records modified since
   the commit timestamp (paged) into RESYNC events;
5. commit events + dead letters + one checkpoint per channel in one transaction
   (publisher.py says what a crash at each step does); only then update the in-memory
   checkpoint the streaming client subscribes from, the contact cache and the metrics.
Any failure before the commit leaves the checkpoint where it was; the caller rebuilds the
client, which replays the batch from the checkpoint.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from services.listener.filters import Filters
from services.listener.message import CdcMessage, Decodable, MalformedCdcError
from services.listener.metrics import (
    CDC_MESSAGES,
    CHANGES_DROPPED,
    CHECKPOINT_REPLAY_ID,
    EVENTS_PUBLISHED,
    LAST_EVENT_TIMESTAMP,
    RESYNCS,
)
from services.listener.normalize import (
    OverflowRequest,
    normalize,
    parse,
    records_to_resolve,
)
from services.listener.publisher import (
    Checkpoint,
    Record,
    TransactionalPublisher,
    checkpoint_record,
    dead_letter_record,
    event_record,
)
from services.listener.resolve import AccountResolver, Resolved
from services.listener.stream import CheckpointReplay
from shared.deadletter import Failure, count_dead_letter
from shared.events import ChangeEvent, Entity, Source, epoch_ms_to_datetime, resync_event

if TYPE_CHECKING:
    from shared.salesforce import RecordReader

log = structlog.get_logger(__name__)

DROP_REPLAYED = "replayed"


@dataclass
class PublishedBatch:
    """What a committed batch did (for metrics, logs and tests)."""

    events: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    dead_letters: list[Failure] = field(default_factory=list)
    messages: Counter[tuple[str, str]] = field(default_factory=Counter)
    overflows: int = 0


class Pipeline:
    """Turns batches of CDC messages into committed transactions."""

    def __init__(
        self,
        publisher: TransactionalPublisher,
        replay: CheckpointReplay,
        resolver: AccountResolver,
        source: RecordReader,
        filters: Filters,
    ) -> None:
        self.publisher = publisher
        self.topics = publisher.topics
        self.replay = replay
        self.resolver = resolver
        self.source = source
        self.filters = filters

    def handle(self, messages: list[Any], positions: Mapping[str, Checkpoint] | None = None) -> PublishedBatch:
        """Publish one batch atomically; raise (checkpoint unchanged) if anything fails.

        `positions`: checkpoints the transport reported past the batch's messages (a Pub/Sub keepalive's
        `latest_replay_id`, once every event before it is in this batch or committed), committed with it.
        """
        result = PublishedBatch()
        checkpoints: dict[str, Checkpoint] = {}
        parsed: list[CdcMessage] = []
        records: list[Record] = []
        for raw in messages:
            try:
                message = parse(raw)
            except MalformedCdcError as exc:
                if self._replayed(exc.position, exc.opaque_replay_id, result):
                    continue
                records.append(self._dead_letter(raw, exc, exc.position, result))
                if exc.position:  # the checkpoint moves past it: it would fail the same way on every replay
                    channel, replay_id = exc.position
                    previous = checkpoints.get(channel) or self.replay.checkpoints.get(channel)
                    checkpoints[channel] = Checkpoint.at(
                        channel, replay_id, previous.commit_timestamp if previous else None, exc.opaque_replay_id
                    )
                continue
            if self._replayed((message.channel, message.replay_id), message.opaque_replay_id, result):
                continue
            parsed.append(message)
            result.messages[(message.channel, message.change_type)] += 1
            checkpoints[message.channel] = Checkpoint.at(
                message.channel, message.replay_id, message.commit_timestamp, message.opaque_replay_id
            )
        checkpoints.update(positions or {})
        wanted = [pair for message in parsed for pair in records_to_resolve(message, self.filters)]
        resolved = self.resolver.resolve(wanted) if wanted else Resolved()
        overflows: list[OverflowRequest] = []
        for message in parsed:
            outcome = normalize(message, self.filters, resolved.accounts, resolved.opportunities)
            result.dropped.update(outcome.dropped)
            records.extend(self._count(event_record(self.topics, e), e, result) for e in outcome.events)
            if outcome.overflow is not None:
                overflows.append(outcome.overflow)
        if not records and not checkpoints and not overflows:
            self._account(result)
            return result
        # Salesforce first, the transaction after: an overflow's query pages (any number, any latency) are read
        # before the transaction opens, so its timeout bounds only the Kafka writes.
        for overflow in overflows:
            result.overflows += 1
            records.extend(
                self._count(event_record(self.topics, e), e, result) for e in self._overflow_events(overflow)
            )
        records.extend(checkpoint_record(self.topics, checkpoint) for checkpoint in checkpoints.values())
        self.publisher.commit(records)
        for checkpoint in checkpoints.values():
            self.replay.committed(checkpoint)
        for message in parsed:
            self.resolver.learn(message)
        self._account(result, checkpoints)
        return result

    def _replayed(self, found: tuple[str, int] | None, opaque: str | None, result: PublishedBatch) -> bool:
        """True (and counted) when a CometD message is at or below its channel's committed CometD replay id.

        Only CometD replays what was committed (a re-subscribe after a re-handshake); a Pub/Sub resubscribe
        starts after the committed id, and the two transports number their ids differently (after a switch)."""
        committed = self.replay.checkpoints.get(found[0]) if found else None
        if opaque is not None or not found or not committed or committed.transport != "cometd":
            return False
        if found[1] <= committed.replay_id:
            result.dropped[DROP_REPLAYED] += 1
            return True
        return False

    def _overflow_events(self, overflow: OverflowRequest) -> Iterator[ChangeEvent]:
        """Every record of the entity modified since the overflow's commit, as RESYNC events."""
        since = epoch_ms_to_datetime(overflow.since_ms).strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = _OVERFLOW_FIELDS[overflow.entity]
        # Every part is ours: a fixed field list, an Entity value and a formatted datetime.
        soql = f"SELECT {fields} FROM {overflow.entity.value} WHERE LastModifiedDate >= {since} ORDER BY Id"  # noqa: S608
        log.warning("gap_overflow_resync", entity=overflow.entity.value, since=since)
        for row in self.source.query_all_iter(soql, include_deleted=True):  # deletes resync too
            record_id = str(row["Id"])
            account_id, opportunity_id = _overflow_owner(overflow.entity, row)
            if not account_id:
                continue
            yield resync_event(
                overflow.entity,
                record_id,
                account_id,
                Source.OVERFLOW,
                origin=f"overflow:{overflow.replay_id}",
                committed_at=epoch_ms_to_datetime(overflow.since_ms),
                replay_id=overflow.replay_id,
                opportunity_id=opportunity_id,
            )

    @staticmethod
    def _count(record: Record, event: ChangeEvent, result: PublishedBatch) -> Record:
        result.events[(event.entity.value, event.change_type.value, event.source.value)] += 1
        return record

    def _dead_letter(
        self, raw: Any, exc: MalformedCdcError, found: tuple[str, int] | None, result: PublishedBatch
    ) -> Record:
        failure = Failure(error_class=f"MalformedCdcMessage.{exc.reason}", message=str(exc)[:2000])
        result.dead_letters.append(failure)
        body = (
            raw.raw
            if isinstance(raw, Decodable)
            else raw
            if isinstance(raw, bytes)
            else raw.encode(errors="surrogatepass")
            if isinstance(raw, str)
            else _dump(raw)
        )
        log.warning("malformed_cdc_dead_lettered", reason=exc.reason, detail=str(exc)[:300])
        return dead_letter_record(self.topics, body, failure, found[0] if found else None)

    def _account(self, result: PublishedBatch, checkpoints: dict[str, Checkpoint] | None = None) -> None:
        for (channel, change_type), n in result.messages.items():
            CDC_MESSAGES.labels(channel=channel, change_type=change_type).inc(n)
        for (entity, change_type, source), n in result.events.items():
            EVENTS_PUBLISHED.labels(entity=entity, change_type=change_type, source=source).inc(n)
        for reason, n in result.dropped.items():
            CHANGES_DROPPED.labels(reason=reason).inc(n)
        for failure in result.dead_letters:
            count_dead_letter("listener", self.topics.listener_dlt, failure)
        for (_channel, change_type), n in result.messages.items():
            if change_type.startswith("GAP_"):
                RESYNCS.labels(reason="overflow" if change_type == "GAP_OVERFLOW" else "gap").inc(n)
        for checkpoint in (checkpoints or {}).values():
            CHECKPOINT_REPLAY_ID.labels(channel=checkpoint.channel).set(checkpoint.replay_id)
            if checkpoint.commit_timestamp:
                LAST_EVENT_TIMESTAMP.labels(channel=checkpoint.channel).set(checkpoint.commit_timestamp / 1000)


# What an overflow's query selects per entity: the record and what its event is keyed by.
_OVERFLOW_FIELDS = {
    Entity.ACCOUNT: "Id",
    Entity.CONTACT: "Id, AccountId",
    Entity.OPPORTUNITY: "Id, AccountId",
    Entity.OPPORTUNITY_LINE: "Id, OpportunityId, Opportunity.AccountId",
}


def _overflow_owner(entity: Entity, row: dict[str, Any]) -> tuple[str | None, str | None]:
    """(AccountId, OpportunityId) of a row of an overflow's query."""
    record_id = str(row["Id"])
    if entity is Entity.ACCOUNT:
        return record_id, None
    if entity is Entity.OPPORTUNITY_LINE:
        parent = row.get("Opportunity") or {}
        account = parent.get("AccountId") if isinstance(parent, dict) else None
        return (account if isinstance(account, str) else None), row.get("OpportunityId")
    account = row.get("AccountId")
    return (account if isinstance(account, str) else None), record_id if entity is Entity.OPPORTUNITY else None


def _dump(raw: Any) -> bytes:
    try:
        return json.dumps(raw, default=str).encode()
    except (TypeError, ValueError):
        return repr(raw).encode()
