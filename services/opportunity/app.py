"""The push: one won opportunity becomes entries of its account's LogiSense price plan.

`sfls opportunity push` (services/opportunity/run.py) and the syncer's automatic path
(services/opportunity/automatic.py) both call `push_read`. Order, and what a crash at each step leaves:
1. Read the opportunity, its lines and the LogiSense price book (Salesforce), then plan from LogiSense
   reads only (services/opportunity/plan.py). A refusal stops here: nothing written but the opportunity's
   Failed status and reason. An unchanged hash stops here too: no write anywhere.
2. Name each line that has no product code name (CodeNames) and write the names to the lines in one
   call, then create the codes. A crash in between leaves a name on the line and no code: the retry
   reuses the name, so no second code is made.
3. Create the account's price plan when it has none (the retry finds it: one plan per account).
4. One `PATCH Account/PricePlan/{id}` with every entry create, update, and the deletes of the entries
   of lines removed since the last push (one LogiSense transaction); then those lines' codes are deleted.
5. Write back, in one call, the code ids to the lines and Pushed, the time, the plan id, the hash and
   the codes left to the opportunity. A crash before this leaves LogiSense done and Salesforce behind;
   the retry finds every entry equal and only writes back.
Salesforce calls block (simple-salesforce), so they run in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from services.opportunity import opportunities as sf
from services.opportunity.metrics import LOGISENSE_WRITES, PUSHES
from services.opportunity.plan import (
    CODE,
    PLAN,
    CodeNames,
    PushCache,
    PushPlan,
    delete_codes,
    entry_changes,
    plan_key,
    plan_push,
    push_hash,
)
from services.opportunity.refusals import PushRefusedError, Reason
from shared.errors import PermanentError, RejectedError
from shared.events import RequestRecord, RequestStatus
from shared.logisense import LogisenseClient
from shared.salesforce import SalesforceRest
from shared.settings import Settings

NAME_ATTEMPTS = 3  # names tried per line when another process takes the chosen one first


@dataclass
class PushResult:
    """What a push did (or, in a dry run, would do)."""

    opportunity_id: str
    outcome: str  # pushed, unchanged, refused (the automatic path adds ready, stale, withdrawn, skipped)
    reason: str = ""
    message: str = ""
    plan_id: int | None = None
    push_hash: str = ""
    calls: list[str] = field(default_factory=list)  # LogiSense and Salesforce writes, in order
    logisense_writes: int = 0
    removed_codes: list[int] = field(default_factory=list)
    kept_codes: list[int] = field(default_factory=list)
    error: PermanentError | None = None  # the refusal (outcome refused), for the automatic path's dead letter

    def as_dict(self) -> dict[str, Any]:
        return {
            "opportunity": self.opportunity_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "message": self.message,
            "price_plan_id": self.plan_id,
            "hash": self.push_hash,
            "logisense_writes": self.logisense_writes,
            "removed_codes": self.removed_codes,
            "kept_codes": self.kept_codes,
            "calls": self.calls,
        }


def _rejected(error: RejectedError) -> PushRefusedError:
    return PushRefusedError(Reason.LOGISENSE_REJECTED, str(error))


def kept_reason(kept: list[int]) -> str | None:
    if not kept:
        return None
    return (
        f"product_code_in_use: kept LogiSense product code(s) {', '.join(map(str, kept))} of removed lines "
        "(an account package uses them); remove them in LogiSense when no longer billed"
    )


async def _create_codes(
    client: LogisenseClient, rest: SalesforceRest, push: PushPlan, names: CodeNames, result: PushResult
) -> dict[str, int]:
    """Step 2: name the unnamed lines (names on the lines first), create the missing codes; name -> code id."""
    account_id = int(push.account["identity"])
    for attempt in range(1, NAME_ATTEMPTS + 1):
        fresh = {line.line.id: await names.take(client, line.prefix) for line in push.lines if line.code_name is None}
        for line in push.lines:
            line.code_name = line.code_name or fresh.get(line.line.id)
        await asyncio.to_thread(sf.write_code_names, rest, fresh)
        taken = False
        for line in push.lines:
            assert line.code_name is not None
            if line.code_id is not None:
                continue
            try:
                created = await client.create(CODE, {"name": line.code_name, "accountId": account_id})
            except RejectedError:
                if line.line.id not in fresh or attempt == NAME_ATTEMPTS:
                    raise
                names.forget(line.prefix)  # another process took the name: read the highest again
                line.code_name, taken = None, True
                continue
            line.code_id = int(created["identity"])
            result.logisense_writes += 1
        if not taken:
            break
    return {line.code_name: line.code_id for line in push.lines if line.code_name and line.code_id is not None}


async def _apply(
    client: LogisenseClient,
    rest: SalesforceRest,
    settings: Settings,
    opp: sf.Opportunity,
    push: PushPlan,
    *,
    names: CodeNames,
    result: PushResult,
    cache: PushCache | None,
) -> int:
    """Steps 2-5 of the module docstring; returns the plan id and counts LogiSense writes in `result`."""
    account_id = int(push.account["identity"])
    try:
        code_ids = await _create_codes(client, rest, push, names, result)
        plan = push.plan
        if plan is None:
            body = {
                "name": settings.opportunity.price_plan_name,
                "accountId": account_id,
                "start": f"{opp.close_date}T00:00:00Z" if opp.close_date else None,
                "isConsolidatedByInvoicer": False,
            }
            plan = await client.create(PLAN, body)
            result.logisense_writes += 1
            if cache is not None:
                cache.remember(plan_key(push.account), [plan])  # the account's next opportunity finds it
        plan_id = int(plan["identity"])
        changes = [change for _, change in entry_changes(push, code_ids)]
        if changes:
            await client.patch(PLAN, plan_id, {"packageServicePricePlan": changes})
            result.logisense_writes += 1
        result.logisense_writes += await delete_codes(client, push.removed, push.kept)
    except RejectedError as exc:
        raise _rejected(exc) from None
    push.push_hash = push_hash(push)  # names chosen in step 2 are part of it
    result.push_hash = push.push_hash
    result.removed_codes = [c for c in push.removed if c not in push.kept]
    result.kept_codes = list(push.kept)
    line_codes = {line.line.id: line.code_id for line in push.lines if line.code_id is not None}
    await asyncio.to_thread(
        sf.write_pushed,
        rest,
        opp.id,
        plan_id,
        push.push_hash,
        codes=line_codes,
        kept=push.kept,
        reason=kept_reason(push.kept),
    )
    return plan_id


async def describe_plan(
    client: LogisenseClient, push: PushPlan, settings: Settings, opp: sf.Opportunity, names: CodeNames
) -> list[str]:
    """The writes a push would make, one line each (the dry run's output)."""
    calls = []
    for line in push.lines:
        name = line.code_name
        if name is None:
            name = await names.peek(client, line.prefix)
            calls.append(f"Salesforce PATCH OpportunityLineItem/{line.line.id} Account_Product_Code_Name__c={name}")
        if line.code_id is None:
            calls.append(f"LogiSense POST {CODE} name={name} accountId={push.account['identity']}")
    if push.plan is None:
        calls.append(
            f"LogiSense POST {PLAN} name={settings.opportunity.price_plan_name} accountId={push.account['identity']} "
            f"start={opp.close_date}"
        )
    known = {line.code_name: line.code_id for line in push.lines if line.code_name and line.code_id is not None}
    changes = entry_changes(push, known)
    deletes = sum(1 for _, c in changes if c.get("delete"))
    creates = sum(1 for _, c in changes if "identity" not in c)
    target = push.plan["identity"] if push.plan else "<new>"
    if changes:
        calls.append(
            f"LogiSense PATCH {PLAN}/{target} packageServicePricePlan: "
            f"{creates} create, {len(changes) - creates - deletes} update, {deletes} delete"
        )
        calls += [
            f"  {name}: {json.dumps({k: v for k, v in change.items() if v is not None}, sort_keys=True)}"
            for name, change in changes
        ]
    calls += [f"LogiSense DELETE {CODE}/{code} (its line was removed)" for code in push.removed]
    calls += [f"keep {CODE}/{code}: an account package uses it" for code in push.kept]
    calls.append(f"Salesforce PATCH Opportunity/{opp.id} LogiSense_Push_Status__c=Pushed")
    return calls


def is_unchanged(opp: sf.Opportunity, push: PushPlan) -> bool:
    """Pushed before with the same hash, into a plan that still exists: nothing to write."""
    return (
        opp.status == "Pushed"
        and opp.written.get("LogiSense_Push_Hash__c") == push.push_hash
        and push.plan is not None
        and not push.removed
    )


async def push_read(
    settings: Settings,
    rest: SalesforceRest,
    client: LogisenseClient,
    opp: sf.Opportunity,
    book_id: str | None,
    *,
    dry_run: bool,
    names: CodeNames,
    cache: PushCache | None = None,
) -> PushResult:
    """Push an opportunity already read (module docstring); a refusal comes back as outcome `refused`,
    written to the opportunity unless dry."""
    result = PushResult(opp.id, "pushed")
    try:
        sf.check_qualifies(opp, book_id, sf.price_book_name(settings))
        push = await plan_push(client, opp, settings.logisense.link_field, cache)
        result.push_hash = push.push_hash
        result.plan_id = int(push.plan["identity"]) if push.plan else None
        if is_unchanged(opp, push):
            result.outcome = "unchanged"
        elif dry_run:
            result.calls = await describe_plan(client, push, settings, opp, names)
        else:
            result.plan_id = await _apply(client, rest, settings, opp, push, names=names, result=result, cache=cache)
    except PushRefusedError as exc:
        result.outcome, result.reason, result.message, result.error = "refused", exc.reason.value, str(exc), exc
        if not dry_run:
            await asyncio.to_thread(sf.write_refused, rest, opp, exc)
    return result


async def push_opportunity(
    settings: Settings, rest: SalesforceRest, client: LogisenseClient, opportunity_id: str, *, dry_run: bool
) -> PushResult:
    """`sfls opportunity push`: read the one opportunity and the book, then `push_read`."""
    opp = await asyncio.to_thread(sf.read_opportunity, rest, opportunity_id, sf.org_currency(settings))
    book_id = await asyncio.to_thread(sf.find_price_book, rest, sf.price_book_name(settings))
    return await push_read(settings, rest, client, opp, book_id, dry_run=dry_run, names=CodeNames())


def request_record(
    result: PushResult, started_at: datetime, seconds: float, *, service: Literal["opportunity", "syncer"]
) -> RequestRecord:
    """The request-log line of one push (shared/requests.py)."""
    failed = result.outcome in ("refused", "failed")
    return RequestRecord(
        request_id=uuid.uuid4().hex,
        service=service,
        kind="opportunity_push",
        status=RequestStatus.FAILED if failed else RequestStatus.SUCCESS,
        key=result.opportunity_id,
        started_at=started_at,
        duration_seconds=max(0.0, seconds),
        reason=result.message[:2000] if failed else result.outcome,
        counts={"logisense_writes": result.logisense_writes},
    )


def count(result: PushResult, *, trigger: str) -> None:
    """The push's outcome and its LogiSense writes (0 when unchanged or refused before writing)."""
    PUSHES.labels(outcome=result.outcome, reason=result.reason, trigger=trigger).inc()
    if result.outcome in ("pushed", "unchanged", "refused"):
        LOGISENSE_WRITES.observe(result.logisense_writes)
