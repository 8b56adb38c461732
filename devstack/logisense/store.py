"""In-memory tables with hash indexes, compact rows, and an undo log for all-or-nothing writes.

Rows are tuples in column order (the resource's fields, then its custom fields), so a 100,000-item
catalogue costs tens of megabytes rather than hundreds. Every reference field and every field marked
`indexed` (names, `value` of contact points, custom fields such as `sfdcid`) has a hash index from
normalised value to identities, so lookups by identity, by parent and by the Salesforce id never
scan. Identities grow monotonically per table, and dict order is insertion order, so iterating a
table yields identity order without sorting.

String comparison follows SQL Server's default case-insensitive collation (INFERRED: LogiSense runs
on SQL Server); `case_insensitive` turns it off.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devstack.logisense.resources import RESOURCES, ResourceSpec

Row = tuple[Any, ...]

# Records without a `name` of their own are named after what they link (an emulator choice): a package
# service by its service, a package currency by its currency.
NAME_VIA = {"Package/Service": ("serviceId", "Service"), "Package/Currency": ("currencyId", "Currency")}


class Table:
    """One resource's rows, keyed by identity, with hash indexes on chosen columns."""

    def __init__(self, spec: ResourceSpec, custom: Iterable[str], normalise: Any) -> None:
        self.spec = spec
        self.base_columns = tuple(f.name for f in spec.fields)
        self.custom: list[str] = list(custom)
        self.columns: list[str] = [*self.base_columns, *self.custom]
        self.position = {name: i for i, name in enumerate(self.columns)}
        self.rows: dict[int, Row] = {}
        self.next_id = 1
        self._normalise = normalise
        indexed = [f.name for f in spec.fields if f.indexed or (f.ref is not None and f.name != "ownerId")]
        self.indexes: dict[str, dict[Any, set[int]]] = {name: {} for name in [*indexed, *self.custom]}

    # -- reading -------------------------------------------------------------------------------
    def __contains__(self, identity: object) -> bool:
        return identity in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, identity: int) -> dict[str, Any] | None:
        row = self.rows.get(identity)
        return None if row is None else dict(zip(self.columns, row, strict=True))

    def value(self, identity: int, column: str) -> Any:
        row = self.rows.get(identity)
        return None if row is None else row[self.position[column]]

    def ids(self) -> Iterator[int]:
        return iter(self.rows)

    def lookup(self, column: str, value: Any) -> set[int] | None:
        """Identities whose `column` equals `value`, or None when the column has no index."""
        index = self.indexes.get(column)
        if index is None:
            return None
        return index.get(self._normalise(value), set())

    def has_index(self, column: str) -> bool:
        return column in self.indexes or column == "identity"

    # -- writing -------------------------------------------------------------------------------
    def allocate(self) -> int:
        identity = self.next_id
        self.next_id += 1
        return identity

    def put(self, identity: int, record: dict[str, Any]) -> Row | None:
        """Insert or replace the row; returns the previous row (for the undo log)."""
        row = tuple(record.get(name) for name in self.columns)
        old = self.rows.get(identity)
        if old is not None:
            self._unindex(identity, old)
        self.rows[identity] = row
        self._index(identity, row)
        if identity >= self.next_id:
            self.next_id = identity + 1
        return old

    def remove(self, identity: int) -> Row | None:
        old = self.rows.pop(identity, None)
        if old is not None:
            self._unindex(identity, old)
        return old

    def restore(self, identity: int, row: Row | None) -> None:
        """Put a raw row back as it was (None: the row did not exist), keeping identity order."""
        current = self.rows.get(identity)
        if current is not None:
            self._unindex(identity, current)
        if row is None:
            self.rows.pop(identity, None)
            return
        needs_sort = current is None and bool(self.rows) and identity < next(reversed(self.rows))
        self.rows[identity] = row
        self._index(identity, row)
        if needs_sort:
            self.rows = dict(sorted(self.rows.items()))

    def add_custom_field(self, name: str) -> None:
        if name in self.position:
            return
        self.custom.append(name)
        self.columns.append(name)
        self.position[name] = len(self.columns) - 1
        self.rows = {identity: (*row, None) for identity, row in self.rows.items()}
        self.indexes[name] = {}

    def _index(self, identity: int, row: Row) -> None:
        for column, index in self.indexes.items():
            value = row[self.position[column]]
            if value is not None:
                index.setdefault(self._normalise(value), set()).add(identity)

    def _unindex(self, identity: int, row: Row) -> None:
        for column, index in self.indexes.items():
            value = row[self.position[column]]
            if value is None:
                continue
            key = self._normalise(value)
            bucket = index.get(key)
            if bucket is not None:
                bucket.discard(identity)
                if not bucket:
                    del index[key]


@dataclass
class Transaction:
    """An undo log: every change made through it can be rolled back as a whole."""

    store: Store
    undo: list[tuple[str, int, Row | None]] = field(default_factory=list)

    def put(self, route: str, identity: int, record: dict[str, Any]) -> None:
        old = self.store.tables[route].put(identity, record)
        self.undo.append((route, identity, old))

    def remove(self, route: str, identity: int) -> None:
        old = self.store.tables[route].remove(identity)
        if old is not None:
            self.undo.append((route, identity, old))

    def rollback(self) -> None:
        for route, identity, old in reversed(self.undo):
            self.store.tables[route].restore(identity, old)
        self.undo.clear()


class Store:
    """Every table, the custom field definitions and the emulator's clock."""

    def __init__(self, custom_fields: dict[str, Iterable[str]], *, case_insensitive: bool = True) -> None:
        self.case_insensitive = case_insensitive
        self.tables = {
            route: Table(spec, custom_fields.get(route, ()), self.normalise) for route, spec in RESOURCES.items()
        }
        self.clock_offset = 0.0

    def normalise(self, value: Any) -> Any:
        if isinstance(value, str) and self.case_insensitive:
            return value.casefold()
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def now(self) -> float:
        return time.time() + self.clock_offset

    def timestamp(self) -> str:
        return iso(self.now())

    def custom_fields(self, route: str) -> list[str]:
        return list(self.tables[route].custom)

    def begin(self) -> Transaction:
        return Transaction(self)

    def name_of(self, route: str, identity: Any) -> Any:
        """The `name` of the referenced record, for the read-only `xxxName` partners."""
        if identity is None:
            return None
        table = self.tables.get(route)
        if table is None or not isinstance(identity, int):
            return None
        if "name" not in table.position:
            via = NAME_VIA.get(route)
            return None if via is None else self.name_of(via[1], table.value(identity, via[0]))
        return table.value(identity, "name")


def iso(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds, as LogiSense prints dates: 2021-04-26T15:25:27.587Z."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
