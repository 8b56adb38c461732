"""`sfls reconcile --scope accounts`: read both systems, compare (drift.py), print or write the drift, repair.

- Both systems are read at once into sorted temporary runs and merged by the 15-character Salesforce id
  (services/reconcile/sides.py and merge.py), so memory stays bounded whatever the size of the org.
- Salesforce: every Account (deleted ones included, `queryAll`), only the fields the mapping reads; `--where`
  narrows it (then LogiSense accounts outside it are not called orphans, and only the contacts of the accounts
  read are compared). Every Contact likewise. REST query pages, or a Bulk API 2.0 query job at or above
  `reconcile.bulk_threshold` records.
- LogiSense: every Account through paged search, by the link field (`logisense.link_field`); every Contact and
  contact point, the contacts found by their link point.
- The reference data (types, statuses, bill groups, AR terms, currencies) is LogiSense's own, loaded like the
  syncer loads it, and a multi-currency org is recognised from the Account describe, as the syncer does.
- `--repair` publishes a RESYNC event (source `reconcile`) for the account of every repairable drift through the
  backfill's transactional path (services/listener/backfill.py, progress key `backfill:reconcile`), so the
  syncer stays the only writer to LogiSense; orphans, duplicates and unmappable accounts are left for a person.
The drift found is held in memory (one small record per difference).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from services.reconcile.drift import Drift, compare_accounts, compare_contacts
from services.reconcile.merge import KeyIndex
from services.reconcile.sides import Progress, Query, Sides, read_both
from services.syncer.references import References
from services.syncer.snapshot import id15
from shared.budget import Work
from shared.errors import TransientError
from shared.events import RequestRecord, RequestStatus
from shared.logisense import LogisenseClient
from shared.mapping import account_query_fields, contact_query_fields, org_currencies
from shared.observability import push_metrics
from shared.retry import RetryPolicy
from shared.salesforce import SalesforceRest
from shared.settings import Settings

log = structlog.get_logger(__name__)

REPAIR_NAME = "reconcile"
SERVICE = "reconcile"  # its principal's ACL set (shared/acls.py) and the request log's service


@dataclass
class Report:
    """What one run found (and, with --repair, resynced)."""

    drifts: list[Drift] = field(default_factory=list)
    records: Counter[str] = field(default_factory=Counter)  # per system
    repaired: int = 0
    seconds: float = 0.0
    scope: str = "accounts"

    @property
    def in_sync(self) -> bool:
        return not self.drifts

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(d.kind.value for d in self.drifts).items()))

    def summary(self) -> dict[str, Any]:
        return {
            "summary": {
                "scope": self.scope,
                "in_sync": self.in_sync,
                "drift": self.counts(),
                "records": dict(sorted(self.records.items())),
                "repaired": self.repaired,
                "seconds": round(self.seconds, 3),
            }
        }


async def salesforce_client(settings: Settings) -> SalesforceRest:
    """The one Salesforce client of a run, shared by its scopes: bulk work for the budget (shared/budget.py), its
    pauses pushed to the Pushgateway like the run's metrics, `/limits` read before the first call."""
    rest = SalesforceRest.for_service(
        settings,
        SERVICE,
        Work.BULK,
        on_budget_change=lambda: push_metrics(settings.reconcile.pushgateway_url, "sfls-reconcile"),
    )
    await asyncio.to_thread(rest.budget.refresh)
    return rest


def queries(settings: Settings, where: str, *, multi_currency: bool) -> tuple[Query, Query]:
    """The Salesforce reads: accounts (matching `where`) and contacts, with the fields the mapping reads."""
    account_fields = (*account_query_fields(settings, multi_currency=multi_currency), "IsDeleted")
    contact_fields = (*contact_query_fields(settings), "IsDeleted")
    return Query("Account", account_fields, where), Query("Contact", contact_fields)


async def reconcile_accounts(
    settings: Settings, rest: SalesforceRest, *, where: str = "", on_progress: Progress | None = None
) -> Report:
    """Compare every Salesforce account (matching `where`) with LogiSense."""
    started = time.monotonic()
    report = Report()
    async with LogisenseClient(settings.logisense, retry=RetryPolicy.from_settings(settings.sync.retry)) as client:
        refs = References()
        await refs.load(client)
        describe = await asyncio.to_thread(rest.describe, "Account")
        refs.multi_currency = org_currencies(describe) is not None
        reads = queries(settings, where, multi_currency=refs.multi_currency)
        sides, counts = await read_both(settings, (rest, client), refs, reads, on_progress)
    try:
        report.records.update(counts)
        report.drifts = await asyncio.to_thread(_compare, sides, settings, refs, where)
    finally:
        await asyncio.to_thread(sides.close)
    report.seconds = time.monotonic() - started
    log.info("reconcile_compared", **report.summary()["summary"])
    return report


def _compare(sides: Sides, settings: Settings, refs: References, where: str) -> list[Drift]:
    """Merge the sorted sides (blocking: it reads the temporary files)."""
    complete = not where
    drifts = list(compare_accounts(sides.account_groups(), sides.identity_of.get, settings, refs, complete=complete))
    contacts = sides.contact_groups()
    if where:  # only the contacts of the accounts read
        matched = KeyIndex()
        for account in sides.salesforce_accounts:
            matched.add(id15(str(account["Id"])), 1)
        contacts = (g for g in contacts if not g[1] or matched.get(id15(str(g[1][0].get("AccountId") or ""))))
    drifts += compare_contacts(contacts, sides.identity_of.get, sides.owner_of, settings, refs, complete=complete)
    return drifts


def repair(settings: Settings, rest: SalesforceRest, report: Report) -> int:
    """Publish a RESYNC event (source `reconcile`) for the account of every repairable drift; how many."""
    from services.listener.backfill import run_backfill
    from services.listener.publisher import TransactionalPublisher
    from shared import acls, kafka
    from shared.events import Source

    ids = sorted({account for d in report.drifts if (account := d.repair_account)})
    if not ids:
        return 0
    if settings.kafka.create_topics:
        kafka.ensure_topics(settings.kafka, acls.own_topics("backfill", settings))
    acls.preflight("backfill", settings)
    publisher = TransactionalPublisher(
        settings.kafka,
        f"{settings.listener.transactional_id}.backfill",
        timeout_seconds=settings.listener.transaction_timeout_seconds,
    )
    publisher.start()
    try:
        progress = run_backfill(
            rest,
            publisher,
            name=REPAIR_NAME,
            batch_size=settings.listener.backfill_batch_size,
            reason=REPAIR_NAME,
            rows=({"Id": i} for i in ids),
            source_label=Source.RECONCILE,
        )
    finally:
        publisher.close()
    report.repaired = progress.published
    log.warning("reconcile_repair_published", accounts=progress.published, run_id=progress.run_id)
    return progress.published


def check_kafka(settings: Settings) -> None:
    """Before reading anything: the request-log topic exists (or is created) and Kafka lets this principal write it."""
    from shared import acls, kafka

    if settings.kafka.create_topics:
        kafka.ensure_topics(settings.kafka, acls.own_topics(SERVICE, settings))
    acls.preflight(SERVICE, settings)


def log_run(settings: Settings, report: Report, started_at: datetime) -> None:
    """The run's request-log record (`<prefix>.requests`, kind `reconcile:<scope>`): Success when in sync, Failed
    with the drift by kind otherwise; counts are the drift by kind, the records read and the accounts repaired."""
    from shared import kafka

    drift = report.counts()
    reason = "" if report.in_sync else "drift: " + ", ".join(f"{kind} {n}" for kind, n in drift.items())
    record = RequestRecord(
        request_id=uuid.uuid4().hex,
        service=SERVICE,
        kind=f"reconcile:{report.scope}",
        status=RequestStatus.SUCCESS if report.in_sync else RequestStatus.FAILED,
        key=report.scope,
        started_at=started_at,
        duration_seconds=report.seconds,
        reason=reason[:2000],
        counts={
            **drift,
            **{f"records_{system}": n for system, n in report.records.items()},
            "repaired": report.repaired,
        },
    )
    topic = kafka.Topics(settings.kafka.topic_prefix).requests
    try:
        kafka.produce_and_flush(
            kafka.producer(settings.kafka),
            topic,
            [(record.key.encode(), record.to_bytes(), [])],
            settings=settings.kafka,
        )
    except TransientError as exc:
        raise TransientError(
            f"the request-log record of this reconcile run did not reach Kafka ({exc}); its report stands; check "
            "SFLS_KAFKA__BOOTSTRAP_SERVERS"
        ) from None
