"""`sfls reconcile --scope price_plans`: what quote to cash pushed against what LogiSense holds, writing nothing.

Every opportunity with `LogiSense_Push_Status__c = Pushed` is read from Salesforce a page at a time (its Ids by
keyset pages of `sf.CHUNK`, then services/opportunity/opportunities.py `read_opportunities`: the opportunities
and their lines) and its push is planned exactly as `sfls opportunity push` plans it (services/opportunity/app.py
`push_read`): `check_qualifies`, then services/opportunity/plan.py `plan_push` against LogiSense reads and
`entry_changes` against the plan's entries. Whatever that push would write to LogiSense is drift; the push hash
(`is_unchanged`) is not consulted, because it covers the Salesforce side only. The kinds (services/reconcile/drift.py):
- `price_plan_missing`: the account has no price plan (`plan_push` found none), or another one than the plan the
  push wrote (`LogiSense_Price_Plan_Id__c`); with none, the entries the push would create are not listed again;
- `price_plan_entry_missing`: an entry `entry_changes` would create (a line with no entry for one of its package's
  services, a line added since the push);
- `price_plan_entry_mismatch`: an entry `entry_changes` would update: one drift per charge field
  (`recurringCharges`, `oneTimeCharges`) that differs as the push compares them, with both values;
- `price_plan_entry_left_behind`: an entry `entry_changes` would delete (its line was removed; the push then deletes
  the line's product code too; a code an account package uses is kept with its entries, so is not drift);
- `price_plan_code_missing`: a line holds a product code (`LogiSense_Product_Code_Id__c`) and LogiSense has no code
  of its name (`Account_Product_Code_Name__c`) any more; the line's entries are not listed again;
- `price_plan_unplannable`: the push would refuse the opportunity now (the refusal's line, e.g. `not_won`,
  `account_not_synced`); nothing of it is compared.
Entries of the plan that no pushed opportunity's push would touch (another opportunity's, or a person's) are never
drift. All kinds are reported only: `--repair` leaves them (see the README's Reconcile for how a person repairs).

Memory: a page of opportunities at a time; the push's cache (services/opportunity/plan.py `PushCache`: each
LogiSense account, its plan list, each package frequency's catalogue) for the whole run, so a catalogue is read once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import structlog
from simple_salesforce.format import format_soql

from services.opportunity import opportunities as sf
from services.opportunity.plan import LinePlan, PushCache, PushPlan, entry_changes, plan_push, same_charges
from services.opportunity.refusals import PushRefusedError
from services.reconcile.drift import Drift, Kind
from services.reconcile.run import Report
from shared.logisense import LogisenseClient
from shared.retry import RetryPolicy
from shared.salesforce import SalesforceRest
from shared.settings import Settings

log = structlog.get_logger(__name__)

# The report's `records` keys.
OPPORTUNITIES = "salesforce_pushed_opportunities"
PLANS, ENTRIES = "logisense_price_plans", "logisense_price_plan_entries"
CHARGES = ("recurringCharges", "oneTimeCharges")  # the fields of an entry the push updates
PLAN_ID = "LogiSense_Price_Plan_Id__c"
Progress = Callable[[str, int], None]  # (what, read so far)
_VALUES = frozenset({Kind.PRICE_PLAN_ENTRY_MISMATCH, Kind.PRICE_PLAN_ENTRY_MISSING, Kind.PRICE_PLAN_ENTRY_LEFT_BEHIND})


@dataclass(frozen=True)
class PricePlanDrift(Drift):
    """A price plan drift: `salesforce_id` is the opportunity, `account_id` its Salesforce account, `logisense_id`
    the entry (or the plan, or the product code) it is about; `salesforce` is what the push would write and
    `logisense` what LogiSense holds (an entry to create: the entry; one to delete: the entry held)."""

    price_plan_id: int | None = None
    product_code: str | None = None  # the code's name (`<ProductCode>-<n>`: a code the push would create)
    line_id: str | None = None  # the OpportunityLineItem

    def to_json(self) -> dict[str, Any]:
        item = super().to_json()
        detail = item.pop("detail", None)
        for name in ("price_plan_id", "product_code", "line_id"):
            if getattr(self, name) is not None:
                item[name] = getattr(self, name)
        if self.kind in _VALUES:
            item["salesforce"], item["logisense"] = self.salesforce, self.logisense
        return item | ({"detail": detail} if detail else {})


def pushed_ids(rest: SalesforceRest, after: str | None) -> list[str]:
    """One page (`sf.CHUNK`) of the Ids of pushed opportunities, in Id order, after `after`."""
    condition = "LogiSense_Push_Status__c = 'Pushed'" + (format_soql(" AND Id > {}", after) if after else "")
    soql = f"SELECT Id FROM Opportunity WHERE {condition} ORDER BY Id LIMIT {sf.CHUNK}"  # noqa: S608
    return [str(row["Id"]) for row in rest.query_all(soql)]


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") and str(value).isdigit() else None


def compare(opp: sf.Opportunity, push: PushPlan) -> Iterator[PricePlanDrift]:
    """Every LogiSense write the planned push of a pushed opportunity would make, as drift (module docstring)."""
    written = _int(opp.written.get(PLAN_ID))
    plan_id = int(push.plan["identity"]) if push.plan is not None else None

    def drift(kind: Kind, logisense_id: int | None, detail: str, **extra: Any) -> PricePlanDrift:
        ids = {"price_plan_id": plan_id, "account_id": opp.account_id} | extra
        return PricePlanDrift(kind, opp.id, logisense_id, detail=detail, **ids)

    if plan_id is None or (written is not None and written != plan_id):
        now = f"; its account's plan is now {plan_id}" if plan_id is not None else ""
        yield drift(
            Kind.PRICE_PLAN_MISSING,
            written,
            f"price plan {written} of LogiSense account {push.account['identity']} is gone{now}",
            price_plan_id=written,
        )
    by_identity = {e["identity"]: e for e in push.existing}
    known = {line.code_name: line.code_id for line in push.lines if line.code_name and line.code_id is not None}
    for line in push.lines:
        gone = line.code_name is not None and line.code_id is None and _int(line.line.code_id) is not None
        if gone:
            yield drift(
                Kind.PRICE_PLAN_CODE_MISSING,
                _int(line.line.code_id),
                f"{_line(line)}: LogiSense has no product code {line.code_name!r} ({line.line.code_id})",
                product_code=line.code_name,
                line_id=line.line.id,
            )
        if plan_id is not None and not gone:
            changes = entry_changes(replace(push, lines=[line], removed=[]), known)  # this line's creates and updates
            yield from _line_drifts(line, changes, by_identity, drift)
    for name, change in entry_changes(replace(push, lines=[]), known):  # only the deletes of removed lines' codes
        held = by_identity.get(change["identity"], {})
        yield drift(
            Kind.PRICE_PLAN_ENTRY_LEFT_BEHIND,
            int(change["identity"]),
            f"entry {change['identity']} (package service {held.get('packageServiceId')}) of product code {name!r}: "
            f"its line was removed; the push deletes it and code {held.get('accountProductCodeId')}",
            product_code=name,
            logisense=_body(held),
        )


def _line_drifts(
    line: LinePlan,
    changes: list[tuple[str, dict[str, Any]]],
    by_identity: dict[Any, dict[str, Any]],
    drift: Callable[..., PricePlanDrift],
) -> Iterator[PricePlanDrift]:
    for name, change in changes:
        service = change.get("packageServiceId")
        if "identity" not in change:
            yield drift(
                Kind.PRICE_PLAN_ENTRY_MISSING,
                None,
                f"{_line(line)}, product code {name!r}: no entry for package service {service}",
                product_code=name,
                line_id=line.line.id,
                salesforce=_body(change),
            )
            continue
        held = by_identity.get(change["identity"], {})
        where = f"{_line(line)}, product code {name!r}, entry {change['identity']}"
        fields: list[str | None] = [f for f in CHARGES if not same_charges(held.get(f), change.get(f))] or [None]
        for field in fields:  # None: entry_changes updates it, yet no one field differs (not expected)
            yield drift(
                Kind.PRICE_PLAN_ENTRY_MISMATCH,
                int(change["identity"]),
                f"{where} (package service {held.get('packageServiceId')})",
                product_code=name,
                line_id=line.line.id,
                field=field,
                salesforce=change.get(field) if field else _body(change),
                logisense=(held.get(field) or []) if field else _body(held),
            )


def _line(line: LinePlan) -> str:
    product = line.line.product_code or line.line.product_name or line.line.frequency_id
    return f"line {line.line.id} ({product}, quantity {line.line.quantity:g})"


def _body(entry: dict[str, Any]) -> dict[str, Any]:
    keep = ("packageServiceId", "packageFrequencyId", "accountProductCodeId", *CHARGES)
    return {k: entry.get(k) for k in keep if entry.get(k) is not None}


async def reconcile_price_plans(
    settings: Settings, rest: SalesforceRest, *, on_progress: Progress | None = None
) -> Report:
    """Plan the push of every pushed opportunity and report what it would write to LogiSense (a `price_plans`
    report); nothing is written anywhere."""
    started = time.monotonic()
    report = Report(scope="price_plans")
    async with LogisenseClient(settings.logisense, retry=RetryPolicy.from_settings(settings.sync.retry)) as client:
        await _read(settings, rest, client, report, on_progress)
    report.seconds = time.monotonic() - started
    log.info("reconcile_price_plans_compared", **report.summary()["summary"])
    return report


async def _read(
    settings: Settings, rest: SalesforceRest, client: LogisenseClient, report: Report, on_progress: Progress | None
) -> None:
    book_name = sf.price_book_name(settings)
    book_id = await asyncio.to_thread(sf.find_price_book, rest, book_name)
    cache, plans = PushCache(), set[int]()
    report.records.update(dict.fromkeys((OPPORTUNITIES, PLANS, ENTRIES), 0))  # named in the summary when none
    after: str | None = None
    while ids := await asyncio.to_thread(pushed_ids, rest, after):
        after = ids[-1]
        found = await asyncio.to_thread(sf.read_opportunities, rest, ids, sf.org_currency(settings))
        for opp in sorted(found.values(), key=lambda o: o.id):
            report.records[OPPORTUNITIES] += 1
            try:
                sf.check_qualifies(opp, book_id, book_name)
                push = await plan_push(client, opp, settings.logisense.link_field, cache)
            except PushRefusedError as exc:
                written = _int(opp.written.get(PLAN_ID))
                report.drifts.append(
                    PricePlanDrift(
                        Kind.PRICE_PLAN_UNPLANNABLE,
                        opp.id,
                        written,
                        detail=f"the push would refuse it: {exc}",
                        account_id=opp.account_id,
                        price_plan_id=written,
                    )
                )
                continue
            if push.plan is not None and int(push.plan["identity"]) not in plans:
                plans.add(int(push.plan["identity"]))
                report.records[PLANS] += 1
                report.records[ENTRIES] += len(push.existing)
            report.drifts.extend(compare(opp, push))
        if on_progress is not None:
            on_progress("salesforce pushed opportunities", report.records[OPPORTUNITIES])
        if len(ids) < sf.CHUNK:
            break
