"""The LogiSense side of a push, planned before anything is written: account, catalogue checks, codes, entries.

`plan_push` only reads LogiSense. It finds the account (by the link field holding the Salesforce
AccountId), checks its currency, each line's package (active, sold in that currency), keeps each line's
product code name (a line without one gets `<ProductCode>-<n>` when the push writes: CodeNames), and
prices one entry per package service: the catalogue's pricing rules in the account's currency
(recurring per service status, one-time), each amount times the line's UnitPrice / ListPrice, rounded
to 2 decimals. Transition charges are not priced.
Entries are matched to the plan's existing ones by (product code, package service): equal charges are
left alone, others updated, missing ones created, so a push never duplicates an entry. The codes the last
push left (`LogiSense_Product_Codes__c`) that no line holds any more are removed with their entries,
unless an account package uses them (then they are kept and named in the push's reason).
`PushCache` holds what one batch (or one command) reads of the catalogue, so a batch of opportunities
reads each package frequency once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from services.opportunity.opportunities import Line, Opportunity
from services.opportunity.refusals import PushRefusedError, Reason
from shared.errors import PermanentError
from shared.logisense import LogisenseClient
from shared.logisense_wire import package_not_on_sale

T = TypeVar("T")
ENTRY = "Package/Service/PricePlan"
PACKAGE = "Account/Package"
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
    code_name: str | None  # None: a name is chosen when the push writes (CodeNames)
    code_id: int | None  # None: the code is created by the push
    entries: list[dict[str, Any]]  # desired entries (without accountProductCodeId)

    @property
    def prefix(self) -> str:
        return self.line.product_code or str(self.line.frequency_id)


@dataclass
class PushPlan:
    account: dict[str, Any]
    currency: str
    plan: dict[str, Any] | None  # the account's price plan, None: created by the push
    lines: list[LinePlan]
    existing: list[dict[str, Any]] = field(default_factory=list)  # the plan's entries now
    push_hash: str = ""
    removed: list[int] = field(default_factory=list)  # codes of lines gone since the last push: deleted
    kept: list[int] = field(default_factory=list)  # codes of lines gone that an account package uses: kept


@dataclass
class PushCache:
    """What one batch (or one command) has read of LogiSense: currencies, catalogues, accounts and their plans.

    Each read is made once per key, also when concurrent pushes (of several accounts) ask at the same time:
    the first asks, the others wait for its answer (or its error)."""

    _reads: dict[tuple[Any, ...], asyncio.Future[Any]] = field(default_factory=dict)

    async def once(self, key: tuple[Any, ...], read: Callable[[], Awaitable[T]]) -> T:
        found = self._reads.get(key)
        if found is None:
            found = self._reads[key] = asyncio.ensure_future(read())
        result: T = await asyncio.shield(found)
        return result

    def remember(self, key: tuple[Any, ...], value: Any) -> None:
        """What a push wrote (the plan it created) replaces what was read."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(value)
        self._reads[key] = done


class CodeNames:
    """Product code names `<prefix>-<n>`, n one above the highest LogiSense has for the prefix (codes are unique
    per owner) or this process handed out: one LogiSense search per prefix, then counted here, so concurrent
    pushes in one process never pick the same name. Another process may: its create is refused, `forget`
    drops the count and the next name is read afresh."""

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def _load(self, client: LogisenseClient, prefix: str) -> int:
        key = prefix.casefold()
        if key not in self._highest:
            pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)$", re.IGNORECASE)
            names = [
                str(c.get("name", "")) async for c in client.search_paged(CODE, [("name", "startsWith", f"{prefix}-")])
            ]
            self._highest[key] = max((int(m.group(1)) for n in names if (m := pattern.match(n))), default=0)
        return self._highest[key]

    async def peek(self, client: LogisenseClient, prefix: str) -> str:
        """The name `take` would give now (for a dry run)."""
        async with self._lock:
            return f"{prefix}-{await self._load(client, prefix) + 1}"

    async def take(self, client: LogisenseClient, prefix: str) -> str:
        async with self._lock:
            n = await self._load(client, prefix) + 1
            self._highest[prefix.casefold()] = n
            return f"{prefix}-{n}"

    def forget(self, prefix: str) -> None:
        self._highest.pop(prefix.casefold(), None)


def is_chosen_name(name: str, prefix: str) -> bool:
    """True for a name of the form CodeNames gives (`<prefix>-<n>`)."""
    return re.fullmatch(rf"{re.escape(prefix)}-\d+", name, re.IGNORECASE) is not None


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


async def _catalogue(
    client: LogisenseClient, line: Line, currency_id: int, currency: str, cache: PushCache
) -> Catalogue:
    assert line.frequency_id is not None
    return await cache.once(
        ("catalogue", line.frequency_id, currency_id), lambda: _read_catalogue(client, line, currency_id, currency)
    )


async def _read_catalogue(client: LogisenseClient, line: Line, currency_id: int, currency: str) -> Catalogue:
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


async def _code(client: LogisenseClient, line: LinePlan, account_id: int) -> None:
    """Find the line's named code in LogiSense (code_id); a name of another account is a refusal, unless the
    push chose it and never created it (another process took it first): then the line gets a new name."""
    assert line.code_name is not None
    found = await client.search(CODE, [("name", "eq", line.code_name)])
    for code in found:
        if code.get("accountId") != account_id:
            if line.line.code_id is None and is_chosen_name(line.code_name, line.prefix):
                line.code_name = None
                return
            raise PushRefusedError(
                Reason.PRODUCT_CODE_CONFLICT,
                f"line {line.line.id}: product code {line.code_name!r} belongs to LogiSense account "
                f"{code.get('accountId')}",
            )
    line.code_id = int(found[0]["identity"]) if found else None


async def find_account(client: LogisenseClient, link_field: str, account_id: str) -> dict[str, Any]:
    found = await client.search("Account", [(link_field, "eq", account_id)])
    if not found:
        raise PushRefusedError(Reason.ACCOUNT_NOT_SYNCED, f"no LogiSense account has {link_field} = {account_id}")
    return found[0]


async def plan_push(
    client: LogisenseClient, opportunity: Opportunity, link_field: str, cache: PushCache | None = None
) -> PushPlan:
    """Everything the push will write, from reads only (a refusal raises PushRefusedError)."""
    cache = cache or PushCache()
    account = await cache.once(
        ("account", opportunity.account_id[:15]), lambda: find_account(client, link_field, opportunity.account_id)
    )
    currencies = await cache.once(("currencies",), lambda: _currencies(client))
    currency_id = int(account.get("currencyId") or 0)
    currency = currencies.get(currency_id, "")
    if opportunity.currency is not None and opportunity.currency != currency:
        raise PushRefusedError(
            Reason.CURRENCY_MISMATCH,
            f"{opportunity.id} is in {opportunity.currency}, "
            f"LogiSense account {account['identity']} bills in {currency}",
        )
    plans = await cache.once(plan_key(account), lambda: client.search(PLAN, [("accountId", "eq", account["identity"])]))
    lines: list[LinePlan] = []
    for line in opportunity.lines:
        catalogue = await _catalogue(client, line, currency_id, currency, cache)
        entries = [
            {
                "packageServiceId": service["identity"],
                "packageFrequencyId": catalogue.frequency_id,
                "packageCurrencyId": catalogue.package_currency_id,
                **charges(catalogue, int(service["serviceId"]), line.factor),
            }
            for service in catalogue.services
        ]
        planned = LinePlan(line, line.code_name, None, entries)
        if planned.code_name is not None:
            await _code(client, planned, int(account["identity"]))
        lines.append(planned)
    existing: list[dict[str, Any]] = []
    if plans:
        existing = [e async for e in client.search_paged(ENTRY, [("accountPricePlanId", "eq", plans[0]["identity"])])]
    push = PushPlan(account, currency, plans[0] if plans else None, lines, existing)
    held = {p.code_id for p in lines if p.code_id is not None}
    push.removed, push.kept = await removals(client, [code for code in opportunity.pushed_codes if code not in held])
    push.push_hash = push_hash(push)
    return push


async def delete_codes(client: LogisenseClient, codes: Sequence[int], kept: list[int]) -> int:
    """Delete the codes; one LogiSense refuses as in use (409) is added to `kept`, one already gone (404: a
    crashed push deleted it) is passed over. Returns the deletes made."""
    made = 0
    for code in codes:
        try:
            await client.delete(CODE, code)
            made += 1
        except PermanentError as exc:
            if exc.status == 409:  # used by something we cannot see: keep it, say so
                kept.append(code)
            elif exc.status != 404:
                raise
    return made


def plan_key(account: dict[str, Any]) -> tuple[Any, ...]:
    """The PushCache key of an account's price plans (a list: one, or none yet)."""
    return ("plans", account["identity"])


async def _currencies(client: LogisenseClient) -> dict[int, str]:
    return {c["identity"]: str(c["code"]) for c in await client.list("Currency")}


async def removals(client: LogisenseClient, codes: Sequence[int]) -> tuple[list[int], list[int]]:
    """(to remove, to keep): codes an account package uses are kept."""
    removed: list[int] = []
    kept: list[int] = []
    for code in codes:
        used = await client.search(PACKAGE, [("accountProductCodeId", "eq", code)])
        (kept if used else removed).append(code)
    return removed, kept


def push_hash(push: PushPlan) -> str:
    """A hash of the priced lines: line, product code, quantity and every entry's charges."""
    priced = [
        [p.line.id, p.code_name, p.line.quantity, push.currency, sorted(p.entries, key=lambda e: e["packageServiceId"])]
        for p in push.lines
    ]
    return hashlib.sha256(json.dumps(priced, sort_keys=True, default=str).encode()).hexdigest()[:40]


def entry_changes(push: PushPlan, code_ids: dict[str, int]) -> list[tuple[str, dict[str, Any]]]:
    """(code name, child) of the `packageServicePricePlan` children of one PATCH: creates, updates, and the
    deletes of the entries of removed codes."""
    by_key = {(e.get("accountProductCodeId"), e.get("packageServiceId")): e for e in push.existing}
    changes: list[tuple[str, dict[str, Any]]] = [
        (
            str(e.get("accountProductCodeName") or e.get("accountProductCodeId")),
            {"identity": e["identity"], "delete": True},
        )
        for e in push.existing
        if e.get("accountProductCodeId") in push.removed
    ]
    for line in push.lines:
        code_id = code_ids.get(line.code_name or "")
        for entry in line.entries:
            current = by_key.get((code_id, entry["packageServiceId"])) if code_id is not None else None
            wanted = {"recurringCharges": entry["recurringCharges"], "oneTimeCharges": entry["oneTimeCharges"]}
            name = line.code_name or f"{line.prefix}-<n>"
            if current is None:
                changes.append((name, {**entry, "accountProductCodeId": code_id}))
            elif any(_normal(current.get(k)) != _normal(v) for k, v in wanted.items()):
                changes.append((name, {"identity": current["identity"], **wanted}))
    return changes


def same_charges(held: Any, wanted: Any) -> bool:
    """True when two charge lists are equal as `entry_changes` compares them (amount and service status, any order)."""
    return _normal(held) == _normal(wanted)


def _normal(rows: Any) -> list[tuple[float, Any]]:
    return sorted((float(r.get("amount") or 0), r.get("serviceStatusTypeId")) for r in rows or [])
