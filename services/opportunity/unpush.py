"""`sfls opportunity unpush`: remove what a push made for one opportunity, where nothing bills with it.

The codes are the ones the last push left (`LogiSense_Product_Codes__c`) and the ones on the lines. A code
an account package uses is kept, with its entries (billing may use them); every other code loses its
entries (one `PATCH Account/PricePlan/{id}`) and is deleted. The account's price plan stays: other
opportunities feed it. The opportunity becomes `Withdrawn`, its lines lose the removed codes, so a later
push starts afresh. Nothing checks the stage: a won opportunity may be unpushed too (with the automatic
path on, its next change pushes it again).
"""

from __future__ import annotations

import asyncio

from services.opportunity import opportunities as sf
from services.opportunity.app import PushResult, kept_reason
from services.opportunity.plan import CODE, ENTRY, PLAN, delete_codes, removals
from shared.logisense import LogisenseClient
from shared.salesforce import SalesforceRest
from shared.settings import Settings


async def unpush_opportunity(
    settings: Settings, rest: SalesforceRest, client: LogisenseClient, opportunity_id: str, *, dry_run: bool
) -> PushResult:
    """Remove the opportunity's entries and codes that no account package uses (module docstring)."""
    opp = await asyncio.to_thread(sf.read_opportunity, rest, opportunity_id, sf.org_currency(settings))
    on_lines = [int(line.code_id) for line in opp.lines if line.code_id and line.code_id.isdigit()]
    codes = sorted({*opp.pushed_codes, *on_lines})
    result = PushResult(opp.id, "unpushed")
    plan_id = opp.written.get("LogiSense_Price_Plan_Id__c")
    plan = result.plan_id = int(plan_id) if plan_id and str(plan_id).isdigit() else None
    removed, kept = await removals(client, codes)
    entries = []
    if plan is not None and removed:
        entries = [
            e
            async for e in client.search_paged(ENTRY, [("accountPricePlanId", "eq", plan)])
            if e.get("accountProductCodeId") in removed
        ]
    if dry_run:
        if entries:
            result.calls.append(f"LogiSense PATCH {PLAN}/{plan} packageServicePricePlan: {len(entries)} delete")
        result.calls += [f"LogiSense DELETE {CODE}/{code}" for code in removed]
        result.calls += [f"keep {CODE}/{code}: an account package uses it" for code in kept]
        result.calls.append(f"Salesforce PATCH Opportunity/{opp.id} LogiSense_Push_Status__c=Withdrawn")
        result.removed_codes, result.kept_codes = removed, kept
        return result
    if entries and plan is not None:
        deletes = [{"identity": e["identity"], "delete": True} for e in entries]
        await client.patch(PLAN, plan, {"packageServicePricePlan": deletes})
        result.logisense_writes += 1
    result.logisense_writes += await delete_codes(client, removed, kept)
    result.removed_codes = [c for c in removed if c not in kept]
    result.kept_codes = kept
    reason = (
        f"unpushed: {len(entries)} entries and {len(result.removed_codes)} product code(s) removed from LogiSense"
        + (f"; {kept_reason(kept)}" if kept else "")
    )
    result.message = reason
    await asyncio.to_thread(sf.write_unpushed, rest, opp, result.removed_codes, kept, reason)
    return result
