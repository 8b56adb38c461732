"""One Pub/Sub event -> the CDC message the pipeline reads: the same shape, names and values CometD delivers.

The payload is raw Avro (one datum, no container header) written with the schema its `schema_id` names. In it
every field of the record is present and an unchanged field is null, so null does not mean cleared: the header's
bitmaps say what changed (`changedFields`), what was cleared (`nulledFields`) and what came as a unified diff
(`diffFields`, the diff as a plain string). The message built here carries, like a CometD message:
- the changed fields only (all non-null fields when `changedFields` is empty: a create or undelete), a cleared
  field as an explicit null, a diff as `{"diff": "..."}`, compound fields nested (`BillingAddress: {City: ...}`);
- `changedFields` as names (`BillingAddress.City`), datetimes as `2024-04-09T20:26:27.000Z`;
- `data.event.replayId`: a number for metrics and event ids (`replay_number`), and `pubsubReplayId`, the opaque
  replay id (base64) that the checkpoint stores and a resubscribe sends back unchanged.
A payload that does not decode raises MalformedCdcError (`bad_avro`) with its position, so the pipeline
dead-letters the raw bytes and moves the checkpoint past it, as it does for a malformed CometD message.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fastavro

from services.listener.message import Decodable, MalformedCdcError
from services.listener.pubsub.bitmap import HEADER, BitmapError, Layout, decode

_NOT_IN_HEADER = ("nulledFields", "diffFields")


def replay_number(replay_id: bytes) -> int:
    """A number for an opaque replay id, for metrics and event ids only; never sent back, never compared.

    INFERRED: Salesforce's ids are 10 bytes whose first 8 are a big-endian counter; that counter is the number.
    """
    return int.from_bytes(replay_id[:8], "big")


def token(replay_id: bytes) -> str:
    """How an opaque replay id is stored (checkpoints, messages): base64."""
    return base64.b64encode(replay_id).decode()


def from_token(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def _is_datetime(definition: Mapping[str, Any], kind: Any) -> bool:
    """A `long` holding epoch milliseconds: Salesforce documents such fields as `<Name>:DateTime`."""
    branches = kind if isinstance(kind, list) else [kind]
    for branch in branches:
        if branch == "long" and "datetime" in str(definition.get("doc") or "").lower():
            return True
        if isinstance(branch, Mapping) and branch.get("logicalType") == "timestamp-millis":
            return True
    return False


@dataclass(frozen=True)
class Schema:
    """An event schema by id: parsed for decoding, its bitmap layout, and which fields are datetimes."""

    schema_id: str
    parsed: Any = field(repr=False)
    layout: Layout
    datetimes: frozenset[str]

    @classmethod
    def from_json(cls, schema_id: str, text: str) -> Schema:
        document = json.loads(text)
        layout = Layout.of(document)
        datetimes: set[str] = set()
        for index, definition in enumerate(document.get("fields", [])):
            name = str(definition["name"])
            if _is_datetime(definition, definition.get("type")):
                datetimes.add(name)
            for branch in definition.get("type") if isinstance(definition.get("type"), list) else []:
                if isinstance(branch, Mapping) and branch.get("type") == "record" and index in layout.nested:
                    datetimes.update(
                        f"{name}.{part['name']}"
                        for part in branch.get("fields", [])
                        if _is_datetime(part, part["type"])
                    )
        return cls(schema_id, fastavro.parse_schema(document), layout, frozenset(datetimes))


def _datetime(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(value // 1000)) + f".{value % 1000:03d}Z"
    return value


@dataclass(frozen=True)
class PubSubEvent(Decodable):
    """One received event: where it is in its topic, and its undecoded payload (decoded in the pipeline's thread)."""

    topic: str
    replay_id: bytes
    schema_id: str
    payload: bytes
    schema: Schema | None  # None: GetSchema did not know the id

    @property
    def raw(self) -> bytes:
        """What a dead letter keeps of it."""
        return self.payload

    def to_message(self) -> dict[str, Any]:
        """The CometD-shaped CDC message of this event; MalformedCdcError when the payload does not decode."""
        position = (self.topic, replay_number(self.replay_id))
        opaque = token(self.replay_id)
        if self.schema is None:
            raise MalformedCdcError("unknown_schema", f"schema {self.schema_id!r} is unknown", position, opaque)
        try:
            payload = self._payload(self.schema)
        except BitmapError as exc:
            raise MalformedCdcError("bad_header", f"a field bitmap: {exc}", position, opaque) from None
        except MalformedCdcError as exc:
            exc.position, exc.opaque_replay_id = position, opaque
            raise
        event = {"replayId": position[1], "pubsubReplayId": opaque}
        return {"channel": self.topic, "data": {"schema": self.schema_id, "payload": payload, "event": event}}

    def _payload(self, schema: Schema) -> dict[str, Any]:
        buffer = io.BytesIO(self.payload)
        try:
            record = fastavro.schemaless_reader(buffer, schema.parsed, None)
        except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds on bad input; all mean "not this schema"
            raise MalformedCdcError(
                "bad_avro", f"the payload is not Avro of schema {schema.schema_id}: {exc!r}"
            ) from None
        if (
            buffer.tell() != len(self.payload)
            or not isinstance(record, dict)
            or not isinstance(record.get(HEADER), dict)
        ):
            raise MalformedCdcError("bad_avro", f"the payload is not one Avro record of schema {schema.schema_id}")
        header = dict(record[HEADER])
        changed = decode(header.get("changedFields") or [], schema.layout)
        nulled = decode(header.get("nulledFields") or [], schema.layout)
        diffed = decode(header.get("diffFields") or [], schema.layout)
        for name in _NOT_IN_HEADER:
            header.pop(name, None)
        header["changedFields"] = changed
        body: dict[str, Any] = {HEADER: header}
        if changed:
            cleared, diffs = set(nulled), set(diffed)
            for name in [*changed, *(n for n in (*nulled, *diffed) if n not in changed)]:
                value = None if name in cleared else _value(record, name, schema)
                _put(body, name, {"diff": value} if name in diffs and value is not None else value)
        else:
            for name, value in record.items():
                if name == HEADER or value is None:
                    continue
                if isinstance(value, dict):
                    parts = {k: _value(record, f"{name}.{k}", schema) for k, v in value.items() if v is not None}
                    if parts:
                        body[name] = parts
                else:
                    body[name] = _value(record, name, schema)
        return body


def _value(record: Mapping[str, Any], name: str, schema: Schema) -> Any:
    parent, _, component = name.partition(".")
    value = record.get(parent)
    if component:
        value = value.get(component) if isinstance(value, Mapping) else None
    return _datetime(value) if name in schema.datetimes else value


def _put(body: dict[str, Any], name: str, value: Any) -> None:
    parent, _, component = name.partition(".")
    if component:
        body.setdefault(parent, {})[component] = value
    else:
        body[parent] = value
