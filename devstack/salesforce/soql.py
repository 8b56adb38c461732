"""The SOQL subset sfls uses: parse once into a `Query` (soql_parser.py), then run it against the store.

Supported: `SELECT` field lists (relationship paths like `Account.Name`, `Account.Owner.Name`,
`Request__r.Request_Id__c`, compound address fields, and parent-to-child subqueries such as
`(SELECT Id FROM Request_Error_Logs__r WHERE ... ORDER BY ... LIMIT n)` over a child relationship of
the schema, answered as `{"totalSize", "done", "records"}` or null when there are no children) or
`COUNT()`; `FROM` one object; `WHERE` with `=`, `!=`, `<>`, `<`,
`<=`, `>`, `>=`, `IN (...)`, `NOT IN (...)`, `LIKE`, `AND`, `OR`, `NOT`, parentheses; literals:
strings, numbers, true/false/null, dates, datetimes and TODAY/YESTERDAY/TOMORROW/LAST_N_DAYS:n;
`ORDER BY` (ASC/DESC, NULLS FIRST/LAST), `LIMIT`, `OFFSET`.

Errors carry Salesforce's codes (MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE,
INVALID_QUERY_FILTER_OPERATOR) and its caret-and-position message layout. Text compares
case-insensitively, as in Salesforce. `Id =`/`Id IN` and unique-field equality use the indexes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from devstack.salesforce.soql_parser import TEXT_TYPES, Cond, Path, Query, Range, SubQuery, Token, _Parser, parse
from devstack.salesforce.store import Store

__all__ = ["Cond", "Path", "Query", "Range", "SubQuery", "Token", "_Parser", "execute", "parse"]


# ---- evaluation ---------------------------------------------------------------------------------
def _resolve(store: Store, record: dict[str, Any] | None, path: Path) -> Any:
    for hop in path.hops:
        if record is None:
            return None
        target_id = record.get(hop.name)
        found = store.find(target_id) if target_id else None
        record = found[1] if found else None
    if record is None:
        return None
    if path.field.type == "address":
        return _address(record, path.field.name)
    return record.get(path.field.name)


def _address(record: dict[str, Any], compound: str) -> dict[str, Any] | None:
    prefix = compound.removesuffix("Address")
    parts = {p: record.get(f"{prefix}{p}") for p in ("Street", "City", "State", "PostalCode", "Country")}
    if all(v is None for v in parts.values()):
        return None
    return {
        "city": parts["City"],
        "country": parts["Country"],
        "geocodeAccuracy": None,
        "latitude": None,
        "longitude": None,
        "postalCode": parts["PostalCode"],
        "state": parts["State"],
        "street": parts["Street"],
    }


def _norm(kind: str, value: Any) -> Any:
    return value.lower() if kind in TEXT_TYPES and isinstance(value, str) else value


def _compare(op: str, kind: str, actual: Any, expected: Any) -> bool:
    if isinstance(expected, Range):
        if actual is None:
            return False
        return bool(
            {
                "=": expected.start <= actual < expected.end,
                "!=": not (expected.start <= actual < expected.end),
                "<": actual < expected.start,
                "<=": actual < expected.end,
                ">": actual >= expected.end,
                ">=": actual >= expected.start,
            }[op]
        )
    if op == "=":
        return bool(_norm(kind, actual) == _norm(kind, expected))
    if op == "!=":
        return bool(_norm(kind, actual) != _norm(kind, expected))
    if actual is None or expected is None:
        return False
    a, b = _norm(kind, actual), _norm(kind, expected)
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def _matches(store: Store, record: dict[str, Any], cond: Cond) -> bool:
    if cond.op == "AND":
        return all(_matches(store, record, c) for c in cond.children)
    if cond.op == "OR":
        return any(_matches(store, record, c) for c in cond.children)
    if cond.op == "NOT":
        return not _matches(store, record, cond.children[0])
    assert cond.path is not None
    actual = _resolve(store, record, cond.path)
    kind = cond.path.field.type
    if cond.op in {"IN", "NOT IN"}:
        found = any(_compare("=", kind, actual, v) for v in cond.value)
        return found if cond.op == "IN" else (not found and actual is not None)
    if cond.op == "LIKE":
        return isinstance(actual, str) and bool(cond.value.match(actual))
    return _compare(cond.op, kind, actual, cond.value)


def _candidates(store: Store, query: Query, cond: Cond | None) -> list[str] | None:
    """Record ids an indexed condition narrows the scan to (None: scan everything)."""
    if cond is not None and cond.op == "AND":
        found = (_candidates(store, query, child) for child in cond.children)
        return next((ids for ids in found if ids is not None), None)
    if cond is None or cond.op not in {"=", "IN"} or cond.path is None or cond.path.hops:
        return None
    values = cond.value if cond.op == "IN" else [cond.value]
    definition = cond.path.field
    if definition.name == "Id":
        return [v for v in values if isinstance(v, str)]
    if definition.name in {f.name for f in query.obj.external_id_fields}:
        return [i for v in values if v is not None and (i := store.by_unique(query.obj, definition.name, v))]
    return store.by_parent(query.obj, definition.name, values)


def _project(store: Store, query: Query, record: dict[str, Any], version: str) -> dict[str, Any]:
    url = f"/services/data/v{version}/sobjects/{query.obj.name}/{record['Id']}"
    out: dict[str, Any] = {"attributes": {"type": query.obj.name, "url": url}}
    for path in query.paths or []:
        target = out
        current: dict[str, Any] | None = record
        for hop in path.hops:
            name = hop.relationship_name or hop.name
            target_id = current.get(hop.name) if current else None
            found = store.find(target_id) if target_id else None
            if found is None:
                target[name] = None
                current = None
                break
            if not isinstance(target.get(name), dict):
                hop_url = f"/services/data/v{version}/sobjects/{found[0].name}/{found[1]['Id']}"
                target[name] = {"attributes": {"type": found[0].name, "url": hop_url}}
            target = target[name]
            current = found[1]
        else:
            assert current is not None
            target[path.field.name] = (
                _address(current, path.field.name) if path.field.type == "address" else current.get(path.field.name)
            )
    return out


def _children(
    store: Store, sub: SubQuery, parent_id: str, *, include_deleted: bool, version: str
) -> dict[str, Any] | None:
    """A subquery's answer for one parent record: its matching children, or None when there are none."""
    table = store.records.get(sub.query.obj.name, {})
    ids = store.by_parent(sub.query.obj, sub.reference.name, [parent_id])
    if ids is None:
        source = [r for r in table.values() if r.get(sub.reference.name) == parent_id]
    else:
        source = [table[i] for i in ids if i in table and table[i].get(sub.reference.name) == parent_id]
    rows = _select(store, sub.query, source, include_deleted=include_deleted)
    if not rows:
        return None
    return {"totalSize": len(rows), "done": True, "records": [_project(store, sub.query, r, version) for r in rows]}


def execute(store: Store, query: Query, *, include_deleted: bool, version: str) -> tuple[int, list[dict[str, Any]]]:
    """Run the query: (totalSize, projected records)."""
    table = store.records.get(query.obj.name, {})
    ids = _candidates(store, query, query.where)
    source = table.values() if ids is None else [table[i] for i in dict.fromkeys(ids) if i in table]
    rows = _select(store, query, source, include_deleted=include_deleted)
    if query.paths is None:
        return len(rows), []
    projected = []
    for row in rows:
        out = _project(store, query, row, version)
        for sub in query.subqueries:
            out[sub.name] = _children(store, sub, row["Id"], include_deleted=include_deleted, version=version)
        projected.append(out)
    return len(rows), projected


def _select(
    store: Store, query: Query, source: Iterable[dict[str, Any]], *, include_deleted: bool
) -> list[dict[str, Any]]:
    """The source records the query's WHERE keeps, in its order, after its OFFSET and LIMIT."""
    rows = [
        r
        for r in source
        if (include_deleted or not r["IsDeleted"]) and (query.where is None or _matches(store, r, query.where))
    ]
    for path, descending, nulls_first in reversed(query.order):
        kind = path.field.type
        keyed = [(_norm(kind, _resolve(store, r, path)), r) for r in rows]
        present = sorted((k for k in keyed if k[0] is not None), key=lambda k: k[0], reverse=descending)
        absent = [k for k in keyed if k[0] is None]
        rows = [r for _, r in (absent + present if nulls_first else present + absent)]
    rows = rows[query.offset :]
    if query.limit is not None:
        rows = rows[: query.limit]
    return rows
