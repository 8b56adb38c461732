"""The consume/commit loop of the syncer: when offsets are committed, and what a crash does.

The loop repeats four steps for each batch of `sfls.changes` records:

1. Collect: poll until the batch's interval has passed (or it is full). Nothing is committed.
   A crash here loses nothing: the records are read again from the last committed offset.
2. Process: coalesce per account, read Salesforce, write LogiSense (upserts keyed by the
   Salesforce id). The assigned partitions are paused meanwhile and the consumer keeps polling,
   so the group membership stays alive. A crash here leaves some accounts written and others
   not; nothing is committed, so the whole batch comes back and is written again. Because every
   write searches by the Salesforce id before it creates, the second pass updates what the
   first created and never duplicates.
3. Dead-letter: each record whose account could not be delivered goes to `sfls.changes.dlt`
   with the error headers, and we wait until Kafka acknowledges every one (and every request-log
   record). A crash here may leave some dead letters written twice (the batch is redone); a
   dead letter is an error log entry and `sfls dlq replay` is idempotent, so that is harmless.
4. Commit: synchronously, per partition, the offset after the batch's last record. Only now is
   the batch done. A crash before the commit redoes the batch (step 2); after it, nothing. A commit
   Kafka refuses counts the batch as failed; its offsets are committed with the next batch's, or at
   the next poll that brings nothing (a quiet topic), or on the way out, unless a rebalance takes the
   partitions first (their new owner redoes the records).

A batch that fails as a whole (Salesforce unreachable, Kafka refusing the dead letters) is not
committed: the consumer seeks back to the batch's first offsets and the batch is retried after a
backoff that grows with each failure in a row (`sync.batch_retry_*`, shared/retry.py); what was
polled meanwhile is read again too. Partitions revoked while a batch was in flight are not committed
by us; their new owner redoes those records, which is safe for the same reason as a crash.

Stopping: the first SIGTERM lets the batch in flight finish and commit, then the loop closes.
A second SIGTERM abandons the batch in flight without committing any of it.

`BatchLoop` is that loop for any batch: `ConsumeLoop` is the syncer's (sfls.changes, coalesced per account,
dead letters to sfls.changes.dlt); the Requests tab writer (services/requests_tab/app.py) has its own batch
of request records and dead letters, with the same commit and crash guarantees.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from services.syncer.batch import Coalesced, Received, coalesce, collect
from services.syncer.hooks import Batch, BatchHooks, BatchResult, NoHooks
from shared.deadletter import Failure, Origin, count_dead_letter, dead_letter_headers
from shared.errors import AuthorizationError, MalformedMessageError, TransientError
from shared.kafka import Topics, produce_and_flush
from shared.retry import RetryPolicy

log = structlog.get_logger(__name__)
SERVICE = "syncer"
LATE_COMMIT_SECONDS = 5.0  # at most this long without records before a late commit is made


class CommitFailedError(TransientError):
    """Kafka did not take a delivered batch's offsets (a rebalance, a coordinator away)."""


B = TypeVar("B", bound=Batch)
Process = Callable[[Coalesced], Awaitable[BatchResult]]


class BatchLoop(Generic[B]):
    """Collect, process, dead-letter, commit; see the module docstring for the guarantees.

    A subclass says how records become a batch (`prepare`) and which records of a processed batch are
    dead-lettered (`dead_letter_entries`, to `dead_letter_topic`; without a producer, none may be).
    """

    def __init__(
        self,
        *,
        consumer: Consumer,
        producer: Producer | None,
        subscribe: Sequence[str],
        process: Callable[[B], Awaitable[BatchResult]],
        interval_seconds: float,
        max_events: int,
        service: str = SERVICE,
        dead_letter_topic: str = "",
        hooks: BatchHooks[B] | None = None,
        tick: Callable[[], None] = lambda: None,
        on_assigned: Callable[[], None] = lambda: None,
        retry_pause_seconds: float = 5.0,
        retry_pause_cap_seconds: float = 300.0,
        heartbeat_seconds: float = 1.0,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._subscribe = list(subscribe)
        self._service = service
        self._dead_letter_topic = dead_letter_topic
        self._process = process
        self._interval = interval_seconds
        self._max_events = max_events
        self._hooks: BatchHooks[B] = hooks or NoHooks()
        self._tick = tick
        self._on_assigned = on_assigned
        # Failed batches in a row, and the backoff between their retries (shared/retry.py).
        self._failures = 0
        self._pause = RetryPolicy(
            max_attempts=sys.maxsize, base_seconds=retry_pause_seconds, cap_seconds=retry_pause_cap_seconds
        )
        self._heartbeat = heartbeat_seconds
        self._stop = False
        self._revoked: set[tuple[str, int]] = set()
        self._carry: list[Received] = []
        # Delivered batches whose commit failed: the next offset per partition, committed at the next chance.
        self._uncommitted: dict[tuple[str, int], int] = {}
        self._last_committed: list[int] = []
        self._current: asyncio.Task[BatchResult] | None = None
        self.batches_committed = 0

    def prepare(self, records: list[Received]) -> B:
        """The batch the process step gets from the collected records."""
        raise NotImplementedError

    def dead_letter_entries(self, batch: B, result: BatchResult) -> list[tuple[Received, Failure]]:
        """The records of a processed batch that go to the dead-letter topic, each with why."""
        return list(result.record_failures)

    # --- control --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: finish the batch in flight, then stop. Second call: abandon it."""
        if self._stop and self._current is not None and not self._current.done():
            log.warning("abandoning_batch", reason="second stop request")
            self._current.cancel()
        self._stop = True

    @property
    def stopping(self) -> bool:
        return self._stop

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        self._consumer.subscribe(
            self._subscribe, on_assign=self._assigned, on_revoke=self._revoked_cb, on_lost=self._revoked_cb
        )
        try:
            while not self._stop:
                self._revoked.clear()
                # Polling blocks, so it runs in a worker thread; the event loop stays free for signals.
                records = self._carry + await asyncio.to_thread(
                    collect,
                    self._consumer,
                    interval_seconds=self._interval,
                    max_events=max(1, self._max_events - len(self._carry)),
                    should_stop=lambda: self._stop,
                    tick=self._tick,
                    # Offsets a refused commit left behind go out at the first quiet moment, not with the next
                    # record, which on a quiet topic may be hours away.
                    idle_seconds=min(self._interval, LATE_COMMIT_SECONDS) if self._uncommitted else None,
                )
                self._carry = []
                if records and not self._stop:  # collected but not started: left for the next owner
                    await self.handle(records)
                    await asyncio.sleep(0)
                elif self._uncommitted and not self._stop:
                    self._commit_late()
                # Let go of this batch before the next is collected: otherwise two batches live at once and
                # memory is twice what sync.max_batch_events says.
                records = []
        finally:
            if self._uncommitted:  # delivered: safe to commit on the way out
                self._commit_late()
            self._consumer.close()  # leaves the group; uncommitted records go to the next owner

    async def handle(self, records: list[Received]) -> bool:
        """Process one batch; True when it was committed."""
        records = [r for r in records if (r.topic, r.partition) not in self._revoked]
        if not records:
            return False
        batch = self.prepare(records)
        self._hooks.batch_started(batch)
        started = time.monotonic()
        try:
            result = await self._process_keeping_membership(batch)
            dead = self._dead_letters(batch, result)
            if self._producer is not None:
                self._producer.flush(30)  # request-log records of this batch
        except asyncio.CancelledError:
            log.warning("batch_abandoned", **batch.summary())
            raise
        except AuthorizationError:  # a missing ACL: no rewind can help; the batch stays uncommitted
            self._rewind(records)
            raise
        except Exception as exc:
            log.exception("batch_failed", **batch.summary())
            self._hooks.batch_failed(batch, exc)
            self._rewind(records)
            self._failures += 1
            pause = self._pause.delay(self._failures)
            self._hooks.retry_pause(pause)
            log.warning("batch_retry_scheduled", failures_in_a_row=self._failures, retry_in_seconds=round(pause, 2))
            self._report_lag()  # the records wait: a syncer failing since its start still shows its lag
            await asyncio.sleep(pause)
            return False
        committed = self._commit(records)
        if committed:
            self._hooks.batch_finished(batch, result, dead, time.monotonic() - started)
            if self._failures:
                self._failures = 0
                self._hooks.retry_pause(0.0)
        else:
            # Delivered but not committed: a new owner of the partitions redoes the batch (idempotently), or
            # this loop's next commit covers it. Either way it is a failed batch for the metrics, so a syncer
            # whose commits keep failing does not look healthy (its last-batch timestamp stands still).
            self._hooks.batch_failed(batch, CommitFailedError("the batch's offsets were not committed"))
        self._report_lag()  # after every batch, committed or not, so the stalled-syncer alert sees the wait
        return committed

    async def _process_keeping_membership(self, batch: B) -> BatchResult:
        """Run the processing while the partitions are paused and the consumer keeps polling."""
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)
        self._current = asyncio.ensure_future(self._process(batch))
        try:
            while True:
                done, _ = await asyncio.wait({self._current}, timeout=self._heartbeat)
                if done:
                    return self._current.result()
                self._tick()
                message = self._consumer.poll(0)  # serves rebalances and keeps the member alive
                if message is not None and message.error() is None:
                    self._carry.append(Received.from_message(message))
        finally:
            self._current = None
            current = self._consumer.assignment()
            if current:
                self._consumer.resume(current)

    def _dead_letters(self, batch: B, result: BatchResult) -> int:
        entries = self.dead_letter_entries(batch, result)
        if not entries:
            return 0
        if self._producer is None or not self._dead_letter_topic:
            raise TypeError(f"{type(self).__name__} dead-letters records but has no producer or dead-letter topic")
        produce_and_flush(
            self._producer,
            self._dead_letter_topic,
            (
                (
                    record.key,
                    record.value,
                    list(
                        dead_letter_headers(
                            failure,
                            service=self._service,
                            origin=Origin(record.topic, record.partition, record.offset),
                            original=record.original_headers,
                        )
                    ),
                )
                for record, failure in entries
            ),
        )
        for _record, failure in entries:
            count_dead_letter(self._service, self._dead_letter_topic, failure)
        return len(entries)

    def _commit(self, records: list[Received]) -> bool:
        """Commit the batch's offsets, and those of earlier delivered batches whose commit failed."""
        if not self._commit_offsets(records):
            return False
        self.batches_committed += 1
        return True

    def _commit_late(self) -> None:
        """Commit what delivered batches left uncommitted, with no new records to carry it (a quiet topic)."""
        if self._commit_offsets([]):
            log.info("late_commit", partitions=self._last_committed)
            self._hooks.late_commit()
            self._report_lag()

    def _commit_offsets(self, records: list[Received]) -> bool:
        wanted = dict(self._uncommitted)
        for tp in _next_offsets(records):
            wanted[(tp.topic, tp.partition)] = max(wanted.get((tp.topic, tp.partition), 0), tp.offset)
        keep = {key: offset for key, offset in wanted.items() if key not in self._revoked}
        self._uncommitted = {}
        if not keep:
            return False
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, offset) for (t, p), offset in sorted(keep.items())], asynchronous=False
            )
        except KafkaException as exc:
            # A rebalance that takes the partitions: their new owner redoes the records (idempotent), and the
            # revoke drops them here. Otherwise the next commit, or the next quiet poll, tries these again.
            log.warning("commit_failed", error=str(exc))
            self._uncommitted = keep
            return False
        self._last_committed = sorted(p for _t, p in keep)
        return True

    def _rewind(self, records: list[Received]) -> None:
        """Seek back to the first record of the failed batch, and of what was polled while it ran.

        The carried records may come from partitions assigned during the batch: dropping them without
        seeking back would move those partitions past records nobody processed, and a later commit past them.
        """
        pending = records + self._carry
        self._carry = []
        for (topic, partition), offset in _first_offsets(pending).items():
            if (topic, partition) in self._revoked:
                continue
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("rewind_failed", topic=topic, partition=partition, error=str(exc))

    def _report_lag(self) -> None:
        """Records not committed yet, per partition: one OffsetFetch, and the high watermarks librdkafka
        already holds from its fetches (no request per partition, so the next batch is not held up)."""
        try:
            assignment = self._consumer.assignment()
            committed = self._consumer.committed(assignment, timeout=5) if assignment else []
        except KafkaException as exc:
            log.debug("lag_unavailable", error=str(exc))
            return
        for tp in committed:
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:  # nothing fetched from this partition yet
                continue
            position = tp.offset if tp.offset >= 0 else low
            self._hooks.lag(tp.topic, tp.partition, max(0, high - position))

    # --- rebalance callbacks (run inside poll/consume) --------------------------------------------

    def _assigned(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=[p.partition for p in partitions])
        # A partition lost and assigned back (a session timeout while the broker was away) is ours again:
        # its records are no longer dropped as revoked, and if it was paused for a batch it is resumed
        # (librdkafka keeps the pause across the re-assignment, and the partition would never be read).
        self._revoked.difference_update((p.topic, p.partition) for p in partitions)
        try:
            self._consumer.resume(partitions)
        except KafkaException as exc:
            log.warning("resume_failed", error=str(exc))
        if partitions:  # an empty (incremental) assignment does not make this member a consumer yet
            self._on_assigned()

    def _revoked_cb(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("partitions_revoked", partitions=[p.partition for p in partitions])
        self._revoked.update((p.topic, p.partition) for p in partitions)
        for p in partitions:  # their new owner redoes what we delivered but could not commit
            self._uncommitted.pop((p.topic, p.partition), None)
        self._carry = [r for r in self._carry if (r.topic, r.partition) not in self._revoked]


class ConsumeLoop(BatchLoop[Coalesced]):
    """The syncer's loop: sfls.changes coalesced per account; a failed account's records and malformed records
    are dead-lettered to sfls.changes.dlt."""

    def __init__(self, *, consumer: Consumer, producer: Producer, topics: Topics, process: Process, **kwargs: Any):
        super().__init__(
            consumer=consumer,
            producer=producer,
            subscribe=[topics.changes],
            process=process,
            dead_letter_topic=topics.changes_dlt,
            **kwargs,
        )

    def prepare(self, records: list[Received]) -> Coalesced:
        return coalesce(records)

    def dead_letter_entries(self, batch: Coalesced, result: BatchResult) -> list[tuple[Received, Failure]]:
        entries: list[tuple[Received, Failure]] = [
            (record, Failure.from_exception(MalformedMessageError(record.parse_error))) for record in batch.malformed
        ]
        for account_id, failure in result.failures.items():
            entries += [(record, failure) for record in batch.accounts[account_id].records]
        return entries + result.record_failures


def _next_offsets(records: list[Received]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        last[key] = max(last.get(key, -1), record.offset)
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in sorted(last.items())]


def _first_offsets(records: list[Received]) -> dict[tuple[str, int], int]:
    first: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        first[key] = min(first.get(key, record.offset), record.offset)
    return first
