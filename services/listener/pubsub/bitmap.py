"""Pub/Sub's field bitmaps (`changedFields`, `nulledFields`, `diffFields`) decoded into field names.

Each entry is a hex string. `0x<hex>` is a big-endian integer whose bit i stands for top-level field i of the
event's Avro record (field 0 is the ChangeEventHeader). `<p>-0x<hex>` stands for the fields of the record nested
in top-level field p (a compound field such as BillingAddress), giving `BillingAddress.City` as CometD names it.
Whether Salesforce also sets a compound's own bit is not consistent, so a compound with component entries is named
by its components only; neither entry is assumed to come first. Bits past the end of the record name no field
the schema has and are ignored.

The layout is read from the schema's JSON (not from fastavro's parsed form, which replaces the second use of a
named type such as `com.sforce.eventbus.Address` by its name).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HEADER = "ChangeEventHeader"


class BitmapError(ValueError):
    """An entry that is not `0x<hex>` or `<index>-0x<hex>`, or names a field that is not a compound."""


@dataclass(frozen=True)
class Layout:
    """The top-level field names of an event record and, per compound's index, its components' names."""

    fields: tuple[str, ...]
    nested: Mapping[int, tuple[str, ...]]

    @classmethod
    def of(cls, schema: Mapping[str, Any]) -> Layout:
        named: dict[str, Mapping[str, Any]] = {}
        _register(schema, str(schema.get("namespace") or ""), named)
        fields = [str(f["name"]) for f in schema.get("fields", [])]
        nested: dict[int, tuple[str, ...]] = {}
        for index, definition in enumerate(schema.get("fields", [])):
            record = _record_in(definition.get("type"), str(schema.get("namespace") or ""), named)
            if record is not None and definition.get("name") != HEADER:
                nested[index] = tuple(str(f["name"]) for f in record.get("fields", []))
        return cls(tuple(fields), nested)


def _register(schema: Any, namespace: str, named: dict[str, Mapping[str, Any]]) -> None:
    """Every named record of `schema`, by full name and by short name."""
    if isinstance(schema, list):
        for branch in schema:
            _register(branch, namespace, named)
        return
    if not isinstance(schema, Mapping):
        return
    if schema.get("type") == "record":
        name = str(schema.get("name") or "")
        space = str(schema.get("namespace") or namespace)
        full = name if "." in name else f"{space}.{name}" if space else name
        named[full] = schema
        named.setdefault(name.rsplit(".", 1)[-1], schema)
        for definition in schema.get("fields", []):
            _register(definition.get("type"), space, named)
    elif isinstance(schema.get("type"), list | dict):
        _register(schema["type"], namespace, named)


def _record_in(kind: Any, namespace: str, named: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The record a field's type holds: itself, a union's first record branch, or a named reference."""
    branches = kind if isinstance(kind, list) else [kind]
    for branch in branches:
        if isinstance(branch, Mapping) and branch.get("type") == "record":
            return branch
        if isinstance(branch, str) and branch not in _PRIMITIVES:
            found = named.get(branch) or named.get(f"{namespace}.{branch}")
            if found is not None:
                return found
    return None


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def _bits(text: str) -> Iterable[int]:
    if not text.lower().startswith("0x"):
        raise BitmapError(f"{text!r} is not a 0x hex bitmap")
    try:
        value = int(text[2:], 16) if len(text) > 2 else 0
    except ValueError:
        raise BitmapError(f"{text!r} is not a 0x hex bitmap") from None
    index = 0
    while value:
        if value & 1:
            yield index
        value >>= 1
        index += 1


def decode(entries: Sequence[str], layout: Layout) -> list[str]:
    """The field names `entries` stand for, in record order (a compound's components at its place)."""
    top: set[int] = set()
    parts: dict[int, set[int]] = {}
    for entry in entries:
        if not isinstance(entry, str):
            raise BitmapError(f"{entry!r} is not a string")
        head, dash, tail = entry.partition("-")
        if not dash:
            top.update(_bits(entry))
            continue
        if not head.isdigit():
            raise BitmapError(f"{entry!r}: {head!r} is not a field index")
        parent = int(head)
        if parent not in layout.nested:
            raise BitmapError(f"{entry!r}: field {parent} of the record is not a compound field")
        parts.setdefault(parent, set()).update(_bits(tail))
    names: list[str] = []
    for index in sorted(top | set(parts)):
        if index == 0 or index >= len(layout.fields):
            continue  # the header itself, or past the record's end
        if index in parts:
            components = layout.nested[index]
            names.extend(f"{layout.fields[index]}.{components[j]}" for j in sorted(parts[index]) if j < len(components))
        else:
            names.append(layout.fields[index])
    return names
