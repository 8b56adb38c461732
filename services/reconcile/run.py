"""`sfls reconcile --scope accounts`: read both systems, compare (drift.py), print or write the drift, repair.

- Salesforce: every Account (deleted ones included, `queryAll`), only the fields the mapping reads, in Id order,
  paged by the REST client; `--where` narrows it (then LogiSense accounts outside it are not called orphans).
- LogiSense: every Account through paged search, grouped by the link field (`logisense.link_field`); every
  Contact and contact point, the contacts found by their link point.
- Salesforce contacts: every Contact (deleted ones included) with the fields the contact mapping reads.
- The reference data (types, statuses, bill groups, AR terms, currencies) is LogiSense's own, loaded like the
  syncer loads it, and a multi-currency org is recognised from the Account describe, as the syncer does.
- `--repair` publishes a RESYNC event (source `reconcile`) for the account of every repairable drift through the
  backfill's transactional path (services/listener/backfill.py, progress key `backfill:reconcile`), so the
  syncer stays the only writer to LogiSense; orphans, duplicates and unmappable accounts are left for a person.
Both sides are held in memory for the comparison (a known limit: the streamed merge of the issue is next).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from services.reconcile.drift import Drift, compare_accounts, compare_contacts
from services.syncer.lookups import LsContact, with_points
from services.syncer.references import References
from services.syncer.snapshot import id15
from shared.budget import Work
from shared.logisense import LogisenseClient
from shared.mapping import account_query_fields, contact_query_fields, org_currencies
from shared.observability import push_metrics
from shared.retry import RetryPolicy
from shared.salesforce import SalesforceRest
from shared.settings import Settings

log = structlog.get_logger(__name__)

REPAIR_NAME = "reconcile"
Progress = Callable[[str, int], None]  # (system, records read so far)


@dataclass
class Report:
    """What one run found (and, with --repair, resynced)."""

    drifts: list[Drift] = field(default_factory=list)
    records: Counter[str] = field(default_factory=Counter)  # per system
    repaired: int = 0
    seconds: float = 0.0

    @property
    def in_sync(self) -> bool:
        return not self.drifts

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(d.kind.value for d in self.drifts).items()))

    def summary(self) -> dict[str, Any]:
        return {
            "summary": {
                "scope": "accounts",
                "in_sync": self.in_sync,
                "drift": self.counts(),
                "records": dict(sorted(self.records.items())),
                "repaired": self.repaired,
                "seconds": round(self.seconds, 3),
            }
        }


def salesforce_query(settings: Settings, where: str, *, multi_currency: bool) -> str:
    fields = [*account_query_fields(settings, multi_currency=multi_currency), "IsDeleted"]
    clause = f" WHERE ({where})" if where else ""
    return f"SELECT {', '.join(dict.fromkeys(fields))} FROM Account{clause} ORDER BY Id"  # noqa: S608 - the operator's own SOQL


async def reconcile_accounts(
    settings: Settings, *, where: str = "", on_progress: Progress | None = None
) -> tuple[Report, SalesforceRest]:
    """Compare every Salesforce account (matching `where`) with LogiSense; the report and the REST client."""
    started = time.monotonic()
    report = Report()
    rest = SalesforceRest.for_service(
        settings,
        "reconcile",
        Work.BULK,
        on_budget_change=lambda: push_metrics(settings.reconcile.pushgateway_url, "sfls-reconcile"),
    )
    await asyncio.to_thread(rest.budget.refresh)
    async with LogisenseClient(settings.logisense, retry=RetryPolicy.from_settings(settings.sync.retry)) as client:
        refs = References()
        await refs.load(client)
        describe = await asyncio.to_thread(rest.describe, "Account")
        refs.multi_currency = org_currencies(describe) is not None
        logisense: dict[str, list[dict[str, Any]]] = {}
        link = settings.logisense.link_field
        async for record in client.search_paged("Account"):
            report.records["logisense"] += 1
            value = record.get(link)
            if value:
                logisense.setdefault(id15(str(value)), []).append(record)
            if on_progress is not None and report.records["logisense"] % 500 == 0:
                on_progress("logisense", report.records["logisense"])
        contacts = await _logisense_contacts(client)
    report.records["logisense_contacts"] = len(contacts)
    soql = salesforce_query(settings, where, multi_currency=refs.multi_currency)
    contact_fields = ", ".join(dict.fromkeys([*contact_query_fields(settings), "IsDeleted"]))
    contact_soql = f"SELECT {contact_fields} FROM Contact ORDER BY Id"  # noqa: S608 - our own field list

    def read_salesforce(query: str, system: str) -> list[dict[str, Any]]:
        rows = []
        for row in rest.query_all_iter(query, include_deleted=True):
            rows.append(row)
            if on_progress is not None and len(rows) % 500 == 0:
                on_progress(system, len(rows))
        return rows

    accounts = await asyncio.to_thread(read_salesforce, soql, "salesforce")
    sf_contacts = await asyncio.to_thread(read_salesforce, contact_soql, "salesforce contacts")
    if where:  # only the contacts of the accounts read
        matched = {id15(str(a["Id"])) for a in accounts}
        sf_contacts = [c for c in sf_contacts if id15(str(c.get("AccountId") or "")) in matched]
    report.records["salesforce"] = len(accounts)
    report.records["salesforce_contacts"] = len(sf_contacts)
    complete = not where
    report.drifts = list(compare_accounts(accounts, logisense, settings, refs, complete=complete))
    report.drifts += compare_contacts(sf_contacts, contacts, logisense, settings, refs, complete=complete)
    report.seconds = time.monotonic() - started
    log.info("reconcile_compared", **report.summary()["summary"])
    return report, rest


async def _logisense_contacts(client: LogisenseClient) -> list[LsContact]:
    """Every LogiSense contact with its points (both paged)."""
    records = [record async for record in client.search_paged("Contact")]
    return with_points(records, [point async for point in client.search_paged("Contact/Point")])


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
