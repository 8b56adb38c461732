"""Backfill ("Start Data Sync"): a RESYNC event for every Account, resumable, exactly once per run.

Accounts are read in Id order (`SELECT Id FROM Account [WHERE <filter> AND] Id > '<last>' ORDER
BY Id`, paged by the REST client through queryAll pages). Every `backfill_batch_size` accounts,
one Kafka transaction commits their RESYNC events together with the progress record (key
`backfill:<name>` in the checkpoint topic: run id, filter, last Id published, count, done).
A crash loses nothing and duplicates nothing: the uncommitted batch is aborted and a resumed
run starts after the last committed Id with the same run id, so event ids stay stable per run
(`make_event_id("backfill:<run id>", account id)`).

The listener runs the same code under the name `resync` when Salesforce no longer retains its
replay id, and resumes an unfinished one when it restarts.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from services.listener.metrics import BACKFILL_RECORDS
from services.listener.publisher import BackfillProgress, Record, TransactionalPublisher, backfill_record, event_record
from shared.errors import ConfigError
from shared.events import Entity, Source, resync_event

if TYPE_CHECKING:
    from shared.salesforce import RecordReader

log = structlog.get_logger(__name__)

Progress = Callable[[BackfillProgress], None]


def account_query(where: str, after_id: str) -> str:
    """The SOQL of a backfill: optional filter, resume point, Id order."""
    conditions = []
    if where.strip():
        conditions.append(f"({where.strip()})")
    if after_id:
        conditions.append(f"Id > '{after_id}'")
    clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT Id FROM Account{clause} ORDER BY Id"  # noqa: S608 - the filter is the operator's own SOQL


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
) -> BackfillProgress:
    """Publish a RESYNC event for every matching Account; return the final progress record.

    With `resume`, an unfinished run of the same name continues after its last committed Id
    (with its own filter and run id); a finished or absent one starts a new run.
    """
    previous = publisher.load_state().backfills.get(name)
    if resume and previous is not None and not previous.done:
        progress = previous
        log.info("backfill_resumed", name=name, run_id=progress.run_id, after=progress.last_id)
    else:
        progress = BackfillProgress(name=name, run_id=uuid.uuid4().hex[:16], where=check_where(where), reason=reason)
        log.info("backfill_started", name=name, run_id=progress.run_id, where=progress.where)
    started = datetime.now(UTC)
    batch: list[str] = []
    for row in source.query_all_iter(account_query(progress.where, progress.last_id)):
        batch.append(str(row["Id"]))
        if len(batch) >= batch_size:
            progress = _commit(publisher, progress, batch, started, done=False)
            batch = []
            if on_progress is not None:
                on_progress(progress)
            if stop is not None and stop.is_set():
                log.info("backfill_paused", name=name, run_id=progress.run_id, published=progress.published)
                return progress
    progress = _commit(publisher, progress, batch, started, done=True)
    if on_progress is not None:
        on_progress(progress)
    log.info("backfill_finished", name=name, run_id=progress.run_id, published=progress.published)
    return progress


def _commit(
    publisher: TransactionalPublisher, progress: BackfillProgress, ids: list[str], started: datetime, *, done: bool
) -> BackfillProgress:
    records: list[Record] = []
    for account_id in ids:
        event = resync_event(
            Entity.ACCOUNT,
            account_id,
            account_id,
            Source.BACKFILL,
            origin=f"backfill:{progress.run_id}",
            committed_at=started,
        )
        records.append(event_record(publisher.topics, event))
    updated = BackfillProgress(
        name=progress.name,
        run_id=progress.run_id,
        where=progress.where,
        last_id=ids[-1] if ids else progress.last_id,
        published=progress.published + len(ids),
        done=done,
        reason=progress.reason,
    )
    records.append(backfill_record(publisher.topics, updated))
    publisher.commit(records)
    BACKFILL_RECORDS.inc(len(ids))
    return updated
