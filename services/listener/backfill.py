"""Backfill ("Start Data Sync"): a RESYNC event for every Account, resumable, exactly once per run.

Accounts are read in Id order (`SELECT Id FROM Account [WHERE <filter> AND] Id > '<last>' ORDER
BY Id`, paged by the REST client through queryAll pages). Every `backfill_batch_size` accounts,
one Kafka transaction commits their RESYNC events together with the progress record (key
`backfill:<name>` in the checkpoint topic: run id, filter, last Id published, count, done).
A crash loses nothing and duplicates nothing: the uncommitted batch is aborted and a resumed
run starts after the last committed Id with the same run id, so event ids stay stable per run
(`make_event_id("backfill:<run id>", record id)`).

With `entity=Entity.OPPORTUNITY` the same loop publishes a RESYNC event for every won Opportunity
(`IsWon = true`, keyed by its AccountId, naming itself), so the syncer pushes (or marks) each again;
unchanged ones write nothing.

The listener runs the same code under the name `resync` (`resync-opportunities` for opportunities) when
Salesforce no longer retains its replay id, and resumes an unfinished one when it restarts.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from services.listener.metrics import BACKFILL_RECORDS
from services.listener.publisher import BackfillProgress, Record, TransactionalPublisher, backfill_record, event_record
from shared.errors import ConfigError
from shared.events import Entity, Source, resync_event

if TYPE_CHECKING:
    from shared.salesforce import RecordReader

log = structlog.get_logger(__name__)

Progress = Callable[[BackfillProgress], None]


def backfill_query(where: str, after_id: str, entity: Entity = Entity.ACCOUNT) -> str:
    """The SOQL of a backfill: optional filter, resume point, Id order (opportunities: won ones, with AccountId)."""
    conditions = ["IsWon = true"] if entity is Entity.OPPORTUNITY else []
    if where.strip():
        conditions.append(f"({where.strip()})")
    if after_id:
        conditions.append(f"Id > '{after_id}'")
    clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    fields = "Id" if entity is Entity.ACCOUNT else "Id, AccountId"
    return f"SELECT {fields} FROM {entity.value}{clause} ORDER BY Id"  # noqa: S608 - the filter is the operator's own SOQL


def check_where(where: str) -> str:
    """Refuse filters that would break the query we wrap around them."""
    lowered = where.lower()
    for word in (" order by ", " limit ", " offset ", "select "):
        if word in f" {lowered} ":
            raise ConfigError(f"--where takes a SOQL condition only (no {word.strip().upper()}): {where!r}")
    return where.strip()


def run_backfill(
    source: RecordReader,
    publisher: TransactionalPublisher,
    *,
    name: str = "backfill",
    where: str = "",
    resume: bool = False,
    batch_size: int = 1000,
    reason: str = "backfill",
    on_progress: Progress | None = None,
    stop: threading.Event | None = None,
    entity: Entity = Entity.ACCOUNT,
    rows: Iterable[Mapping[str, Any]] | None = None,
    source_label: Source = Source.BACKFILL,
) -> BackfillProgress:
    """Publish a RESYNC event for every matching Account (or won Opportunity); return the final progress record.

    With `resume`, an unfinished run of the same name continues after its last committed Id
    (with its own filter and run id); a finished or absent one starts a new run. `rows` (records with `Id`,
    and `AccountId` for opportunities, in Id order) replaces the query: `sfls reconcile --repair` resyncs the
    accounts it found drifted, with `source_label` RECONCILE.
    """
    previous = publisher.load_state().backfills.get(name)
    if resume and previous is not None and not previous.done:
        progress = previous
        log.info("backfill_resumed", name=name, run_id=progress.run_id, after=progress.last_id)
    else:
        progress = BackfillProgress(name=name, run_id=uuid.uuid4().hex[:16], where=check_where(where), reason=reason)
        log.info("backfill_started", name=name, run_id=progress.run_id, where=progress.where)
    started = datetime.now(UTC)
    batch: list[tuple[str, str]] = []  # (record id, account id)
    last = progress.last_id
    found = (
        rows if rows is not None else source.query_all_iter(backfill_query(progress.where, progress.last_id, entity))
    )
    for row in found:
        last = str(row["Id"])
        account = last if entity is Entity.ACCOUNT else row.get("AccountId")
        if isinstance(account, str) and account:  # an opportunity without an account has nothing to push
            batch.append((last, account))
        if len(batch) >= batch_size:
            progress = _commit(
                publisher, progress, batch, started, done=False, entity=entity, last=last, label=source_label
            )
            batch = []
            if on_progress is not None:
                on_progress(progress)
            if stop is not None and stop.is_set():
                log.info("backfill_paused", name=name, run_id=progress.run_id, published=progress.published)
                return progress
    progress = _commit(publisher, progress, batch, started, done=True, entity=entity, last=last, label=source_label)
    if on_progress is not None:
        on_progress(progress)
    log.info("backfill_finished", name=name, run_id=progress.run_id, published=progress.published)
    return progress


def _commit(
    publisher: TransactionalPublisher,
    progress: BackfillProgress,
    ids: list[tuple[str, str]],
    started: datetime,
    *,
    done: bool,
    entity: Entity,
    last: str,
    label: Source = Source.BACKFILL,
) -> BackfillProgress:
    records: list[Record] = []
    for record_id, account_id in ids:
        event = resync_event(
            entity,
            record_id,
            account_id,
            label,
            origin=f"{label.value}:{progress.run_id}",
            committed_at=started,
            opportunity_id=record_id if entity is Entity.OPPORTUNITY else None,
        )
        records.append(event_record(publisher.topics, event))
    updated = BackfillProgress(
        name=progress.name,
        run_id=progress.run_id,
        where=progress.where,
        last_id=last,
        published=progress.published + len(ids),
        done=done,
        reason=progress.reason,
    )
    records.append(backfill_record(publisher.topics, updated))
    publisher.commit(records)
    BACKFILL_RECORDS.inc(len(ids))
    return updated
