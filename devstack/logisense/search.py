"""Reads: rendering records with their `xxxName` partners, and `POST {R}/Search` queries.

Query body, as LogiSense documents it: `{"query": {"top", "fields", "search", "orderBy", "pagination"}}`.
- `search` is an AND of `{name, operator, value}`. Operators `eq notEq lt ltEq gt gtEq` are LogiSense's
  own; `like` (SQL wildcards `%` and `_`), `contains`, `startsWith`, `endsWith`, `in`, `notIn` and
  `isNull` (value true/false) are emulator extras. Strings compare case-insensitively.
- `top` defaults to 100 and may not exceed 10,000; with `pagination` the paged envelope is returned
  and `top` does not apply.
- Deep search (`Invoice/Search`, `RatePlan/Search`): child keys such as `invoiceItems` or
  `usageRateGroups: {"rates": {}}` take their own `top`, `fields`, `search` and `orderBy`.
An equality (or `in`) on an indexed field (references, names, `value`, custom fields such as
`sfdcid`) starts from the index, so lookups by Salesforce id never scan the table.
"""

from __future__ import annotations

import operator as operator_module
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from devstack.logisense.resources import RESOURCES, FieldSpec
from devstack.logisense.store import Store, Table
from devstack.logisense.writes import ERR_FORMAT, ApiError, coerce

OPERATORS = frozenset(
    {"eq", "notEq", "lt", "ltEq", "gt", "gtEq", "like", "contains", "startsWith", "endsWith", "in", "notIn", "isNull"}
)
TEXT_OPERATORS = frozenset({"like", "contains", "startsWith", "endsWith", "isNull"})
QUERY_KEYS = frozenset({"top", "fields", "search", "orderBy", "pagination"})


@dataclass
class SearchOptions:
    top_default: int = 100
    top_max: int = 10_000


@dataclass
class Query:
    top: int | None = None
    fields: list[str] | None = None
    conditions: list[tuple[str, str, Any]] = field(default_factory=list)
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    page: tuple[int, int] | None = None  # (pageNumber, pageSize)
    children: dict[str, Query] = field(default_factory=dict)


def render(store: Store, route: str, identity: int, fields: list[str] | None = None) -> dict[str, Any]:
    """The record as the API shows it: every reference with its read-only `xxxName` partner."""
    table = store.tables[route]
    row = table.rows[identity]
    record = dict(zip(table.columns, row, strict=True))
    for ref in RESOURCES[route].references:
        partner = ref.name_partner
        if partner is not None and ref.ref is not None:
            record[partner] = store.name_of(ref.ref, record.get(ref.name))
    if fields is not None:
        return {name: record.get(name) for name in fields}
    return record


def parse(store: Store, route: str, body: Any, options: SearchOptions) -> Query:
    """Validate a search body; every problem is a 400 in LogiSense's error shape."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(400, [(ERR_FORMAT, "The search body must be a JSON object with a 'query'.")])
    raw = body.get("query", {}) if "query" in body else body
    return _parse_query(store, route, raw, options)


def _parse_query(store: Store, route: str, raw: Any, options: SearchOptions) -> Query:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ApiError(400, [(ERR_FORMAT, "'query' must be a JSON object.")])
    errors: list[tuple[int, str]] = []
    table = store.tables[route]
    query = Query()
    top = raw.get("top")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= options.top_max:
            errors.append((ERR_FORMAT, f"'top' must be a whole number from 1 to {options.top_max}."))
        else:
            query.top = top
    query.fields = _parse_fields(route, table, raw.get("fields"), errors)
    query.conditions = _parse_conditions(route, table, _list(raw, "search", errors), errors)
    query.order_by = _parse_order(route, table, _list(raw, "orderBy", errors), errors)
    if raw.get("pagination") is not None:
        query.page = parse_pagination(raw["pagination"], options, errors)
    links = CHILD_LINKS.get(route, {})
    for key, value in raw.items():
        if key in links:
            query.children[key] = _parse_query(store, links[key][0], value, options)
        elif key not in QUERY_KEYS:
            errors.append((ERR_FORMAT, f"Unknown query property '{key}' for '{route}'."))
    if errors:
        raise ApiError(400, errors)
    return query


def _parse_fields(route: str, table: Table, fields: Any, errors: list[tuple[int, str]]) -> list[str] | None:
    if fields is None:
        return None
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        errors.append((ERR_FORMAT, "'fields' must be a list of field names."))
        return None
    known = set(table.columns) | {f.name_partner for f in RESOURCES[route].references if f.name_partner}
    errors += [(ERR_FORMAT, f"Unknown field '{f}' for '{route}'.") for f in fields if f not in known]
    return fields


def _parse_order(route: str, table: Table, orders: list[Any], errors: list[tuple[int, str]]) -> list[tuple[str, bool]]:
    parsed = []
    for order in orders:
        if not isinstance(order, dict) or order.get("name") not in table.position:
            errors.append((ERR_FORMAT, f"Unknown orderBy field {order!r} for '{route}'."))
            continue
        direction = str(order.get("direction", "asc")).lower()
        if direction not in ("asc", "desc"):
            errors.append((ERR_FORMAT, "'direction' must be 'asc' or 'desc'."))
        parsed.append((order["name"], direction == "desc"))
    return parsed


def _parse_conditions(
    route: str, table: Table, conditions: list[Any], errors: list[tuple[int, str]]
) -> list[tuple[str, str, Any]]:
    parsed = []
    for condition in conditions:
        if not isinstance(condition, dict) or not isinstance(condition.get("name"), str):
            errors.append((ERR_FORMAT, "Each search condition needs a 'name', an 'operator' and a 'value'."))
            continue
        name, operator = condition["name"], condition.get("operator", "eq")
        if name not in table.position:
            errors.append((ERR_FORMAT, f"Unknown search field '{name}' for '{route}'."))
        elif operator not in OPERATORS:
            known = ", ".join(sorted(OPERATORS))
            errors.append((ERR_FORMAT, f"Unknown search operator '{operator}'; use one of {known}."))
        elif operator in ("in", "notIn") and not isinstance(condition.get("value"), list):
            errors.append((ERR_FORMAT, f"Operator '{operator}' needs a list value."))
        else:
            value = condition.get("value", True if operator == "isNull" else None)
            ok, value = _typed(RESOURCES[route].field(name), operator, value)
            if ok:
                parsed.append((name, operator, value))
            else:
                errors.append((ERR_FORMAT, f"The value of search field '{name}' does not fit its type."))
    return parsed


def _typed(field: FieldSpec | None, operator: str, value: Any) -> tuple[bool, Any]:
    """Numbers and booleans given as text (`"5"`, `"true"`) compare as their field's type."""
    if field is None or field.type not in ("int", "float", "bool") or operator in TEXT_OPERATORS:
        return True, value
    if operator in ("in", "notIn"):
        results = [coerce(field, item) for item in value]
        return all(ok for ok, _ in results), [item for _, item in results]
    return coerce(field, value)


def parse_pagination(raw: Any, options: SearchOptions, errors: list[tuple[int, str]]) -> tuple[int, int] | None:
    if not isinstance(raw, dict):
        errors.append((ERR_FORMAT, "'pagination' must be an object with pageNumber and pageSize."))
        return None
    number, size = raw.get("pageNumber", 1), raw.get("pageSize", 20)
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        errors.append((ERR_FORMAT, "'pageNumber' must be a whole number from 1."))
        return None
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= options.top_max:
        errors.append((ERR_FORMAT, f"'pageSize' must be a whole number from 1 to {options.top_max}."))
        return None
    return number, size


def _list(raw: dict[str, Any], key: str, errors: list[tuple[int, str]]) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append((ERR_FORMAT, f"'{key}' must be a list."))
        return []
    return value


# Deep-search children: parent route -> child key -> (child route, foreign key to the parent).
CHILD_LINKS: dict[str, dict[str, tuple[str, str]]] = {
    "Invoice": {
        "invoiceItems": ("Invoice/Item", "invoiceId"),
        "taxSummary": ("Invoice/TaxSummary", "invoiceId"),
        "invoiceHistory": ("Invoice/History", "invoiceId"),
    },
    "Usage/Rate/Plan": {"usageRateGroups": ("Usage/Rate/Group", "usageRatePlanId")},
    "Usage/Rate/Group": {"rates": ("Usage/Rate", "usageRateGroupId")},
}


def execute(
    store: Store, route: str, query: Query, options: SearchOptions, restrict: Iterable[int] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """Run the query; returns the total match count and the rendered items of the requested slice."""
    table = store.tables[route]
    matched = _match(store, table, query.conditions, restrict)
    if query.order_by:
        rows = table.rows
        for name, descending in reversed(query.order_by):
            position = table.position[name]

            def sort_key(identity: int, position: int = position) -> tuple[int, Any]:
                return _sort_key(store, rows[identity][position])

            matched.sort(key=sort_key, reverse=descending)
    total = len(matched)
    if query.page is not None:
        number, size = query.page
        selected = matched[(number - 1) * size : number * size]
    else:
        selected = matched[: query.top or options.top_default]
    items = [render(store, route, identity, query.fields) for identity in selected]
    for key, child_query in query.children.items():
        child_route, foreign_key = CHILD_LINKS[route][key]
        child_table = store.tables[child_route]
        for identity, item in zip(selected, items, strict=True):
            ids = sorted(child_table.lookup(foreign_key, identity) or ())
            item[key] = execute(store, child_route, child_query, options, ids)[1]
    return total, items


def _match(
    store: Store, table: Table, conditions: list[tuple[str, str, Any]], restrict: Iterable[int] | None
) -> list[int]:
    start: set[int] | None = None
    rest = []
    for name, operator, value in conditions:
        found: set[int] | None = None
        if name == "identity" and operator in ("eq", "in"):
            wanted = value if operator == "in" else [value]
            found = {v for v in wanted if isinstance(v, int) and v in table.rows}
        elif operator == "eq" and value is not None:
            found = table.lookup(name, value)
        elif operator == "in" and table.has_index(name) and name != "identity":
            found = set().union(*((table.lookup(name, v) or set()) for v in value))
        if found is not None and (start is None or len(found) < len(start)):
            if start is not None:
                rest.append(("identity", "in", list(start)))
            start = found
        else:
            rest.append((name, operator, value))
    if restrict is not None:
        candidates: Iterable[int] = restrict if start is None else [i for i in restrict if i in start]
    elif start is not None:
        candidates = sorted(start)
    else:
        candidates = table.rows
    if not rest:
        return list(candidates)
    tests = [(table.position[name], _predicate(store, operator, value)) for name, operator, value in rest]
    rows = table.rows
    return [i for i in candidates if all(test(rows[i][position]) for position, test in tests)]


def _predicate(store: Store, operator: str, value: Any) -> Any:
    norm = store.normalise
    target = norm(value)
    if operator == "eq":
        return lambda v: norm(v) == target
    if operator == "notEq":
        return lambda v: norm(v) != target
    if operator in ("in", "notIn"):
        wanted = {norm(v) for v in value if not isinstance(v, dict | list)}
        return (lambda v: norm(v) in wanted) if operator == "in" else (lambda v: norm(v) not in wanted)
    if operator == "isNull":
        return lambda v: (v is None) == bool(value)
    if operator in ("like", "contains", "startsWith", "endsWith"):
        text = str(value)
        pattern = {
            "like": _like(text) if "%" in text or "_" in text else ".*" + re.escape(text) + ".*",
            "contains": ".*" + re.escape(text) + ".*",
            "startsWith": re.escape(text) + ".*",
            "endsWith": ".*" + re.escape(text),
        }[operator]
        regex = re.compile(pattern, re.IGNORECASE | re.DOTALL if store.case_insensitive else re.DOTALL)
        return lambda v: v is not None and regex.fullmatch(str(v)) is not None
    compare: Callable[[Any, Any], Any] = {
        "lt": operator_module.lt,
        "ltEq": operator_module.le,
        "gt": operator_module.gt,
        "gtEq": operator_module.ge,
    }[operator]

    def ordered(v: Any) -> bool:
        if v is None or target is None:
            return False
        try:
            return bool(compare(norm(v), target))
        except TypeError:
            return False

    return ordered


def _like(text: str) -> str:
    return "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in text)


def _sort_key(store: Store, value: Any) -> tuple[int, Any]:
    # SQL Server sorts NULL first ascending; mixed types fall back to their text.
    if value is None:
        return (0, 0)
    normalised = store.normalise(value)
    if isinstance(normalised, int | float) and not isinstance(normalised, bool):
        return (1, normalised)
    return (2, str(normalised))
