"""`sfls opportunity push`: one won opportunity becomes entries of its account's LogiSense price plan.

Order, and what a crash at each step leaves:
1. Read the opportunity, its lines and the LogiSense price book (Salesforce), then plan from LogiSense
   reads only (services/opportunity/plan.py). A refusal stops here: nothing written but the opportunity's
   Failed status and reason. An unchanged hash stops here too: no write anywhere.
2. Write each new product code name to its line, then create the codes. A crash in between leaves a
   name on the line and no code: the retry reuses the name, so no second code is made.
3. Create the account's price plan when it has none (the retry finds it: one plan per account).
4. One `PATCH Account/PricePlan/{id}` with every entry create and update (one LogiSense transaction).
5. Write back the code ids to the lines and Pushed, the time, the plan id and the hash to the opportunity.
   A crash before this leaves LogiSense done and Salesforce behind; the retry finds every entry equal
   and only writes back.
Each push (not a dry run) adds one `opportunity_push` record to the request log and counts its outcome.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.opportunity import opportunities as sf
from services.opportunity.metrics import LOGISENSE_WRITES, PUSHES
from services.opportunity.plan import CODE, PLAN, PushPlan, entry_changes, plan_push
from services.opportunity.refusals import PushRefusedError, Reason
from shared.errors import RejectedError
from shared.events import RequestRecord, RequestStatus
from shared.logisense import LogisenseClient
from shared.salesforce import SalesforceRest
from shared.settings import Settings


@dataclass
class PushResult:
    """What a push did (or, in a dry run, would do)."""

    opportunity_id: str
    outcome: str  # pushed, unchanged, refused
    reason: str = ""
    message: str = ""
    plan_id: int | None = None
    push_hash: str = ""
    calls: list[str] = field(default_factory=list)  # LogiSense and Salesforce writes, in order
    logisense_writes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "opportunity": self.opportunity_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "message": self.message,
            "price_plan_id": self.plan_id,
            "hash": self.push_hash,
            "logisense_writes": self.logisense_writes,
            "calls": self.calls,
        }


def _rejected(error: RejectedError) -> PushRefusedError:
    return PushRefusedError(Reason.LOGISENSE_REJECTED, str(error))


async def _apply(
    client: LogisenseClient,
    rest: SalesforceRest,
    settings: Settings,
    opp: sf.Opportunity,
    push: PushPlan,
    *,
    result: PushResult,
) -> int:
    """Steps 2-5 of the module docstring; returns the plan id and counts LogiSense writes in `result`."""
    account_id = int(push.account["identity"])
    code_ids: dict[str, int] = {}
    try:
        for line in push.lines:
            if line.line.code_name != line.code_name:
                sf.write_code_name(rest, line.line.id, line.code_name)
            if line.code_id is None:
                created = await client.create(CODE, {"name": line.code_name, "accountId": account_id})
                line.code_id = int(created["identity"])
                result.logisense_writes += 1
            code_ids[line.code_name] = line.code_id
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
        plan_id = int(plan["identity"])
        changes = [change for _, change in entry_changes(push, code_ids)]
        if changes:
            await client.patch(PLAN, plan_id, {"packageServicePricePlan": changes})
            result.logisense_writes += 1
    except RejectedError as exc:
        raise _rejected(exc) from None
    for line in push.lines:
        if line.code_id is not None and line.line.code_id != str(line.code_id):
            sf.write_code_id(rest, line.line.id, line.code_id)
    sf.write_pushed(rest, opp.id, plan_id, push.push_hash)
    return plan_id


def describe_plan(push: PushPlan, settings: Settings, opp: sf.Opportunity) -> list[str]:
    """The writes a push would make, one line each (the dry run's output)."""
    calls = []
    for line in push.lines:
        if line.line.code_name != line.code_name:
            calls.append(
                f"Salesforce PATCH OpportunityLineItem/{line.line.id} Account_Product_Code_Name__c={line.code_name}"
            )
        if line.code_id is None:
            calls.append(f"LogiSense POST {CODE} name={line.code_name} accountId={push.account['identity']}")
    if push.plan is None:
        calls.append(
            f"LogiSense POST {PLAN} name={settings.opportunity.price_plan_name} accountId={push.account['identity']} "
            f"start={opp.close_date}"
        )
    known = {line.code_name: line.code_id for line in push.lines if line.code_id is not None}
    changes = entry_changes(push, known)
    creates = sum(1 for _, c in changes if "identity" not in c)
    target = push.plan["identity"] if push.plan else "<new>"
    if changes:
        calls.append(
            f"LogiSense PATCH {PLAN}/{target} packageServicePricePlan: "
            f"{creates} create, {len(changes) - creates} update"
        )
        calls += [
            f"  {name}: {json.dumps({k: v for k, v in change.items() if v is not None}, sort_keys=True)}"
            for name, change in changes
        ]
    calls.append(
        f"Salesforce PATCH Opportunity/{opp.id} LogiSense_Push_Status__c=Pushed LogiSense_Push_Hash__c={push.push_hash}"
    )
    return calls


async def push_opportunity(
    settings: Settings, rest: SalesforceRest, client: LogisenseClient, opportunity_id: str, *, dry_run: bool
) -> PushResult:
    """Push one opportunity (module docstring); a refusal comes back as outcome `refused`, written unless dry."""
    opp = sf.read_opportunity(rest, opportunity_id, sf.org_currency(settings))
    result = PushResult(opp.id, "pushed")
    try:
        book_name = sf.price_book_name(settings)
        sf.check_qualifies(opp, sf.find_price_book(rest, book_name), book_name)
        push = await plan_push(client, opp, settings.logisense.link_field)
        result.push_hash = push.push_hash
        result.plan_id = int(push.plan["identity"]) if push.plan else None
        pushed = opp.written.get("LogiSense_Push_Status__c") == "Pushed"
        if pushed and opp.written.get("LogiSense_Push_Hash__c") == push.push_hash and push.plan is not None:
            result.outcome = "unchanged"
        elif dry_run:
            result.calls = describe_plan(push, settings, opp)
        else:
            result.plan_id = await _apply(client, rest, settings, opp, push, result=result)
    except PushRefusedError as exc:
        result.outcome, result.reason, result.message = "refused", exc.reason.value, str(exc)
        if not dry_run:
            sf.write_refused(rest, opp, exc)
    return result


def request_record(result: PushResult, started_at: datetime, seconds: float) -> RequestRecord:
    """The request-log line of one push (shared/requests.py)."""
    return RequestRecord(
        request_id=uuid.uuid4().hex,
        service="opportunity",
        kind="opportunity_push",
        status=RequestStatus.FAILED if result.outcome == "refused" else RequestStatus.SUCCESS,
        key=result.opportunity_id,
        started_at=started_at,
        duration_seconds=max(0.0, seconds),
        reason=result.message if result.outcome == "refused" else result.outcome,
        counts={"logisense_writes": result.logisense_writes},
    )


def count(result: PushResult) -> None:
    """The push's outcome and its LogiSense writes (0 when unchanged or refused before writing)."""
    PUSHES.labels(outcome=result.outcome, reason=result.reason).inc()
    LOGISENSE_WRITES.observe(result.logisense_writes)
