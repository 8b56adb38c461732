"""`sfls opportunity status`: the write-back fields and, once pushed, the plan's entries for the lines' codes."""

from __future__ import annotations

from typing import Any

from services.opportunity import opportunities as sf
from services.opportunity.plan import ENTRY, PLAN
from shared.errors import PermanentError
from shared.logisense import LogisenseClient
from shared.salesforce import SalesforceRest


async def opportunity_status(rest: SalesforceRest, client: LogisenseClient, opportunity_id: str) -> dict[str, Any]:
    """The opportunity's push state; `price_plan` holds the LogiSense plan and this opportunity's entries."""
    opp = sf.read_opportunity(rest, opportunity_id)
    status: dict[str, Any] = {
        "opportunity": opp.id,
        "name": opp.name,
        "stage": opp.stage,
        "is_won": opp.is_won,
        **opp.written,
        "lines": [
            {
                "id": line.id,
                "product_code": line.product_code,
                "Account_Product_Code_Name__c": line.code_name,
                "LogiSense_Product_Code_Id__c": line.code_id,
            }
            for line in opp.lines
        ],
        "price_plan": None,
    }
    plan_id = opp.written.get("LogiSense_Price_Plan_Id__c")
    if not plan_id:
        return status
    try:
        plan = await client.get(PLAN, plan_id)
    except PermanentError as exc:
        status["price_plan"] = {"identity": plan_id, "error": str(exc)}
        return status
    codes = {int(line.code_id) for line in opp.lines if line.code_id and line.code_id.isdigit()}
    entries = [
        {
            "identity": e["identity"],
            "productCode": e.get("accountProductCodeName"),
            "packageServiceId": e.get("packageServiceId"),
            "packageFrequencyId": e.get("packageFrequencyId"),
            "currency": e.get("packageCurrencyName"),
            "recurringCharges": e.get("recurringCharges") or [],
            "oneTimeCharges": e.get("oneTimeCharges") or [],
        }
        async for e in client.search_paged(ENTRY, [("accountPricePlanId", "eq", plan["identity"])])
        if e.get("accountProductCodeId") in codes
    ]
    status["price_plan"] = {"identity": plan["identity"], "name": plan.get("name"), "entries": entries}
    return status
