"""Change events as the Pub/Sub API carries them: an Avro schema per sObject, raw Avro datums, hex bitmaps.

The schema of an entity's change event (`avro_schema`), whose conventions the sfls client shares:
- A record `<Entity>ChangeEvent` in namespace `com.sforce.eventbus`. Field 0 is `ChangeEventHeader`, a record
  of entityName, recordIds (array of string), changeType (enum `ChangeType`), changeOrigin, transactionKey,
  sequenceNumber (int), commitTimestamp and commitNumber (long), commitUser, nulledFields, diffFields and
  changedFields (arrays of string); header fields are not nullable.
- Then the object's fields in `ObjectDef.fields` order, without Id, IsDeleted, SystemModstamp and calculated
  fields (what the CometD body leaves out too). Each is `["null", T]` with default null: T is string for text,
  picklists, ids, references and dates (`YYYY-MM-DD`), boolean, double (double/currency/percent), int, and long
  for datetimes (epoch milliseconds, with `"doc": "<Field>:DateTime"`).
- A compound field appears once, where its first component would be, as `["null", <record>]` whose fields are
  its components in order (each `["null", T]`, default null). The record is named after the compound type:
  `Address` for `*Address`, `PersonName` for `Name`, else the compound's own name; a second compound of the
  same shape in one schema refers to the first by its full name (`com.sforce.eventbus.Address`).

A schema id is the base64url (unpadded) of the first 16 bytes of sha256 over the canonical schema JSON
(`json.dumps(schema, sort_keys=True, separators=(",", ":"))`): 22 characters, new whenever a field is added.

Datums (`encode`) come from the CometD-shaped payload: unchanged fields null; changedFields, nulledFields
(explicit nulls of an UPDATE) and diffFields (`{"diff": text}` values, carried as the text) become bitmaps:
element 0 `0x<HEX>` over the top-level fields (bit i = field i; upper case, whole bytes; left out when no
bit is set), then `<p>-0x<HEX>` over the nested record of the compound at top-level index p (whose own
top-level bit is not set). DELETE and GAP_* events carry the header only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import fastavro

from devstack.salesforce.schema import FieldDef, ObjectDef

NAMESPACE = "com.sforce.eventbus"
CHANGE_TYPES = (
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
)
HEADER_ONLY = {"DELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"}
EXCLUDED = {"Id", "IsDeleted", "SystemModstamp"}
_STRINGS = ("entityName", "changeOrigin", "transactionKey", "commitUser")
_ARRAY = {"type": "array", "items": "string"}
HEADER_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ChangeEventHeader",
    "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": _ARRAY},
        {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "symbols": list(CHANGE_TYPES)}},
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": _ARRAY},
        {"name": "diffFields", "type": _ARRAY},
        {"name": "changedFields", "type": _ARRAY},
    ],
}
_PRIMITIVES = {
    "boolean": "boolean",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "int": "int",
    "datetime": "long",
}


class EncodeError(ValueError):
    """A CometD-shaped message that does not fit the entity's Avro schema."""


def avro_type(definition: FieldDef) -> str:
    return _PRIMITIVES.get(definition.type, "string")


def record_name(compound: str) -> str:
    if compound.endswith("Address"):
        return "Address"
    return "PersonName" if compound == "Name" else compound


def _field(name: str, kind: Any, datetime_doc: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "type": ["null", kind], "default": None}
    if datetime_doc:
        spec["doc"] = f"{name}:DateTime"
    return spec


def avro_schema(obj: ObjectDef) -> dict[str, Any]:
    """The change event schema of `obj` (conventions in the module docstring)."""
    fields: list[dict[str, Any]] = [{"name": "ChangeEventHeader", "type": HEADER_SCHEMA}]
    defined: dict[str, list[dict[str, Any]]] = {}
    compounds = obj.compounds
    for name, definition in obj.fields.items():
        if name in EXCLUDED or definition.calculated:
            continue
        if not definition.compound:
            fields.append(_field(name, avro_type(definition), definition.type == "datetime"))
            continue
        compound = definition.compound
        if any(f["name"] == compound for f in fields):
            continue
        parts = [_field(str(c.component), avro_type(c), c.type == "datetime") for c in compounds[compound]]
        type_name = record_name(compound)
        if defined.get(type_name) == parts:
            fields.append(_field(compound, f"{NAMESPACE}.{type_name}"))
            continue
        if type_name in defined:  # same name, other shape: a name of its own
            type_name = f"{type_name}_{compound}"
        defined[type_name] = parts
        fields.append(_field(compound, {"type": "record", "name": type_name, "fields": parts}))
    return {"type": "record", "name": f"{obj.name}ChangeEvent", "namespace": NAMESPACE, "fields": fields}


def schema_id_of(schema: dict[str, Any]) -> str:
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()[:16]).decode().rstrip("=")


@dataclass(frozen=True)
class Compound:
    index: int
    kinds: dict[str, str]  # component -> Avro type, in record order
    bits: dict[str, int]  # component -> bit in the nested bitmap


@dataclass(frozen=True)
class Layout:
    """One issued schema with what encoding needs: top-level positions and value types."""

    entity: str
    schema_id: str
    schema_json: str
    parsed: Any
    index: dict[str, int]  # top-level field -> position (0 is the header)
    kinds: dict[str, str]  # plain top-level field -> Avro type
    compounds: dict[str, Compound] = field(default_factory=dict)


def _layout(obj: ObjectDef) -> Layout:
    schema = avro_schema(obj)
    schema_json = json.dumps(schema, separators=(",", ":"))
    index: dict[str, int] = {}
    kinds: dict[str, str] = {}
    compounds: dict[str, Compound] = {}
    named: dict[str, Compound] = {}  # full record name -> the first compound of that record
    for position, spec in enumerate(schema["fields"]):
        index[spec["name"]] = position
        if position == 0:
            continue
        branch = spec["type"][1]
        if isinstance(branch, str) and branch in named:
            first = named[branch]
            compounds[spec["name"]] = Compound(position, first.kinds, first.bits)
        elif isinstance(branch, dict):
            parts = branch["fields"]
            compound = Compound(
                position, {p["name"]: p["type"][1] for p in parts}, {p["name"]: i for i, p in enumerate(parts)}
            )
            compounds[spec["name"]] = named[f"{NAMESPACE}.{branch['name']}"] = compound
        else:
            kinds[spec["name"]] = branch
    parsed = fastavro.parse_schema(json.loads(schema_json))
    return Layout(obj.name, schema_id_of(schema), schema_json, parsed, index, kinds, compounds)


class Registry:
    """Every schema ever issued, by id; the current one of an object is found by its field names."""

    def __init__(self) -> None:
        self.by_id: dict[str, Layout] = {}
        self._by_fields: dict[tuple[str, tuple[str, ...]], Layout] = {}

    def current(self, obj: ObjectDef) -> Layout:
        key = (obj.name, tuple(obj.fields))
        layout = self._by_fields.get(key)
        if layout is None:
            layout = _layout(obj)
            self._by_fields[key] = layout
            self.by_id.setdefault(layout.schema_id, layout)
        return layout


def bitmap(bits: Iterable[int]) -> str:
    """`0x` + the upper-case hex of the big-endian integer with those bits set, padded to whole bytes."""
    value = 0
    for bit in bits:
        value |= 1 << bit
    text = format(value, "X")
    return "0x" + ("0" + text if len(text) % 2 else text)


class _Bits:
    """Top-level bits and nested bits per compound index, rendered as the header's string array."""

    def __init__(self) -> None:
        self.top: set[int] = set()
        self.nested: dict[int, set[int]] = {}

    def render(self) -> list[str]:
        out = [bitmap(self.top)] if self.top else []
        return out + [f"{p}-{bitmap(bits)}" for p, bits in sorted(self.nested.items()) if bits]


def _epoch_ms(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        raise EncodeError(f"not a datetime: {value!r}") from None


def _value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "long":
        return _epoch_ms(value)
    if kind == "double" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class _Datum:
    """One event's record datum and its three bitmaps, filled from the CometD payload."""

    def __init__(self, layout: Layout, nulls_count: bool) -> None:
        self.layout = layout
        self.nulls_count = nulls_count
        self.values: dict[str, Any] = dict.fromkeys(list(layout.index)[1:])
        self.nulled = _Bits()
        self.diff = _Bits()

    def _one(self, kind: str, value: Any, top: int, nested: int | None) -> Any:
        target = None
        if isinstance(value, dict):
            if set(value) != {"diff"} or not isinstance(value["diff"], str):
                raise EncodeError("an object where a plain value belongs")
            target, value = self.diff, value["diff"]
        elif value is None and self.nulls_count:
            target = self.nulled
        if target is not None and nested is None:
            target.top.add(top)
        elif target is not None and nested is not None:
            target.nested.setdefault(top, set()).add(nested)
        return _value(kind, value)

    def put(self, name: str, value: Any) -> None:
        layout = self.layout
        if name in layout.kinds:
            self.values[name] = self._one(layout.kinds[name], value, layout.index[name], None)
            return
        compound = layout.compounds.get(name)
        if compound is None:
            raise EncodeError(f"{name} is not a field of {layout.entity}ChangeEvent")
        if value is None:
            return
        if not isinstance(value, dict):
            raise EncodeError(f"{name} is a compound field; its value must be an object")
        record: dict[str, Any] = dict.fromkeys(compound.kinds)
        for part, part_value in value.items():
            if part not in compound.kinds:
                raise EncodeError(f"{part} is not a component of {name}")
            record[part] = self._one(compound.kinds[part], part_value, compound.index, compound.bits[part])
        self.values[name] = record


def changed_bitmaps(layout: Layout, names: Any) -> list[str]:
    """CometD changedFields names (`Name`, `BillingAddress.City`) as Pub/Sub bitmaps."""
    if not isinstance(names, list):
        raise EncodeError("changedFields must be a list")
    bits = _Bits()
    for name in names:
        parent, _, part = str(name).partition(".")
        compound = layout.compounds.get(parent)
        if part and compound is not None and part in compound.bits:
            bits.nested.setdefault(compound.index, set()).add(compound.bits[part])
        elif not part and parent in layout.index:
            bits.top.add(layout.index[parent])
        else:
            raise EncodeError(f"changed field {name!r} is not in the schema")
    return bits.render()


def _header(layout: Layout, header: Any) -> tuple[dict[str, Any], str]:
    if not isinstance(header, dict):
        raise EncodeError("the payload has no ChangeEventHeader")
    change_type = header.get("changeType")
    if change_type not in CHANGE_TYPES:
        raise EncodeError(f"changeType {change_type!r} is not a ChangeType")
    if header.get("entityName") != layout.entity:
        raise EncodeError(f"entityName {header.get('entityName')!r} is not {layout.entity}")
    missing = [
        k for k in (*_STRINGS, "recordIds", "sequenceNumber", "commitTimestamp", "commitNumber") if k not in header
    ]
    if missing:
        raise EncodeError(f"the header lacks {missing}")
    datum = {k: header[k] for k in (*_STRINGS, "recordIds", "sequenceNumber", "commitTimestamp", "commitNumber")}
    datum["changeType"] = change_type
    datum["changedFields"] = changed_bitmaps(layout, header.get("changedFields", []))
    return datum, str(change_type)


def encode(layout: Layout, payload: Any) -> bytes:
    """The raw Avro binary (no container header) of a CometD-shaped payload; EncodeError if it does not fit."""
    if not isinstance(payload, dict):
        raise EncodeError("the payload is not an object")
    header, change_type = _header(layout, payload.get("ChangeEventHeader"))
    datum = _Datum(layout, nulls_count=change_type == "UPDATE")
    if change_type not in HEADER_ONLY:
        for name, value in payload.items():
            if name != "ChangeEventHeader":
                datum.put(name, value)
    header["nulledFields"] = datum.nulled.render()
    header["diffFields"] = datum.diff.render()
    buffer = io.BytesIO()
    try:
        fastavro.schemaless_writer(buffer, layout.parsed, {"ChangeEventHeader": header, **datum.values})
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
        raise EncodeError(str(error)) from None
    return buffer.getvalue()
