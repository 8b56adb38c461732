"""LogiSense item -> Salesforce record, and the content hash that decides whether it is written.

The hash covers exactly what would be written (target object, every mapped field, every lookup),
so a change to an unmapped LogiSense field (its `updated` stamp, say) writes nothing, while a new
mapping or a new target rewrites every record once. It is stored on the record in the hash field;
the lander reads it back per batch and skips records whose stored hash equals the new one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from services.importer.entities import INVOICE_ACCOUNT_FIELD
from services.importer.model import Column, ImportEntity
from shared.errors import MappingError

HASH_LENGTH = 32
Key = int | str  # a record's external-id value: a LogiSense id, or a composite key (price book entries)


@dataclass(frozen=True)
class Prepared:
    """One item ready to land: its LogiSense id (or key), its Salesforce record (hash included) and the hash."""

    logisense_id: Key
    record: dict[str, Any]
    hash: str


def logisense_id(item: dict[str, Any]) -> int:
    identity = item.get("identity")
    if isinstance(identity, bool) or not isinstance(identity, int | str) or not str(identity).isdigit():
        raise MappingError(f"LogiSense item without a numeric identity: {str(item)[:200]}")
    return int(identity)


def _number(column: Column, value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    try:
        return float(value)
    except ValueError:
        raise MappingError(f"{column.logisense}={value!r} is not a number for {column.salesforce}") from None


def _text(_column: Column, value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


_CONVERTERS = {
    "boolean": lambda _column, value: bool(value),
    "double": _number,
    "int": _number,
    "string": _text,
    "textarea": _text,
    "picklist": _text,
}


def convert(column: Column, value: Any) -> Any:
    """A LogiSense value in the shape the Salesforce field type takes; None stays None (clears the field)."""
    if value is None:
        return None
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    converter = _CONVERTERS.get(column.type)
    return converter(column, value) if converter else value


def content_hash(sobject: str, record: dict[str, Any]) -> str:
    canonical = json.dumps([sobject, record], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def to_record(
    entity: ImportEntity,
    item: dict[str, Any],
    *,
    external_id_field: str,
    hash_field: str,
    account_id: str | None = None,
) -> Prepared:
    """Map one LogiSense item onto the entity's Salesforce object, lookups set by external id."""
    identity = logisense_id(item)
    record: dict[str, Any] = {external_id_field: str(identity)}
    for column in entity.columns:
        record[column.salesforce] = convert(column, item.get(column.logisense))
    for relation in entity.relations:
        parent = item.get(relation.logisense)
        if parent is None or parent == "":
            record[relation.salesforce] = None
        else:
            record[relation.relationship] = {external_id_field: str(parent)}
    if entity.name == "invoice":
        record[INVOICE_ACCOUNT_FIELD] = account_id
    digest = content_hash(entity.sobject, record)
    record[hash_field] = digest
    return Prepared(identity, record, digest)
