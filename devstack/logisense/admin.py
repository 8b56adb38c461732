"""The admin API under `/__admin/` (no token; JSON in and out); the README's local-stack section lists it.

  GET    /__admin/health                     {"status": "ok", "seed": 1, "catalogue_size": 1000}
  POST   /__admin/reset                      {"seed": 1, "catalogue_size": 1000, "accounts": 0,
                                              "invoices_per_account": 3} -> fresh data, no faults,
                                              no rate limit, zero counters, start-up configuration
  POST   /__admin/faults                     one rule (see faults.py), e.g. {"resource": "Account",
                                              "method": "POST", "status": 503, "count": 3},
                                              {"probability": 0.3}, {"latency_ms": 2000}, {"hang": true},
                                              {"status": 429, "retry_after": 2} -> the rule with its "id"
  GET    /__admin/faults                     {"faults": [rule, ...]} (with "fired" counts)
  DELETE /__admin/faults[/{id}]              drop all rules (releasing hanging requests) or one
  GET    /__admin/counters                   {"total": N,
                                              "requests": [{"resource": "Account", "method": "POST",
                                                "operation": "create", "status": 201, "count": 3}, ...],
                                              "resources": {"Account": {"create": {"201": 3}}}}
  DELETE /__admin/counters                   zero them
  POST   /__admin/rate-limit                 {"requests_per_second": 20, "retry_after": 1} (retry_after
                                              optional, default 1; null or 0 turns it off; see
                                              ratelimit.py) -> the GET answer, counters zeroed
  GET    /__admin/rate-limit                 {"requests_per_second", "retry_after", "accepted",
                                              "refused", "peak"} (peak: most accepted in any 1 s)
  DELETE /__admin/rate-limit/counters        zero accepted, refused and peak; the limit stays
  GET    /__admin/accounts                   {"totalCount": N, "items": [account + "contacts":
                                              [contact + "contactPoints": [...]]]}
  GET    /__admin/price_plans                [{"identity", "name", "accountId", "sfdcid" (the account's
                                              custom field or null), "entries": [{"identity",
                                              "packageFrequencyId", "packageServiceId", "serviceId",
                                              "productCode" (name or null), "productCodeId",
                                              "currencyCode", "recurringAmount", "oneTimeAmount"}]}]
                                              every account price plan; amounts sum the charge rows
  POST   /__admin/tokens/expire              every issued token stops working -> {"expired": N}
  POST   /__admin/clock                      {"advance_seconds": 1800} moves the emulator clock
  GET/POST /__admin/config                   runtime settings (token_ttl_seconds, ...) until reset
  GET/POST /__admin/custom-fields            {"resource": "Account", "column": "region"} adds one
  POST   /__admin/bill-run                   {"account_ids": [..] (default: all), "count": 1}
                                              -> {"invoices": [ids]}
Counters use the route template as resource (`Contact/Point`, `Access/Login` for tokens, and
`(unmatched)` for unknown routes); catalogue items are changed or deleted through the REST API.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devstack.logisense import search
from devstack.logisense.faults import FaultSpecError
from devstack.logisense.resources import COLUMN_NAME, RESOURCES
from devstack.logisense.seed import generate_invoices

if TYPE_CHECKING:
    from devstack.logisense.app import Emulator

# Settings `POST /__admin/config` may change until the next reset (fields of EmulatorConfig).
RUNTIME_KEYS = frozenset(
    {
        "token_ttl_seconds",
        "refresh_token_ttl_seconds",
        "accept_names_on_write",
        "reject_unknown_fields",
        "paged_default_size",
        "top_default",
        "top_max",
        "hang_seconds",
        "retry_after_default",
    }
)
RESET_KEYS = frozenset({"seed", "catalogue_size", "accounts", "invoices_per_account"})


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(reason=f"the body is not valid JSON: {exc}") from None


class AdminApi:
    """The admin handlers, bound to one emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def health(self, _request: web.Request) -> web.Response:
        config = self.emulator.config
        return web.json_response({"status": "ok", "seed": config.seed, "catalogue_size": config.catalogue_size})

    async def reset(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict) or set(body) - RESET_KEYS:
            return _bad(f"reset takes an object with {sorted(RESET_KEYS)}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in body.values()):
            return _bad("reset values are whole numbers >= 0")
        self.emulator.reset(**body)
        return await self.health(request)

    async def add_fault(self, request: web.Request) -> web.Response:
        try:
            fault = self.emulator.faults.add(await _body(request))
        except FaultSpecError as exc:
            return _bad(str(exc))
        return web.json_response(fault.to_json(), status=201)

    async def list_faults(self, _request: web.Request) -> web.Response:
        return web.json_response({"faults": [rule.to_json() for rule in self.emulator.faults.rules]})

    async def clear_faults(self, _request: web.Request) -> web.Response:
        self.emulator.faults.clear()
        return web.json_response({"faults": []})

    async def remove_fault(self, request: web.Request) -> web.Response:
        if not self.emulator.faults.remove(int(request.match_info["id"])):
            return web.json_response({"error": "no such fault"}, status=404)
        return web.json_response({"faults": [rule.to_json() for rule in self.emulator.faults.rules]})

    async def counters(self, _request: web.Request) -> web.Response:
        return web.json_response(self.emulator.counters.to_json())

    async def clear_counters(self, _request: web.Request) -> web.Response:
        self.emulator.counters.clear()
        return web.json_response(self.emulator.counters.to_json())

    async def set_rate_limit(self, request: web.Request) -> web.Response:
        try:
            self.emulator.rate_limit.configure(await _body(request))
        except FaultSpecError as exc:
            return _bad(str(exc))
        return await self.rate_limit(request)

    async def rate_limit(self, _request: web.Request) -> web.Response:
        return web.json_response(self.emulator.rate_limit.to_json())

    async def clear_rate_limit_counters(self, request: web.Request) -> web.Response:
        self.emulator.rate_limit.clear_counters()
        return await self.rate_limit(request)

    async def accounts(self, _request: web.Request) -> web.Response:
        return web.json_response(account_tree(self.emulator))

    async def price_plans(self, _request: web.Request) -> web.Response:
        return web.json_response(price_plan_list(self.emulator))

    async def expire_tokens(self, _request: web.Request) -> web.Response:
        return web.json_response({"expired": self.emulator.auth.expire_all()})

    async def clock(self, request: web.Request) -> web.Response:
        body = await _body(request)
        seconds = body.get("advance_seconds") if isinstance(body, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            return _bad('send {"advance_seconds": N}')
        self.emulator.store.clock_offset += float(seconds)
        return web.json_response(
            {"now": self.emulator.store.timestamp(), "offset_seconds": self.emulator.store.clock_offset}
        )

    async def get_config(self, _request: web.Request) -> web.Response:
        return web.json_response({key: getattr(self.emulator.config, key) for key in sorted(RUNTIME_KEYS)})

    async def set_config(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict) or set(body) - RUNTIME_KEYS:
            return _bad(f"config takes an object with some of {sorted(RUNTIME_KEYS)}")
        self.emulator.configure(**body)
        return await self.get_config(request)

    async def get_custom_fields(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {route: self.emulator.store.custom_fields(route) for route, spec in RESOURCES.items() if spec.extensible}
        )

    async def add_custom_field(self, request: web.Request) -> web.Response:
        body = await _body(request)
        route = body.get("resource") if isinstance(body, dict) else None
        column = body.get("column") if isinstance(body, dict) else None
        if route not in RESOURCES or not RESOURCES[route].extensible:
            extensible = [r for r, s in RESOURCES.items() if s.extensible]
            return _bad(f"'resource' must be one of {extensible}")
        if not isinstance(column, str) or not COLUMN_NAME.fullmatch(column) or RESOURCES[route].field(column):
            return _bad("'column' must be a new Column Name: no spaces, starting with a lowercase letter")
        self.emulator.store.tables[route].add_custom_field(column)
        return await self.get_custom_fields(request)

    async def bill_run(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _bad('send {"account_ids": [...], "count": 1}')
        accounts = self.emulator.store.tables["Account"]
        ids = body.get("account_ids")
        ids = list(accounts.ids()) if ids is None else ids
        count = body.get("count", 1)
        if not isinstance(count, int) or count < 0 or not isinstance(ids, list):
            return _bad("'account_ids' is a list of account ids and 'count' a whole number")
        missing = [i for i in ids if i not in accounts]
        if missing:
            return _bad(f"no such accounts: {missing}")
        made = [
            invoice
            for account in ids
            for invoice in generate_invoices(self.emulator.store, self.emulator.rng, account, count)
        ]
        return web.json_response({"invoices": made})


def add_routes(app: web.Application, emulator: Emulator) -> None:
    handlers = AdminApi(emulator)
    router = app.router
    router.add_get("/__admin/health", handlers.health)
    router.add_post("/__admin/reset", handlers.reset)
    router.add_post("/__admin/faults", handlers.add_fault)
    router.add_get("/__admin/faults", handlers.list_faults)
    router.add_delete("/__admin/faults", handlers.clear_faults)
    router.add_delete("/__admin/faults/{id:\\d+}", handlers.remove_fault)
    router.add_get("/__admin/counters", handlers.counters)
    router.add_delete("/__admin/counters", handlers.clear_counters)
    router.add_post("/__admin/rate-limit", handlers.set_rate_limit)
    router.add_get("/__admin/rate-limit", handlers.rate_limit)
    router.add_delete("/__admin/rate-limit/counters", handlers.clear_rate_limit_counters)
    router.add_get("/__admin/accounts", handlers.accounts)
    router.add_get("/__admin/price_plans", handlers.price_plans)
    router.add_post("/__admin/tokens/expire", handlers.expire_tokens)
    router.add_post("/__admin/clock", handlers.clock)
    router.add_get("/__admin/config", handlers.get_config)
    router.add_post("/__admin/config", handlers.set_config)
    router.add_get("/__admin/custom-fields", handlers.get_custom_fields)
    router.add_post("/__admin/custom-fields", handlers.add_custom_field)
    router.add_post("/__admin/bill-run", handlers.bill_run)


def account_tree(emulator: Emulator) -> dict[str, Any]:
    """Every account with its contacts, each with its contact points, in identity order."""
    store = emulator.store
    contacts, points = store.tables["Contact"], store.tables["Contact/Point"]
    items = []
    for identity in store.tables["Account"].ids():
        account = search.render(store, "Account", identity)
        account["contacts"] = []
        for contact_id in sorted(contacts.lookup("accountId", identity) or ()):
            contact = search.render(store, "Contact", contact_id)
            contact["contactPoints"] = [
                search.render(store, "Contact/Point", point)
                for point in sorted(points.lookup("contactId", contact_id) or ())
            ]
            account["contacts"].append(contact)
        items.append(account)
    return {"totalCount": len(items), "items": items}


def price_plan_list(emulator: Emulator) -> list[dict[str, Any]]:
    """Every account price plan with its entries, in identity order, charges summed per kind."""
    store = emulator.store
    tables = store.tables
    accounts, entries = tables["Account"], tables["Package/Service/PricePlan"]
    services, currencies, codes = tables["Package/Service"], tables["Package/Currency"], tables["Account/ProductCode"]
    plans = []
    for identity in tables["Account/PricePlan"].ids():
        plan = tables["Account/PricePlan"].get(identity) or {}
        account = plan["accountId"]
        rows = []
        for entry_id in sorted(entries.lookup("accountPricePlanId", identity) or ()):
            entry = entries.get(entry_id) or {}
            code = entry["accountProductCodeId"]
            currency = currencies.value(entry["packageCurrencyId"], "currencyId")
            rows.append(
                {
                    "identity": entry_id,
                    "packageFrequencyId": entry["packageFrequencyId"],
                    "packageServiceId": entry["packageServiceId"],
                    "serviceId": services.value(entry["packageServiceId"], "serviceId"),
                    "productCode": codes.value(code, "name") if code is not None else None,
                    "productCodeId": code,
                    "currencyCode": tables["Currency"].value(currency, "code") if currency is not None else None,
                    "recurringAmount": _total(entry["recurringCharges"]),
                    "oneTimeAmount": _total(entry["oneTimeCharges"]),
                }
            )
        plans.append(
            {
                "identity": identity,
                "name": plan["name"],
                "accountId": account,
                "sfdcid": accounts.value(account, "sfdcid") if "sfdcid" in accounts.position else None,
                "entries": rows,
            }
        )
    return plans


def _total(charges: Any) -> float:
    return round(sum(float(c.get("amount") or 0) for c in charges or ()), 10)
