"""The Resource Server: `/ResourceServer/api/{v}/{Resource}[/...]`, with LogiSense's envelopes.

Routes per resource R (any version v1..v10 behaves the same):
  GET R (list)   GET R/Paged (`Pagination` header)   GET R/{id}   POST R (201)   PUT R/{id} (partial)
  PATCH R/{id} (also child arrays: Account `contacts` -> `contactPoints`, Package `frequencies`,
  `currencies`, `services`, Account/PricePlan `packageServicePricePlan`; an entry without identity is
  created, one with identity and fields updated, `{"identity": n, "delete": true}` deleted, all in the
  request's one transaction)   DELETE R/{id} (cascade list)   POST R/Search   GET R/Metadata[/sql]
  plus `RatePlan/Search` (deep search of Usage/Rate/Plan) and `Service/{id}/Detail`.
Unknown routes and ids answer 404, verbs a resource does not support 405, duplicates of unique
values 409, bad input 400 with every error found; all in the `{trackingId, type, errors}` shape.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devstack.logisense import search
from devstack.logisense.resources import RESOURCES, ROUTES_LONGEST_FIRST, ResourceSpec
from devstack.logisense.store import Transaction
from devstack.logisense.writes import (
    ERR_INVALID,
    ERR_METHOD,
    ERR_NOT_FOUND,
    ERR_REFERENCE,
    ERR_TRAILER,
    TRAILER,
    ApiError,
)

if TYPE_CHECKING:
    from devstack.logisense.app import Emulator

# A child entry `{"identity": n, "delete": true}` in a PATCH child array deletes that child (with its
# cascade): the marker's name and shape are an emulator choice.
DELETE_MARKER = "delete"
_ROUTE_BY_LOWER = {route.lower(): route for route in ROUTES_LONGEST_FIRST}
_ALIASES = {"rateplan": "Usage/Rate/Plan"}
_VERB_OF = {
    "list": "GET",
    "paged": "GET",
    "get": "GET",
    "metadata": "GET",
    "search": "GET",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
}
ERROR_TYPE = {"list": "get", "paged": "get", "get": "get", "metadata": "get"}


@dataclass(frozen=True)
class Target:
    """What a request addresses: the route template (the counters' label), operation and id."""

    resource: str
    operation: str
    identity: int | None = None
    variant: str = ""


def tracking_id() -> str:
    return str(uuid.uuid4())


def classify(method: str, tail: str) -> Target:
    """Resolve `Account/StatusType/5` into (Account/StatusType, get, 5); raises 404/405 ApiErrors."""
    segments = [s for s in tail.split("/") if s]
    route, rest = None, segments
    for size in range(min(len(segments), 4), 0, -1):
        key = "/".join(segments[:size]).lower()
        found = _ROUTE_BY_LOWER.get(key) or _ALIASES.get(key)
        if found is not None and (RESOURCES[found].verbs or key in _ALIASES):
            route, rest = found, segments[size:]
            break
    if route is None:
        raise ApiError(404, [(ERR_NOT_FOUND, f"No resource matches '{tail}'.")])
    operation, identity, variant = _operation(method, route, rest, tail)
    spec = RESOURCES[route]
    if _VERB_OF[operation] not in spec.verbs or (operation == "search" and not spec.searchable):
        raise ApiError(405, [(ERR_METHOD, f"'{route}' does not support {method} for this route.")])
    return Target(route, operation, identity, variant)


def _operation(method: str, route: str, rest: list[str], tail: str) -> tuple[str, int | None, str]:
    lowered = [s.lower() for s in rest]
    table: dict[tuple[str, ...], dict[str, str]] = {
        (): {"GET": "list", "POST": "create"},
        ("paged",): {"GET": "paged"},
        ("search",): {"POST": "search"},
        ("metadata",): {"GET": "metadata"},
        ("metadata", "sql"): {"GET": "metadata"},
    }
    if tuple(lowered) in table:
        operations = table[tuple(lowered)]
        if method not in operations:
            raise ApiError(405, [(ERR_METHOD, f"'{tail}' does not support {method}.")])
        return operations[method], None, "/".join(lowered)
    if lowered and lowered[0].isdigit() and (len(lowered) == 1 or lowered[1:] == ["detail"]):
        operations = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        if len(lowered) == 2:
            operations = {"GET": "get"} if route == "Service" else {}
        if method not in operations:
            raise ApiError(405 if operations else 404, [(ERR_METHOD, f"'{tail}' does not support {method}.")])
        return operations[method], int(lowered[0]), "/".join(lowered[1:])
    raise ApiError(404, [(ERR_NOT_FOUND, f"No route matches '{tail}'.")])


def parse_json(raw: bytes, what: str = "body") -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, [(ERR_INVALID, f"The request is invalid: the {what} is not valid JSON ({exc}).")]) from None


def handle(emulator: Emulator, target: Target, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Run one authorised Resource Server request; returns status and JSON body."""
    if target.operation in ("create", "update", "patch", "delete"):
        return _change(emulator, target, body, headers)
    store, route, op = emulator.store, target.resource, target.operation
    if op == "list":
        ids = list(store.tables[route].rows)
        return 200, {"trackingId": tracking_id(), "totalCount": len(ids), "items": _render(emulator, route, ids)}
    if op == "paged":
        return 200, _paged(emulator, route, headers.get("pagination"))
    if op == "metadata":
        return 200, _metadata(emulator, RESOURCES[route], sql_only=target.variant == "metadata/sql")
    if op == "search":
        return 200, _search(emulator, route, body)
    if target.identity is None or target.identity not in store.tables[route]:
        raise ApiError(404, [(ERR_NOT_FOUND, f"'{route}' ({target.identity}) was not found.")])
    return 200, {"trackingId": tracking_id(), "instance": search.render(store, route, target.identity)}


def _search(emulator: Emulator, route: str, body: bytes) -> dict[str, Any]:
    query = search.parse(emulator.store, route, parse_json(body), emulator.search_options)
    total, items = search.execute(emulator.store, route, query, emulator.search_options)
    if query.page is not None:
        return _paged_envelope(query.page, total, items)
    return {"trackingId": tracking_id(), "totalCount": total, "items": items}


def _change(emulator: Emulator, target: Target, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST, PUT, PATCH or DELETE in one transaction: applied whole, or rolled back with every error."""
    route, op = target.resource, target.operation
    payload = parse_json(body) if op != "delete" else {}
    if not isinstance(payload, dict):
        raise ApiError(400, [(ERR_INVALID, f"The request is invalid: the body must be a JSON object for '{route}'.")])
    filters = _update_filters(headers.get("updaterequest")) if op == "update" else None
    txn = emulator.store.begin()
    errors: list[tuple[int, str]] = []
    try:
        if op == "delete":
            assert target.identity is not None
            items = emulator.writer.delete(route, target.identity, txn)
        else:
            items = []
            _write(emulator, route, target.identity, payload, txn=txn, items=items, errors=errors, filters=filters)
            for item in items:
                written = item.pop("_route", None)
                if written is not None:  # deleted children have no instance left to show
                    item["instance"] = search.render(emulator.store, written, item["identity"])
    except BaseException:
        txn.rollback()
        raise
    if errors:
        txn.rollback()
        raise ApiError(400, errors)
    return 201 if op == "create" else 200, {
        "trackingId": tracking_id(),
        "type": op,
        "results": {"totalCount": len(items), "items": items},
    }


def _write(
    emulator: Emulator,
    route: str,
    identity: int | None,
    body: dict[str, Any],
    *,
    txn: Transaction,
    items: list[dict[str, Any]],
    errors: list[tuple[int, str]],
    filters: list[str] | None = None,
) -> None:
    """Create or update one record and then its child arrays, gathering every error."""
    spec = RESOURCES[route]
    writer = emulator.writer
    if identity is None:
        identity, found = writer.create(route, body, txn)
        action = "created"
    else:
        found = writer.update(route, identity, body, txn, filters=filters)
        action = "updated"
    errors.extend(found)
    if found or identity is None:
        return
    items.append({"identity": identity, "action": action, "dtoTypeKey": spec.dto_type_key, "_route": route})
    for key, (child_route, foreign_key) in spec.patch_children.items():
        children = body.get(key)
        if children is None:
            continue
        if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
            errors.append((ERR_INVALID, f"'{key}' must be a list of objects for '{route}'."))
            continue
        child_table = emulator.store.tables[child_route]
        for child in children:
            child_id = child.get("identity")
            delete = child.get(DELETE_MARKER)
            if delete not in (None, True, False):
                errors.append((ERR_INVALID, f"'{DELETE_MARKER}' must be true or false in '{key}' for '{route}'."))
                continue
            if delete and child_id is None:
                errors.append((ERR_INVALID, f"A '{key}' entry marked for delete needs its 'identity'."))
                continue
            if child_id is not None and child_table.value(child_id, foreign_key) != identity:
                errors.append(
                    (ERR_REFERENCE, f"'{child_route}' ({child_id}) does not exist for '{route}' ({identity}).")
                )
                continue
            if delete:
                items.extend(writer.delete(child_route, child_id, txn))
                continue
            fields = {k: v for k, v in child.items() if k != DELETE_MARKER}
            _write(
                emulator, child_route, child_id, {**fields, foreign_key: identity}, txn=txn, items=items, errors=errors
            )


def _update_filters(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    parsed = parse_json(raw.encode(), "UpdateRequest header")
    filters = parsed.get("filters") if isinstance(parsed, dict) else None
    if not isinstance(filters, list) or not all(isinstance(f, str) for f in filters):
        raise ApiError(400, [(ERR_INVALID, 'The UpdateRequest header must be {"filters": [field names]}.')])
    return filters


def _render(emulator: Emulator, route: str, ids: list[int]) -> list[dict[str, Any]]:
    return [search.render(emulator.store, route, identity) for identity in ids]


def _paged(emulator: Emulator, route: str, header: str | None) -> dict[str, Any]:
    raw = parse_json(header.encode(), "Pagination header") if header else None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ApiError(400, [(ERR_INVALID, 'The Pagination header must be {"pageNumber": 1, "pageSize": 20}.')])
    errors: list[tuple[int, str]] = []
    requested = {"pageNumber": 1, "pageSize": emulator.config.paged_default_size, **raw}
    page = search.parse_pagination(requested, emulator.search_options, errors)
    if errors or page is None:
        raise ApiError(400, errors)
    table = emulator.store.tables[route]
    number, size = page
    start = (number - 1) * size
    ids = list(itertools.islice(table.rows, start, start + size))
    return _paged_envelope(page, len(table), _render(emulator, route, ids), bool(raw.get("excludeTotalCount")))


def _paged_envelope(
    page: tuple[int, int], total: int, items: list[dict[str, Any]], exclude_total: bool = False
) -> dict[str, Any]:
    results: dict[str, Any] = {"items": items} if exclude_total else {"totalCount": total, "items": items}
    return {
        "trackingId": tracking_id(),
        "pagination": {"pageNumber": page[0], "pageSize": page[1], "excludeTotalCount": exclude_total},
        "pagedResults": results,
    }


_SQL_TYPES = {"int": "int", "str": "nvarchar", "bool": "bit", "float": "decimal", "date": "datetime", "list": "json"}


def _metadata(emulator: Emulator, spec: ResourceSpec, *, sql_only: bool) -> dict[str, Any]:
    custom = emulator.store.custom_fields(spec.route)
    columns = [
        {"name": f.name, "dataType": _SQL_TYPES[f.type], "isNullable": not f.required and f.name != "identity"}
        for f in spec.fields
    ] + [{"name": name, "dataType": "nvarchar", "isNullable": True, "isCustomField": True} for name in custom]
    sql = {
        "columns": columns,
        "primaryKeys": ["identity"],
        "foreignKeys": [{"column": f.name, "references": f.ref} for f in spec.references],
    }
    if sql_only:
        return {"trackingId": tracking_id(), "sqlMetadata": sql}
    base = spec.route
    routes = [f"GET {base}", f"GET {base}/Paged", f"GET {base}/{{id}}", f"POST {base}/Search", f"GET {base}/Metadata"]
    for verb, path in (
        ("POST", base),
        ("PUT", f"{base}/{{id}}"),
        ("PATCH", f"{base}/{{id}}"),
        ("DELETE", f"{base}/{{id}}"),
    ):
        if verb in spec.verbs:
            routes.append(f"{verb} {path}")
    return {
        "trackingId": tracking_id(),
        "updateRequest": {"filters": [f.name for f in spec.writable] + custom},
        "resourceRouting": {"routes": routes},
        "sqlMetadata": sql,
        "customFields": custom,
    }


def error_body(operation: str, errors: list[tuple[int, str]], *, trailer: bool = True) -> dict[str, Any]:
    """LogiSense's error envelope; validation answers end with the 2000 'rolled back' entry."""
    entries = [{"code": code, "message": message} for code, message in errors]
    if trailer:
        entries.append({"code": ERR_TRAILER, "message": TRAILER})
    return {"trackingId": tracking_id(), "type": ERROR_TYPE.get(operation, operation), "errors": entries}
