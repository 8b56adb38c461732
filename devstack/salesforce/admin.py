"""The admin API under /__admin/ (no token, JSON in and out); the README's local-stack section lists it.

GET  /__admin/health                      {"status": "ok"}
POST /__admin/reset                       clear records, events, sessions, tokens, counters, tunables, limits
POST /__admin/records                     {"sobject", "records": [{"Id"?, ...}]} -> {"ids": [...]}; no CDC
GET  /__admin/records/<sobject>           {"records": [...every record, deleted ones too...]}
POST /__admin/undelete                    {"sobject", "ids": [...]} -> {"results": [...]}; emits UNDELETE
POST /__admin/cdc/publish                 {"message": {"data": {...}, "channel": "..."}} -> {"replayId": N}
POST /__admin/cdc/gap                     {"entity", "changeType": "GAP_UPDATE", "recordIds": [...]} -> {"replayId"}
POST /__admin/cdc/overflow                {"entity"} -> {"replayId"} (recordIds ["000000000000000AAA"])
GET  /__admin/cdc/events                  {"events": [{"replayId", "channels", "data"}...], "oldest_valid", "last"}
POST /__admin/sessions/expire             {"cometd": true, "tokens": true} (both by default)
POST /__admin/connections/drop            abort every held CometD long poll and Pub/Sub Subscribe stream
                                          (UNAVAILABLE "RST_STREAM closed stream") -> {"dropped", "pubsub_streams"}
POST /__admin/retention                   {"oldest_replay_id": N}: older ids become invalid
GET  /__admin/counters                    API calls by kind (shape in state.py)
POST /__admin/latency                     {"ms": 200}: added to every non-admin request
POST /__admin/settings                    any of the tunables in config.py, e.g. {"long_text_diff": true},
                                          {"multi_currency": true} (CurrencyIsoCode appears in describe)
POST /__admin/schema                      custom objects and fields (shape in schema.py)
POST /__admin/schema-source               {"path": "<dir>"}: the same from Salesforce DX source, e.g. the folder
                                          `sfls import schema --out DIR` wrote (source.py) -> {"added": [...]}
POST /__admin/pubsub/faults               {"keepalives": false}, {"fail_next": {"status", "error_code", "details"}},
                                          {"fail_streams": {...}}, {"reset": true} (pubsub.py)
GET  /__admin/limits                      {"window_seconds", "limits": {name: {"max", "used", "remaining"}},
                                          "refused": {name: n}} (limits.py)
POST /__admin/limits                      any of {"window_seconds": 5, "max": {"DailyApiRequests": 500},
                                          "used": {"DailyApiRequests": 480}} (used: spent now) -> as GET
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from devstack.salesforce.base import ApiError
from devstack.salesforce.cdc import OVERFLOW_RECORD_ID
from devstack.salesforce.cometd import CometD
from devstack.salesforce.limits import LimitsError
from devstack.salesforce.pubsub import PubSub
from devstack.salesforce.rest import EMULATOR, emulator, json_response, read_json
from devstack.salesforce.schema import SchemaError
from devstack.salesforce.source import SourceError, load_source

COMETD: web.AppKey[CometD] = web.AppKey("cometd", CometD)
PUBSUB: web.AppKey[PubSub] = web.AppKey("pubsub", PubSub)
GAP_TYPES = {"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"}


class AdminError(Exception):
    """A bad admin request; rendered as {"error": message} with status 400."""


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await read_json(request)
    except ApiError as error:
        raise AdminError(error.message) from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise AdminError("the request body must be a JSON object")
    return body


def _require(body: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(key)
    if not isinstance(value, kind):
        raise AdminError(f"'{key}' is required")
    return value


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def reset(request: web.Request) -> web.Response:
    request.app[COMETD].reset()
    request.app[PUBSUB].reset()
    emulator(request).reset()
    return json_response({"reset": True})


async def put_records(request: web.Request) -> web.Response:
    body = await _body(request)
    state = emulator(request)
    obj = state.store.schema.get(_require(body, "sobject", str))
    if obj is None:
        raise AdminError(f"unknown sobject {body['sobject']!r}")
    records = _require(body, "records", list)
    ids = [state.store.admin_put(obj, record) for record in records if isinstance(record, dict)]
    return json_response({"ids": ids})


async def get_records(request: web.Request) -> web.Response:
    state = emulator(request)
    obj = state.store.schema.get(request.match_info["sobject"])
    if obj is None:
        raise AdminError(f"unknown sobject {request.match_info['sobject']!r}")
    records = [
        {k: v for k, v in record.items() if not k.startswith("_")}
        for record in state.store.records.get(obj.name, {}).values()
    ]
    return json_response({"records": records})


async def undelete(request: web.Request) -> web.Response:
    body = await _body(request)
    state = emulator(request)
    obj = state.store.schema.get(_require(body, "sobject", str))
    if obj is None:
        raise AdminError(f"unknown sobject {body['sobject']!r}")
    transaction = state.store.transaction(str(body.get("changeOrigin", "com/salesforce/api/soap/62.0")))
    ids = _require(body, "ids", list)
    outcomes = transaction.run([partial(transaction.plan_undelete, obj, i) for i in ids], all_or_none=False)
    transaction.commit()
    results = [
        {"success": False, "errors": [o.collection_error()]}
        if isinstance(o, ApiError)
        else {"id": o.record_id, "success": True, "errors": []}
        for o in outcomes
    ]
    return json_response({"results": results})


async def publish(request: web.Request) -> web.Response:
    body = await _body(request)
    message = _require(body, "message", dict)
    if not isinstance(message.get("channel"), str) or not isinstance(message.get("data"), dict):
        raise AdminError("'message' needs 'channel' (string) and 'data' (object)")
    return json_response({"replayId": emulator(request).events.publish_verbatim(message)})


async def gap(request: web.Request) -> web.Response:
    body = await _body(request)
    state = emulator(request)
    obj = state.store.schema.get(_require(body, "entity", str))
    change_type = _require(body, "changeType", str)
    if obj is None or change_type not in GAP_TYPES:
        raise AdminError(f"need a known 'entity' and a 'changeType' among {sorted(GAP_TYPES)}")
    record_ids = [str(i) for i in _require(body, "recordIds", list)]
    return json_response({"replayId": state.events.header_only(obj, change_type, record_ids)})


async def overflow(request: web.Request) -> web.Response:
    body = await _body(request)
    state = emulator(request)
    obj = state.store.schema.get(_require(body, "entity", str))
    if obj is None:
        raise AdminError(f"unknown entity {body['entity']!r}")
    return json_response({"replayId": state.events.header_only(obj, "GAP_OVERFLOW", [OVERFLOW_RECORD_ID])})


async def events(request: web.Request) -> web.Response:
    log = emulator(request).log
    log.prune()
    return json_response(
        {
            "events": [{"replayId": e.replay_id, "channels": sorted(e.channels), "data": e.data} for e in log.events],
            "oldest_valid": log.floor,
            "last": log.last_id,
        }
    )


async def expire_sessions(request: web.Request) -> web.Response:
    body = await _body(request)
    sessions = request.app[COMETD].expire_sessions() if body.get("cometd", True) else 0
    tokens = emulator(request).tokens.expire_all() if body.get("tokens", True) else 0
    return json_response({"expired_sessions": sessions, "expired_tokens": tokens})


async def drop_connections(request: web.Request) -> web.Response:
    dropped = request.app[COMETD].drop_connections()
    return json_response({"dropped": dropped, "pubsub_streams": request.app[PUBSUB].drop_connections()})


async def pubsub_faults(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        return json_response(request.app[PUBSUB].set_faults(body))
    except (TypeError, ValueError) as error:
        raise AdminError(str(error)) from None


async def retention(request: web.Request) -> web.Response:
    body = await _body(request)
    state = emulator(request)
    if "oldest_replay_id" in body:
        state.log.set_floor(int(_require(body, "oldest_replay_id", int)))
    if "retention_seconds" in body:
        state.tunables.retention_seconds = float(_require(body, "retention_seconds", (int, float)))
    return json_response({"oldest_replay_id": state.log.floor, "retention_seconds": state.tunables.retention_seconds})


async def counters(request: web.Request) -> web.Response:
    return json_response(emulator(request).counters.snapshot())


async def latency(request: web.Request) -> web.Response:
    body = await _body(request)
    state = emulator(request)
    state.tunables.latency_ms = float(_require(body, "ms", (int, float)))
    return json_response({"ms": state.tunables.latency_ms})


async def settings(request: web.Request) -> web.Response:
    body = await _body(request)
    state = emulator(request)
    tunables = state.tunables
    current = asdict(tunables)
    for key, value in body.items():
        if key not in current:
            raise AdminError(f"unknown setting {key!r}; known: {sorted(current)}")
        kind = type(current[key])
        if kind is bool and not isinstance(value, bool):
            raise AdminError(f"{key} must be true or false")
        if kind is not bool and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise AdminError(f"{key} must be a number")
        setattr(tunables, key, kind(value))
    if tunables.multi_currency != state.store.multi_currency:
        state.store.set_multi_currency(tunables.multi_currency, state.config.currencies)
    return json_response(asdict(tunables))


async def get_limits(request: web.Request) -> web.Response:
    return json_response(emulator(request).limits.snapshot())


async def set_limits(request: web.Request) -> web.Response:
    body = await _body(request)
    limits = emulator(request).limits
    unknown = sorted(set(body) - {"window_seconds", "max", "used"})
    if unknown:
        raise AdminError(f"unknown key {unknown[0]!r}; known: ['max', 'used', 'window_seconds']")
    for key, value in body.items():
        if value is None:
            raise AdminError(f"{key} must not be null")
    try:
        limits.configure(window_seconds=body.get("window_seconds"), maximum=body.get("max"), used=body.get("used"))
    except LimitsError as error:
        raise AdminError(str(error)) from None
    return json_response(limits.snapshot())


async def schema(request: web.Request) -> web.Response:
    return _extend(request, await _body(request))


async def schema_source(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        spec = load_source(Path(_require(body, "path", str)))
    except SourceError as error:
        raise AdminError(str(error)) from None
    return _extend(request, spec)


def _extend(request: web.Request, body: dict[str, Any]) -> web.Response:
    state = emulator(request)
    try:
        added = state.store.schema.extend(body)
    except SchemaError as error:
        raise AdminError(str(error)) from None
    for name in state.store.schema.objects:
        state.store.records.setdefault(name, {})
    return json_response({"added": added})


def routes(app: web.Application) -> None:
    assert EMULATOR in app
    prefix = "/__admin"
    app.router.add_get(prefix + "/health", health)
    app.router.add_post(prefix + "/reset", reset)
    app.router.add_post(prefix + "/records", put_records)
    app.router.add_get(prefix + "/records/{sobject}", get_records)
    app.router.add_post(prefix + "/undelete", undelete)
    app.router.add_post(prefix + "/cdc/publish", publish)
    app.router.add_post(prefix + "/cdc/gap", gap)
    app.router.add_post(prefix + "/cdc/overflow", overflow)
    app.router.add_get(prefix + "/cdc/events", events)
    app.router.add_post(prefix + "/sessions/expire", expire_sessions)
    app.router.add_post(prefix + "/connections/drop", drop_connections)
    app.router.add_post(prefix + "/retention", retention)
    app.router.add_get(prefix + "/counters", counters)
    app.router.add_post(prefix + "/latency", latency)
    app.router.add_post(prefix + "/settings", settings)
    app.router.add_post(prefix + "/schema", schema)
    app.router.add_post(prefix + "/schema-source", schema_source)
    app.router.add_post(prefix + "/pubsub/faults", pubsub_faults)
    app.router.add_get(prefix + "/limits", get_limits)
    app.router.add_post(prefix + "/limits", set_limits)
