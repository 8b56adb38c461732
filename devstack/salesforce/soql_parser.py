"""The SOQL parser: text into a `Query` (soql.py runs it), checked against the store's schema.

The grammar and the errors are those soql.py's docstring describes: Salesforce's codes and its
caret-and-position message layout. A parent-to-child subquery in the SELECT list is parsed once the FROM
object is known (its FROM names a child relationship of that object, `Schema.child_relationship`).
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
TEXT_TYPES = {"string", "textarea", "picklist", "email", "phone", "url"}


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
    subqueries: list[SubQuery] = field(default_factory=list)


@dataclass
class SubQuery:
    """A parent-to-child subquery: the child relationship's name, the child's reference, the child query."""

    name: str
    reference: FieldDef
    query: Query


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
        raw_fields, starts = self.select_list(nested=False)
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
        resume = self.index
        for start in starts:
            self.index = start
            query.subqueries.append(self.subquery(obj))
        self.index = resume
        self.clauses(query)
        token = self.peek()
        if token is not None:
            raise self.error("MALFORMED_QUERY", f"unexpected token: '{token.text}'", token.pos)
        return query

    def clauses(self, query: Query) -> None:
        """WHERE, ORDER BY, LIMIT and OFFSET, each optional."""
        obj = query.obj
        if self.accept("WHERE"):
            query.where = self.disjunction(obj)
        if self.accept("ORDER"):
            self.expect("BY")
            query.order = self.order_by(obj)
        if self.accept("LIMIT"):
            query.limit = self.integer()
        if self.accept("OFFSET"):
            query.offset = self.integer()

    def select_list(self, *, nested: bool) -> tuple[list[Token] | None, list[int]]:
        """The selected field tokens (None for COUNT()) and where each subquery's tokens start (after its '(')."""
        token = self.peek()
        if token is not None and token.upper == "COUNT" and not nested:
            self.next()
            self.expect("(")
            self.expect(")")
            return None, []
        raw_fields: list[Token] = []
        starts: list[int] = []
        while True:
            token = self.next()
            if token.kind == "punct" and token.text == "(" and not nested:
                starts.append(self.index)
                self.skip_parenthesis(token)
            elif token.kind != "ident" or token.upper in _KEYWORDS - {"COUNT", "FIRST", "LAST"}:
                raise self.error("MALFORMED_QUERY", f"unexpected token: '{token.text}'", token.pos)
            else:
                raw_fields.append(token)
            if not self.accept(","):
                return raw_fields, starts

    def skip_parenthesis(self, opening: Token) -> None:
        depth = 1
        while depth:
            token = self.peek()
            if token is None:
                raise self.error("MALFORMED_QUERY", "unexpected token: <EOF>", opening.pos)
            self.index += 1
            if token.kind == "punct" and token.text in "()":
                depth += 1 if token.text == "(" else -1

    def subquery(self, parent: ObjectDef) -> SubQuery:
        """`SELECT fields FROM ChildRelationship [WHERE] [ORDER BY] [LIMIT] [OFFSET])`, at the subquery's start."""
        self.expect("SELECT")
        raw_fields, _ = self.select_list(nested=True)
        self.expect("FROM")
        name = self.next()
        relation = self.store.schema.child_relationship(parent.name, name.text) if name.kind == "ident" else None
        if relation is None:
            raise self.error(
                "INVALID_TYPE",
                f"Didn't understand relationship '{name.text}' in FROM part of query call. If you are attempting to "
                "use a custom relationship, be sure to append the '__r' after the custom relationship name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
                name.pos,
            )
        child, reference = relation
        query = Query(child, self.select_paths(child, raw_fields or []))
        self.clauses(query)
        self.expect(")")
        return SubQuery(reference.child_relationship or name.text, reference, query)

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
