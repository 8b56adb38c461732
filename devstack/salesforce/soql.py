"""The SOQL subset sfls uses: parse once into a `Query`, then run it against the store.

Supported: `SELECT` field lists (relationship paths like `Account.Name`, `Account.Owner.Name`,
compound address fields) or `COUNT()`; `FROM` one object; `WHERE` with `=`, `!=`, `<>`, `<`,
`<=`, `>`, `>=`, `IN (...)`, `NOT IN (...)`, `LIKE`, `AND`, `OR`, `NOT`, parentheses; literals:
strings, numbers, true/false/null, dates, datetimes and TODAY/YESTERDAY/TOMORROW/LAST_N_DAYS:n;
`ORDER BY` (ASC/DESC, NULLS FIRST/LAST), `LIMIT`, `OFFSET`.

Errors carry Salesforce's codes (MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE,
INVALID_QUERY_FILTER_OPERATOR) and its caret-and-position message layout. Text compares
case-insensitively, as in Salesforce. `Id =`/`Id IN` and unique-field equality use the indexes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from devstack.salesforce.base import ApiError, is_id, parse_datetime, to18
from devstack.salesforce.schema import FieldDef, ObjectDef
from devstack.salesforce.store import Store

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2}(?![\dT:]))
    |(?P<number>-?\d+(?:\.\d+)?(?![\w.]))
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<op>!=|<>|<=|>=|=|<|>)
    |(?P<punct>[(),:])
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)""",
    re.VERBOSE,
)
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC", "NULLS"}
_KEYWORDS |= {"FIRST", "LAST", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE", "COUNT"}
_DATE_WORDS = {"TODAY", "YESTERDAY", "TOMORROW", "LAST_N_DAYS", "NEXT_N_DAYS"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
_TEXT_TYPES = {"string", "textarea", "picklist", "email", "phone", "url"}


@dataclass
class Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "ident" else ""


@dataclass
class Path:
    """A field path: the reference hops, then the final field."""

    hops: list[FieldDef]
    field: FieldDef

    @property
    def dotted(self) -> str:
        return ".".join([h.relationship_name or h.name for h in self.hops] + [self.field.name])


@dataclass(frozen=True)
class Range:
    """A date literal such as TODAY: [start, end) in the field's own format."""

    start: str
    end: str


@dataclass
class Cond:
    op: str  # =, !=, <, <=, >, >=, IN, NOT IN, LIKE, AND, OR, NOT
    path: Path | None = None
    value: Any = None
    children: list[Cond] = field(default_factory=list)


@dataclass
class Query:
    obj: ObjectDef
    paths: list[Path] | None  # None for COUNT()
    where: Cond | None = None
    order: list[tuple[Path, bool, bool]] = field(default_factory=list)  # path, descending, nulls first
    limit: int | None = None
    offset: int = 0


class _Parser:
    def __init__(self, text: str, store: Store) -> None:
        self.text = text
        self.store = store
        self.tokens = self._tokenize(text)
        self.index = 0

    def error(self, code: str, message: str, pos: int | None = None) -> ApiError:
        pos = len(self.text) if pos is None else pos
        line_start = self.text.rfind("\n", 0, pos) + 1
        line_end = self.text.find("\n", pos)
        line = self.text[line_start : line_end if line_end >= 0 else len(self.text)]
        row = self.text.count("\n", 0, pos) + 1
        column = pos - line_start + 1
        return ApiError(400, code, f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{message}")

    def _tokenize(self, text: str) -> list[Token]:
        tokens: list[Token] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match:
                raise self.error("MALFORMED_QUERY", f"unexpected token: '{text[pos:].split(maxsplit=1)[0]}'", pos)
            kind = match.lastgroup or ""
            if kind != "ws":
                tokens.append(Token(kind, match.group(), pos))
            pos = match.end()
        return tokens

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.error("MALFORMED_QUERY", "unexpected token: <EOF>")
        self.index += 1
        return token

    def accept(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and (token.upper in words or (token.kind in {"punct", "op"} and token.text in words)):
            self.index += 1
            return True
        return False

    def expect(self, word: str) -> Token:
        token = self.next()
        if word not in {token.upper, token.text}:
            raise self.error("MALFORMED_QUERY", f"unexpected token: '{token.text}'", token.pos)
        return token

    # ---- grammar -----------------------------------------------------------------------------
    def parse(self) -> Query:
        self.expect("SELECT")
        raw_fields = self.select_list()
        self.expect("FROM")
        obj_token = self.next()
        obj = self.store.schema.get(obj_token.text) if obj_token.kind == "ident" else None
        if obj is None:
            raise self.error(
                "INVALID_TYPE",
                f"sObject type '{obj_token.text}' is not supported. If you are attempting to use a custom object, "
                "be sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
                "call for the appropriate names.",
                obj_token.pos,
            )
        query = Query(obj, None if raw_fields is None else self.select_paths(obj, raw_fields))
        if self.accept("WHERE"):
            query.where = self.disjunction(obj)
        if self.accept("ORDER"):
            self.expect("BY")
            query.order = self.order_by(obj)
        if self.accept("LIMIT"):
            query.limit = self.integer()
        if self.accept("OFFSET"):
            query.offset = self.integer()
        token = self.peek()
        if token is not None:
            raise self.error("MALFORMED_QUERY", f"unexpected token: '{token.text}'", token.pos)
        return query

    def select_list(self) -> list[Token] | None:
        """The selected field tokens, or None for COUNT()."""
        token = self.peek()
        if token is not None and token.upper == "COUNT":
            self.next()
            self.expect("(")
            self.expect(")")
            return None
        raw_fields: list[Token] = []
        while True:
            token = self.next()
            if token.kind != "ident" or token.upper in _KEYWORDS - {"COUNT", "FIRST", "LAST"}:
                raise self.error("MALFORMED_QUERY", f"unexpected token: '{token.text}'", token.pos)
            raw_fields.append(token)
            if not self.accept(","):
                return raw_fields

    def select_paths(self, obj: ObjectDef, raw_fields: list[Token]) -> list[Path]:
        paths: list[Path] = []
        seen: set[str] = set()
        for raw in raw_fields:
            path = self.path(obj, raw)
            if path.dotted.lower() in seen:
                raise self.error("MALFORMED_QUERY", f"duplicate field selected: {path.dotted}", raw.pos)
            seen.add(path.dotted.lower())
            paths.append(path)
        return paths

    def order_by(self, obj: ObjectDef) -> list[tuple[Path, bool, bool]]:
        order: list[tuple[Path, bool, bool]] = []
        while True:
            path = self.path(obj, self.next())
            descending = self.accept("DESC")
            if not descending:
                self.accept("ASC")
            nulls_first = not descending
            if self.accept("NULLS"):
                nulls_first = self.next().upper == "FIRST"
            order.append((path, descending, nulls_first))
            if not self.accept(","):
                return order

    def integer(self) -> int:
        token = self.next()
        if token.kind != "number" or not token.text.isdigit():
            raise self.error("MALFORMED_QUERY", f"unexpected token: '{token.text}'", token.pos)
        return int(token.text)

    def path(self, obj: ObjectDef, token: Token) -> Path:
        if token.kind != "ident":
            raise self.error("MALFORMED_QUERY", f"unexpected token: '{token.text}'", token.pos)
        parts = token.text.split(".")
        if len(parts) > 1 and parts[0].lower() == obj.name.lower():
            parts = parts[1:]  # SELECT Account.Name FROM Account is allowed
        hops: list[FieldDef] = []
        current = obj
        for part in parts[:-1]:
            hop = current.relationship(part)
            target = self.store.schema.get(hop.reference_to[0]) if hop is not None and hop.reference_to else None
            if hop is None or target is None:
                raise self.error(
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{part}' in field path. If you are attempting to use a custom "
                    "relationship, be sure to append the '__r' after the custom relationship name. Please reference "
                    "your WSDL or the describe call for the appropriate names.",
                    token.pos,
                )
            hops.append(hop)
            current = target
        final = current.field(parts[-1])
        if final is None:
            raise self.error(
                "INVALID_FIELD",
                f"No such column '{parts[-1]}' on entity '{current.name}'. If you are attempting to use a custom "
                "field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the "
                "describe call for the appropriate names.",
                token.pos,
            )
        return Path(hops, final)

    def disjunction(self, obj: ObjectDef) -> Cond:
        children = [self.conjunction(obj)]
        while self.accept("OR"):
            children.append(self.conjunction(obj))
        return children[0] if len(children) == 1 else Cond("OR", children=children)

    def conjunction(self, obj: ObjectDef) -> Cond:
        children = [self.negation(obj)]
        while self.accept("AND"):
            children.append(self.negation(obj))
        return children[0] if len(children) == 1 else Cond("AND", children=children)

    def negation(self, obj: ObjectDef) -> Cond:
        if self.accept("NOT"):
            return Cond("NOT", children=[self.negation(obj)])
        if self.accept("("):
            inner = self.disjunction(obj)
            self.expect(")")
            return inner
        return self.comparison(obj)

    def comparison(self, obj: ObjectDef) -> Cond:
        path = self.path(obj, self.next())
        token = self.next()
        if token.kind == "op":
            op = "!=" if token.text == "<>" else token.text
            value_token = self.peek()
            value = self.literal(path)
            if value is None and op not in {"=", "!="}:
                raise self.error(
                    "MALFORMED_QUERY", "null may only be used with = and !=", value_token.pos if value_token else None
                )
            return Cond(op, path, value)
        negate = token.upper == "NOT"
        if negate:
            token = self.next()
        if token.upper == "IN":
            self.expect("(")
            values = [self.literal(path)]
            while self.accept(","):
                values.append(self.literal(path))
            self.expect(")")
            return Cond("NOT IN" if negate else "IN", path, values)
        if token.upper == "LIKE" and not negate:
            pattern = self.next()
            if pattern.kind != "string":
                raise self.error("MALFORMED_QUERY", f"unexpected token: '{pattern.text}'", pattern.pos)
            text = _unquote(pattern.text)
            regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in text)
            return Cond("LIKE", path, re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL))
        raise self.error("MALFORMED_QUERY", f"unexpected token: '{token.text}'", token.pos)

    def literal(self, path: Path) -> Any:
        """A literal checked against the field's type, as Salesforce does before running the query."""
        token = self.next()
        kind = path.field.type
        if token.upper == "NULL":
            return None
        if kind in {"date", "datetime"}:
            return self.temporal(token, kind, path.field.name)
        if kind == "boolean" and token.upper in {"TRUE", "FALSE"}:
            return token.upper == "TRUE"
        if kind in {"double", "currency", "int"} and token.kind == "number":
            return float(token.text)
        if kind in {"boolean", "double", "currency", "int"}:
            raise self.wrong_type(token, path.field.name, "boolean" if kind == "boolean" else "double", quoted=False)
        if token.kind != "string":
            raise self.wrong_type(token, path.field.name, "string", quoted=True)
        text = _unquote(token.text)
        if kind in {"id", "reference"}:
            if not is_id(text):
                raise self.error("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {text}", token.pos)
            return to18(text)
        return text

    def temporal(self, token: Token, kind: str, name: str) -> Any:
        if token.upper in _DATE_WORDS:
            return self.date_range(token, kind)
        if kind == "date" and token.kind == "date":
            return token.text
        if kind == "datetime" and token.kind == "datetime":
            return parse_datetime(token.text)
        raise self.wrong_type(token, name, "dateTime" if kind == "datetime" else "date", quoted=False)

    def wrong_type(self, token: Token, name: str, expected: str, *, quoted: bool) -> ApiError:
        hint = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
        return self.error(
            "INVALID_QUERY_FILTER_OPERATOR",
            f"value of filter criterion for field '{name}' must be of type {expected} and {hint}",
            token.pos,
        )

    def date_range(self, token: Token, kind: str) -> Range:
        today = datetime.now(UTC).date()
        days = 0
        if token.upper in {"LAST_N_DAYS", "NEXT_N_DAYS"}:
            self.expect(":")
            days = self.integer()
        start, end = {
            "TODAY": (today, today + timedelta(days=1)),
            "YESTERDAY": (today - timedelta(days=1), today),
            "TOMORROW": (today + timedelta(days=1), today + timedelta(days=2)),
            "LAST_N_DAYS": (today - timedelta(days=days), today + timedelta(days=1)),
            "NEXT_N_DAYS": (today + timedelta(days=1), today + timedelta(days=days + 1)),
        }[token.upper]
        return Range(_day(start, kind), _day(end, kind))


def _day(day: date, kind: str) -> str:
    return day.isoformat() if kind == "date" else f"{day.isoformat()}T00:00:00.000+0000"


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])


def parse(text: str, store: Store) -> Query:
    """Parse SOQL against the store's schema; ApiError on anything Salesforce would refuse."""
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "MALFORMED_QUERY", "A query string is required")
    return _Parser(text, store).parse()


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
    return value.lower() if kind in _TEXT_TYPES and isinstance(value, str) else value


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


def execute(store: Store, query: Query, *, include_deleted: bool, version: str) -> tuple[int, list[dict[str, Any]]]:
    """Run the query: (totalSize, projected records)."""
    table = store.records.get(query.obj.name, {})
    ids = _candidates(store, query, query.where)
    source = table.values() if ids is None else [table[i] for i in dict.fromkeys(ids) if i in table]
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
    if query.paths is None:
        return len(rows), []
    return len(rows), [_project(store, query, r, version) for r in rows]
