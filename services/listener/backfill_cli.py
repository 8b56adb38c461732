"""`sfls backfill` around backfill.py: its own transactional producer and a progress bar on a TTY."""

from __future__ import annotations

import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.listener.backfill import backfill_query, check_where, run_backfill
from services.listener.publisher import BackfillProgress, TransactionalPublisher
from shared import acls, kafka
from shared.budget import Work
from shared.events import Entity
from shared.salesforce import SalesforceRest
from shared.settings import Settings

BACKFILL_NAME = "backfill"
OPPORTUNITY_BACKFILL_NAME = "backfill-opportunities"


def backfill_command(
    settings: Settings, *, where: str = "", resume: bool = False, opportunities: bool = False
) -> BackfillProgress:
    """Run (or resume) the backfill of accounts (or won opportunities); show progress on a terminal."""
    from shared.observability import configure_logging, secret_values
    from shared.salesforce import SalesforceRest

    configure_logging("listener", settings.observability, secret_values(settings))
    where = check_where(where)
    if settings.kafka.create_topics:
        kafka.ensure_topics(settings.kafka, acls.own_topics("backfill", settings))
    acls.preflight("backfill", settings)
    rest = SalesforceRest.for_service(settings, "backfill", Work.BULK)
    rest.budget.refresh()
    publisher = TransactionalPublisher(
        settings.kafka,
        f"{settings.listener.transactional_id}.{BACKFILL_NAME}",
        timeout_seconds=settings.listener.transaction_timeout_seconds,
    )
    publisher.start()
    entity = Entity.OPPORTUNITY if opportunities else Entity.ACCOUNT
    name = OPPORTUNITY_BACKFILL_NAME if opportunities else BACKFILL_NAME
    try:
        if not sys.stderr.isatty():
            return run_backfill(
                rest,
                publisher,
                name=name,
                where=where,
                resume=resume,
                batch_size=settings.listener.backfill_batch_size,
                entity=entity,
            )
        total = _count(rest, where, entity)
        with Progress(
            TextColumn("backfill"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
        ) as bar:
            task = bar.add_task("opportunities" if opportunities else "accounts", total=total)

            def show(progress: BackfillProgress) -> None:
                bar.update(task, completed=progress.published)

            return run_backfill(
                rest,
                publisher,
                name=name,
                where=where,
                resume=resume,
                batch_size=settings.listener.backfill_batch_size,
                on_progress=show,
                entity=entity,
            )
    finally:
        publisher.close()


def _count(rest: SalesforceRest, where: str, entity: Entity) -> int | None:
    """How many records match (for the bar's total), or None when the count query fails."""
    soql = backfill_query(where, "", entity).removesuffix(" ORDER BY Id")
    soql = "SELECT COUNT() FROM" + soql.split(" FROM", 1)[1]
    try:
        answer = rest.call(lambda sf: sf.query(soql), kind="query", what="count accounts")
    except Exception:  # noqa: BLE001 - the total only decorates the bar; the backfill itself reports errors
        return None
    total = answer.get("totalSize") if isinstance(answer, dict) else None
    return total if isinstance(total, int) else None
