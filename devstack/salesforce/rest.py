"""The OAuth token endpoint and the REST API under /services/data/vNN.N/.

Every handler either answers in Salesforce's shape or raises `ApiError`, which the error
middleware (app.py) renders as `[{"message", "errorCode"}]`. Writes run in one store
transaction per request and commit at the end, which is when their change events are published;
the transaction's changeOrigin names the REST API version and, when the caller sent
`Sforce-Call-Options: client=<id>`, that client id.

A record body may set a reference by the parent's external id (`"Request__r": {"Request_Id__c": "abc"}`),
in single writes and in sObject Collections alike (references.py resolves it). sObject Collections take at
most 200 records (create, update, upsert) or ids (`DELETE ?ids=`); more is refused as a whole with
EXCEEDED_ID_LIMIT "record limit reached. cannot submit more than 200 records into this call". Describe lists
the object's childRelationships (schema.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from devstack.salesforce import soql
from devstack.salesforce.base import ApiError, is_id, not_found
from devstack.salesforce.schema import ObjectDef
from devstack.salesforce.state import Emulator
from devstack.salesforce.store import Plan, Transaction

EMULATOR: web.AppKey[Emulator] = web.AppKey("emulator", Emulator)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VERSION = r"{version:v\d+\.\d}"
BASE = f"/services/data/{VERSION}"  # every REST resource lives under this route
MIN_VERSION, MAX_VERSION = 20.0, 66.0
MAX_COLLECTION = 200
_CLIENT = re.compile(r"(?:^|[,;\s])client=([^,;\s]+)")
_SKIP_FIELDS = {"_deleted_with"}


def emulator(request: web.Request) -> Emulator:
    return request.app[EMULATOR]


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), status=status, content_type="application/json")


async def read_json(request: web.Request) -> Any:
    text = await request.text()
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            f"Unexpected character ('{text[exc.pos : exc.pos + 1]}'): was expecting a JSON value "
            f"at [line:{exc.lineno}, column:{exc.colno}]",
        ) from None


async def read_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body


# ---- OAuth -------------------------------------------------------------------------------------
def _oauth_error(error: str, description: str) -> web.Response:
    return json_response({"error": error, "error_description": description}, status=400)


async def token(request: web.Request) -> web.Response:
    """OAuth 2 token endpoint: password and refresh_token grants."""
    state = emulator(request)
    state.counters.token += 1
    form = dict(await request.post()) if request.can_read_body else {}
    form = {**dict(request.query), **{k: str(v) for k, v in form.items()}}
    config = state.config
    grant = form.get("grant_type")
    if grant not in {"password", "refresh_token"}:
        return _oauth_error("unsupported_grant_type", "grant type not supported")
    if form.get("client_id") != config.client_id:
        return _oauth_error("invalid_client_id", "client identifier invalid")
    if form.get("client_secret", config.client_secret) != config.client_secret:
        return _oauth_error("invalid_client", "invalid client credentials")
    if grant == "password":
        good = form.get("username") == config.username and form.get("password") == (
            config.password + config.security_token
        )
        if not good:
            return _oauth_error("invalid_grant", "authentication failure")
        access, refresh = state.tokens.issue(with_refresh=True)
    else:
        if form.get("refresh_token") not in state.tokens.refresh:
            return _oauth_error("invalid_grant", "expired access/refresh token")
        access, refresh = state.tokens.issue(with_refresh=False)
    instance_url = f"https://{request.host}"
    identity = f"{instance_url}/id/{state.store.org_id}/{state.store.user_id}"
    issued_at = str(int(time.time() * 1000))
    body = {
        "access_token": access,
        "instance_url": instance_url,
        "id": identity,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": state.tokens.signature(identity, issued_at),
    }
    if refresh:
        body["refresh_token"] = refresh
    return json_response(body)


# ---- helpers -------------------------------------------------------------------------------------
def version_of(request: web.Request) -> str:
    version = request.match_info["version"][1:]
    if not MIN_VERSION <= float(version) <= MAX_VERSION:
        raise not_found()
    return version


def origin(request: web.Request, api: str = "rest") -> str:
    """changeOrigin of the request's writes: the API (rest, bulkapi), its version, and the caller's client tag."""
    match = _CLIENT.search(request.headers.get("Sforce-Call-Options", ""))
    base = f"com/salesforce/api/{api}/{version_of(request)}"
    return f"{base};client={match.group(1)}" if match else base


def record_out(obj: ObjectDef, record: dict[str, Any], version: str, fields: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": {"type": obj.name, "url": f"/services/data/v{version}/sobjects/{obj.name}/{record['Id']}"}
    }
    names = fields or [n for n in obj.fields if n not in _SKIP_FIELDS]
    for name in names:
        definition = obj.field(name)
        if definition is None:
            raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}", [name])
        if definition.type == "address":
            out[definition.name] = soql._address(record, definition.name)
        else:
            out[definition.name] = record.get(definition.name)
    return out


def _write(request: web.Request) -> Transaction:
    state = emulator(request)
    return state.store.transaction(origin(request))


def _result(plan: Plan | ApiError, *, upsert: bool = False) -> dict[str, Any]:
    if isinstance(plan, ApiError):
        return {"success": False, "errors": [plan.collection_error()]}
    out: dict[str, Any] = {"id": plan.record_id, "success": True, "errors": []}
    if upsert:
        out["created"] = plan.created
    return out


# ---- resources --------------------------------------------------------------------------------------
async def versions(request: web.Request) -> web.Response:
    return json_response(
        [
            {"label": f"v{v}", "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
            for v in range(int(MIN_VERSION), int(MAX_VERSION) + 1)
        ]
    )


async def resources(request: web.Request) -> web.Response:
    base = f"/services/data/v{version_of(request)}"
    names = ("sobjects", "query", "queryAll", "composite", "limits", "jobs")
    return json_response({name: f"{base}/{name}" for name in names})


async def limits(request: web.Request) -> web.Response:
    state = emulator(request)
    state.counters.total += 1
    return json_response(state.limits.org_limits())  # this call already spent (app.py's middleware)


async def query(request: web.Request) -> web.Response:
    """SOQL query and queryAll, first page; later pages come from query_more."""
    state = emulator(request)
    version = version_of(request)
    state.counters.total += 1
    state.counters.query += 1
    text = request.query.get("q")
    if text is None:
        raise ApiError(400, "MALFORMED_QUERY", "A query string is required")
    parsed = soql.parse(text, state.store)
    include_deleted = request.path.rstrip("/").endswith("queryAll")
    total, rows = soql.execute(state.store, parsed, include_deleted=include_deleted, version=version)
    return json_response(_page(request, total, rows, start=0, version=version, locator=None))


def _batch_size(request: web.Request) -> int:
    state = emulator(request)
    match = re.search(r"batchSize=(\d+)", request.headers.get("Sforce-Query-Options", ""))
    size = int(match.group(1)) if match else state.tunables.query_batch_size
    return max(200, min(2000, size)) if match else size


def _page(
    request: web.Request, total: int, rows: list[dict[str, Any]], *, start: int, version: str, locator: str | None
) -> dict[str, Any]:
    size = _batch_size(request)
    end = start + size
    body: dict[str, Any] = {"totalSize": total, "done": end >= len(rows), "records": rows[start:end]}
    if end < len(rows):
        locator = locator or emulator(request).add_cursor(rows, version)
        kind = "queryAll" if "queryAll" in request.path else "query"
        body["nextRecordsUrl"] = f"/services/data/v{version}/{kind}/{locator}-{end}"
    return body


async def query_more(request: web.Request) -> web.Response:
    state = emulator(request)
    version = version_of(request)
    state.counters.total += 1
    state.counters.query += 1
    locator, _, start = request.match_info["locator"].rpartition("-")
    if not start.isdigit():
        raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    cursor = state.cursor(locator)
    return json_response(
        _page(request, len(cursor.rows), cursor.rows, start=int(start), version=version, locator=locator)
    )


async def sobjects(request: web.Request) -> web.Response:
    state = emulator(request)
    version = version_of(request)
    state.counters.total += 1
    state.counters.describe["*"] += 1
    listing = []
    for obj in state.store.schema.objects.values():
        full = obj.describe(version)
        full.pop("fields")
        full.pop("childRelationships")
        listing.append(full)
    return json_response({"encoding": "UTF-8", "maxBatchSize": MAX_COLLECTION, "sobjects": listing})


async def sobject_info(request: web.Request) -> web.Response:
    state = emulator(request)
    version = version_of(request)
    obj = state.store.object(request.match_info["sobject"])
    if request.method == "POST":
        return await create(request, obj, version)
    state.counters.total += 1
    state.counters.describe[obj.name] += 1
    full = obj.describe(version)
    full.pop("fields")
    return json_response({"objectDescribe": full, "recentItems": []})


async def describe(request: web.Request) -> web.Response:
    state = emulator(request)
    version = version_of(request)
    obj = state.store.object(request.match_info["sobject"])
    state.counters.total += 1
    state.counters.describe[obj.name] += 1
    return json_response(state.store.schema.describe(obj, version))


async def create(request: web.Request, obj: ObjectDef, version: str) -> web.Response:
    state = emulator(request)
    state.counters.total += 1
    state.counters.sobject_write[obj.name] += 1
    body = await read_object(request)
    transaction = _write(request)
    plan = transaction.apply(transaction.plan_create(obj, body))
    transaction.commit()
    return json_response(_result(plan), status=201)


async def record(request: web.Request) -> web.Response:
    """GET, PATCH (update) and DELETE of one record by id."""
    state = emulator(request)
    version = version_of(request)
    obj = state.store.object(request.match_info["sobject"])
    record_id = request.match_info["id"]
    state.counters.total += 1
    if request.method == "GET":
        state.counters.sobject_read[obj.name] += 1
        found = state.store.get(obj, record_id)
        if found is None:
            raise not_found()
        fields = request.query.get("fields")
        return json_response(record_out(obj, found, version, fields.split(",") if fields else None))
    state.counters.sobject_write[obj.name] += 1
    transaction = _write(request)
    if request.method == "PATCH":
        body = await read_object(request)
        transaction.apply(transaction.plan_update(obj, record_id, body))
    else:
        transaction.apply(transaction.plan_delete(obj, record_id))
    transaction.commit()
    return web.Response(status=204)


async def by_external_id(request: web.Request) -> web.Response:
    """GET by external id, or upsert (PATCH): 201 created / 200 updated, with {id, success, errors, created}."""
    state = emulator(request)
    version = version_of(request)
    obj = state.store.object(request.match_info["sobject"])
    field_name, value = request.match_info["field"], request.match_info["value"]
    state.counters.total += 1
    if request.method == "GET":
        state.counters.sobject_read[obj.name] += 1
        definition = obj.field(field_name)
        if definition is None or not definition.external_id:
            raise not_found(f"Provided external ID field does not exist or is not accessible: {field_name}")
        found_id = state.store.by_unique(obj, definition.name, value)
        found = state.store.get(obj, found_id) if found_id else None
        if found is None:
            raise not_found()
        return json_response(record_out(obj, found, version))
    state.counters.sobject_write[obj.name] += 1
    body = await read_object(request)
    transaction = _write(request)
    plan = transaction.apply(transaction.plan_upsert(obj, field_name, value, body))
    transaction.commit()
    return json_response(_result(plan, upsert=True), status=201 if plan.created else 200)


# ---- composite -------------------------------------------------------------------------------------
def _too_many() -> ApiError:
    message = f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call"
    return ApiError(400, "EXCEEDED_ID_LIMIT", message)


def _collection(body: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    records = body.get("records")
    if not isinstance(records, list) or not records:
        raise ApiError(400, "INVALID_FIELD", "records: a non-empty list of records is required")
    if len(records) > MAX_COLLECTION:
        raise _too_many()
    return records, bool(body.get("allOrNone", False))


def _record_type(state: Emulator, item: Any, default: ObjectDef | None = None) -> ObjectDef:
    if not isinstance(item, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "each record must be a JSON object")
    attributes = item.get("attributes")
    name = attributes.get("type") if isinstance(attributes, dict) else None
    if name is None:
        if default is not None:
            return default
        raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
    obj = state.store.schema.get(name)
    if obj is None or (default is not None and obj.name != default.name):
        raise ApiError(400, "INVALID_TYPE", f"sObject type '{name}' is not supported.")
    return obj


def _rolled_back(outcomes: list[Plan | ApiError], all_or_none: bool) -> list[Plan | ApiError]:
    if not all_or_none or not any(isinstance(o, ApiError) for o in outcomes):
        return outcomes
    rollback = ApiError(
        400,
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "Record rolled back because not all records were valid and the request was using AllOrNone header",
    )
    return [o if isinstance(o, ApiError) else rollback for o in outcomes]


async def collections(request: web.Request) -> web.Response:
    """sObject Collections: POST create, PATCH update, DELETE ?ids=, GET /<Type>?ids=&fields=."""
    state = emulator(request)
    version = version_of(request)
    state.counters.total += 1
    state.counters.composite += 1
    transaction = _write(request)
    if request.method == "GET":
        obj = state.store.object(request.match_info.get("sobject", ""))
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        fields = [f for f in request.query.get("fields", "").split(",") if f] or None
        state.counters.sobject_read[obj.name] += len(ids)
        out = [
            record_out(obj, found, version, fields) if (found := state.store.get(obj, i)) is not None else None
            for i in ids
        ]
        return json_response(out)
    if request.method == "DELETE":
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if not ids:
            # An emulator choice: the code and text for a delete without ids are not documented.
            raise ApiError(400, "MISSING_ARGUMENT", "ids: at least one record id is required", ["ids"])
        if len(ids) > MAX_COLLECTION:
            raise _too_many()
        all_or_none = request.query.get("allOrNone", "false").lower() == "true"

        def plan_delete(record_id: str) -> Plan:
            found = state.store.schema.by_prefix(record_id[:3]) if is_id(record_id) else None
            if found is None:
                raise ApiError(400, "MALFORMED_ID", f"malformed id {record_id}")
            state.counters.sobject_write[found.name] += 1
            return transaction.plan_delete(found, record_id)

        outcomes = transaction.run([partial(plan_delete, i) for i in ids], all_or_none=all_or_none)
    else:
        records, all_or_none = _collection(await read_object(request))
        updating = request.method == "PATCH"

        def plan(item: Any) -> Plan:
            obj = _record_type(state, item)
            state.counters.sobject_write[obj.name] += 1
            if updating:
                if not item.get("Id"):
                    raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
                return transaction.plan_update(obj, item["Id"], {k: v for k, v in item.items() if k != "Id"})
            if item.get("Id"):
                raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            return transaction.plan_create(obj, item)

        outcomes = transaction.run([partial(plan, i) for i in records], all_or_none=all_or_none)
    transaction.commit()
    return json_response([_result(o) for o in _rolled_back(outcomes, all_or_none)])


async def collection_upsert(request: web.Request) -> web.Response:
    """sObject Collections upsert: PATCH /composite/sobjects/<Type>/<ExternalIdField>."""
    state = emulator(request)
    version_of(request)
    obj = state.store.object(request.match_info["sobject"])
    field_name = request.match_info["field"]
    state.counters.total += 1
    state.counters.composite += 1
    definition = obj.field(field_name)
    if definition is None or not (definition.external_id or definition.name == "Id"):
        raise ApiError(
            404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field_name}"
        )
    records, all_or_none = _collection(await read_object(request))
    transaction = _write(request)

    def plan(item: Any) -> Plan:
        _record_type(state, item, obj)
        state.counters.sobject_write[obj.name] += 1
        value = next((v for k, v in item.items() if k.lower() == definition.name.lower()), None)
        if value is None:
            raise ApiError(
                400, "MISSING_ARGUMENT", f"{definition.name} not specified in an upsert call", [definition.name]
            )
        return transaction.plan_upsert(obj, definition.name, str(value), item)

    outcomes = transaction.run([partial(plan, i) for i in records], all_or_none=all_or_none)
    transaction.commit()
    return json_response([_result(o, upsert=True) for o in _rolled_back(outcomes, all_or_none)])


def add_route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """A route with and without a trailing slash (simple-salesforce adds one on creates)."""
    app.router.add_route(method, path, handler)
    app.router.add_route(method, path + "/", handler)


def routes(app: web.Application) -> None:
    """Every REST route, with and without a trailing slash."""

    def add(method: str, path: str, handler: Handler) -> None:
        add_route(app, method, path, handler)

    app.router.add_post("/services/oauth2/token", token)
    add("GET", "/services/data", versions)
    add("GET", BASE, resources)
    add("GET", BASE + "/limits", limits)
    for kind in ("query", "queryAll"):
        add("GET", f"{BASE}/{kind}", query)
        add("GET", f"{BASE}/{kind}/{{locator}}", query_more)
    add("GET", BASE + "/sobjects", sobjects)
    add("GET", BASE + "/sobjects/{sobject}", sobject_info)
    add("POST", BASE + "/sobjects/{sobject}", sobject_info)
    add("GET", BASE + "/sobjects/{sobject}/describe", describe)
    for method in ("GET", "PATCH", "DELETE"):
        add(method, BASE + "/sobjects/{sobject}/{id}", record)
    for method in ("GET", "PATCH"):
        add(method, BASE + "/sobjects/{sobject}/{field}/{value}", by_external_id)
    for method in ("POST", "PATCH", "DELETE"):
        add(method, BASE + "/composite/sobjects", collections)
    add("GET", BASE + "/composite/sobjects/{sobject}", collections)
    add("PATCH", BASE + "/composite/sobjects/{sobject}/{field}", collection_upsert)
