"""The LogiSense side of a push, planned before anything is written: account, catalogue checks, codes, entries.

`plan_push` only reads LogiSense. It finds the account (by the link field holding the Salesforce
AccountId), checks its currency, each line's package (active, sold in that currency), picks each line's
product code name (the one on the line, else `<ProductCode>-<n>` with n one above the highest suffix
LogiSense has for that prefix), and prices one entry per package service: the catalogue's pricing rules
in the account's currency (recurring per service status, one-time), each amount times the line's
UnitPrice / ListPrice, rounded to 2 decimals. Transition charges are not priced.
Entries are matched to the plan's existing ones by (product code, package service): equal charges are
left alone, others updated, missing ones created, so a push never duplicates an entry.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.opportunity.opportunities import Line, Opportunity
from services.opportunity.refusals import PushRefusedError, Reason
from shared.errors import PermanentError
from shared.logisense import LogisenseClient
from shared.logisense_wire import package_not_on_sale

ENTRY = "Package/Service/PricePlan"
CODE = "Account/ProductCode"
PLAN = "Account/PricePlan"


@dataclass(frozen=True)
class Catalogue:
    """What one package frequency sells in one currency."""

    frequency_id: int
    package_id: int
    package_currency_id: int
    services: tuple[dict[str, Any], ...]  # Package/Service rows
    rules: tuple[dict[str, Any], ...]  # PricingRule rows of this frequency and currency


@dataclass
class LinePlan:
    line: Line
    code_name: str
    code_id: int | None  # None: the code is created by the push
    entries: list[dict[str, Any]]  # desired entries (without accountProductCodeId)


@dataclass
class PushPlan:
    account: dict[str, Any]
    currency: str
    plan: dict[str, Any] | None  # the account's price plan, None: created by the push
    lines: list[LinePlan]
    existing: list[dict[str, Any]] = field(default_factory=list)  # the plan's entries now
    push_hash: str = ""


def charges(catalogue: Catalogue, service_id: int, factor: float) -> dict[str, list[dict[str, Any]]]:
    """The entry's charges: the catalogue's rules for the service times `factor`, 2 decimals."""
    recurring = [
        {"amount": round(float(r["amount"]) * factor, 2)}
        | ({"serviceStatusTypeId": r["serviceStatusTypeId"]} if r.get("serviceStatusTypeId") is not None else {})
        for r in catalogue.rules
        if r.get("serviceId") == service_id and r.get("chargeType") == "recurring"
    ]
    one_time = [
        {"amount": round(float(r["amount"]) * factor, 2)}
        for r in catalogue.rules
        if r.get("serviceId") == service_id and r.get("chargeType") == "oneTime"
    ]
    return {"recurringCharges": recurring, "oneTimeCharges": one_time}


async def _catalogue(client: LogisenseClient, line: Line, currency_id: int, currency: str) -> Catalogue:
    assert line.frequency_id is not None
    try:
        frequency = await client.get("Package/Frequency", line.frequency_id)
    except PermanentError as exc:
        if exc.status != 404:
            raise
        raise PushRefusedError(
            Reason.PRODUCT_NOT_FROM_LOGISENSE, f"line {line.id}: no LogiSense package frequency {line.frequency_id}"
        ) from None
    package = await client.get("Package", frequency["packageId"])
    now = datetime.now(UTC)
    why = "is inactive" if not frequency.get("isActive", True) else package_not_on_sale(package, now)
    if why:
        raise PushRefusedError(
            Reason.PACKAGE_NOT_ACTIVE, f"line {line.id}: package {package.get('name')!r} ({package['identity']}) {why}"
        )
    package_currencies = await client.search("Package/Currency", [("packageId", "eq", package["identity"])])
    matching = [c for c in package_currencies if c.get("currencyId") == currency_id]
    if not matching:
        raise PushRefusedError(
            Reason.PACKAGE_CURRENCY_MISSING,
            f"line {line.id}: package {package.get('name')!r} ({package['identity']}) is not sold in {currency}",
        )
    services = await client.search("Package/Service", [("packageId", "eq", package["identity"])])
    rules = await client.search(
        "PricingRule", [("packageFrequencyId", "eq", line.frequency_id), ("currencyId", "eq", currency_id)], top=1000
    )
    return Catalogue(
        line.frequency_id, int(package["identity"]), int(matching[0]["identity"]), tuple(services), tuple(rules)
    )


async def _next_suffix(client: LogisenseClient, prefix: str, taken: set[str]) -> int:
    """1 + the highest n of `<prefix>-<n>` among LogiSense's product codes and the names this push already chose."""
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)$", re.IGNORECASE)
    names = [c.get("name", "") async for c in client.search_paged(CODE, [("name", "startsWith", f"{prefix}-")])]
    numbers = [int(m.group(1)) for name in [*names, *taken] if (m := pattern.match(str(name)))]
    return max(numbers, default=0) + 1


async def _code(client: LogisenseClient, name: str, account_id: int, line: Line) -> int | None:
    """The account's code of that name (None: LogiSense has none); a refusal when another account has it."""
    found = await client.search(CODE, [("name", "eq", name)])
    for code in found:
        if code.get("accountId") != account_id:
            raise PushRefusedError(
                Reason.PRODUCT_CODE_CONFLICT,
                f"line {line.id}: product code {name!r} belongs to LogiSense account {code.get('accountId')}",
            )
    return int(found[0]["identity"]) if found else None


async def find_account(client: LogisenseClient, link_field: str, account_id: str) -> dict[str, Any]:
    found = await client.search("Account", [(link_field, "eq", account_id)])
    if not found:
        raise PushRefusedError(Reason.ACCOUNT_NOT_SYNCED, f"no LogiSense account has {link_field} = {account_id}")
    return found[0]


async def plan_push(client: LogisenseClient, opportunity: Opportunity, link_field: str) -> PushPlan:
    """Everything the push will write, from reads only (a refusal raises PushRefusedError)."""
    account = await find_account(client, link_field, opportunity.account_id)
    codes = {c["identity"]: str(c["code"]) for c in await client.list("Currency")}
    currency_id = int(account.get("currencyId") or 0)
    currency = codes.get(currency_id, "")
    if opportunity.currency is not None and opportunity.currency != currency:
        raise PushRefusedError(
            Reason.CURRENCY_MISMATCH,
            f"{opportunity.id} is in {opportunity.currency}, "
            f"LogiSense account {account['identity']} bills in {currency}",
        )
    plans = await client.search(PLAN, [("accountId", "eq", account["identity"])])
    catalogues: dict[int, Catalogue] = {}
    chosen: set[str] = set()
    lines: list[LinePlan] = []
    for line in opportunity.lines:
        assert line.frequency_id is not None
        if line.frequency_id not in catalogues:
            catalogues[line.frequency_id] = await _catalogue(client, line, currency_id, currency)
        catalogue = catalogues[line.frequency_id]
        name = line.code_name
        if name is None:
            prefix = line.product_code or str(line.frequency_id)
            name = f"{prefix}-{await _next_suffix(client, prefix, chosen)}"
        chosen.add(name)
        code_id = await _code(client, name, int(account["identity"]), line)
        entries = [
            {
                "packageServiceId": service["identity"],
                "packageFrequencyId": catalogue.frequency_id,
                "packageCurrencyId": catalogue.package_currency_id,
                **charges(catalogue, int(service["serviceId"]), line.factor),
            }
            for service in catalogue.services
        ]
        lines.append(LinePlan(line, name, code_id, entries))
    existing: list[dict[str, Any]] = []
    if plans:
        existing = [e async for e in client.search_paged(ENTRY, [("accountPricePlanId", "eq", plans[0]["identity"])])]
    push = PushPlan(account, currency, plans[0] if plans else None, lines, existing)
    push.push_hash = push_hash(push)
    return push


def push_hash(push: PushPlan) -> str:
    """A hash of the priced lines: line, product code, quantity and every entry's charges."""
    priced = [
        [p.line.id, p.code_name, p.line.quantity, push.currency, sorted(p.entries, key=lambda e: e["packageServiceId"])]
        for p in push.lines
    ]
    return hashlib.sha256(json.dumps(priced, sort_keys=True, default=str).encode()).hexdigest()[:40]


def entry_changes(push: PushPlan, code_ids: dict[str, int]) -> list[tuple[str, dict[str, Any]]]:
    """(code name, child) of the `packageServicePricePlan` children of one PATCH: creates and updates only."""
    by_key = {(e.get("accountProductCodeId"), e.get("packageServiceId")): e for e in push.existing}
    changes: list[tuple[str, dict[str, Any]]] = []
    for line in push.lines:
        code_id = code_ids.get(line.code_name)
        for entry in line.entries:
            current = by_key.get((code_id, entry["packageServiceId"])) if code_id is not None else None
            wanted = {"recurringCharges": entry["recurringCharges"], "oneTimeCharges": entry["oneTimeCharges"]}
            if current is None:
                changes.append((line.code_name, {**entry, "accountProductCodeId": code_id}))
            elif any(_normal(current.get(k)) != _normal(v) for k, v in wanted.items()):
                changes.append((line.code_name, {"identity": current["identity"], **wanted}))
    return changes


def _normal(rows: Any) -> list[tuple[float, Any]]:
    return sorted((float(r.get("amount") or 0), r.get("serviceStatusTypeId")) for r in rows or [])
