"""Pub/Sub payloads -> CometD-shaped CDC messages (services/listener/pubsub/bitmap.py, events.py), pure logic.

The bitmap decoder is proven against an encoder written here from the documented rule (bit i of the big-endian
hex integer is field i; `<p>-0x..` entries index a compound's nested record) over random field subsets,
compound fields included, with and without the compound's own bit. The decoded message must normalize to the
same change event as the CometD message of the same change.
"""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.listener.filters import Filters
from services.listener.message import MalformedCdcError
from services.listener.normalize import normalize, parse
from services.listener.pubsub.bitmap import BitmapError, Layout, decode
from services.listener.pubsub.events import PubSubEvent, Schema, replay_number, token
from shared.settings import Settings

ADDRESS = {
    "type": "record",
    "name": "Address",
    "fields": [{"name": n, "type": ["null", "string"], "default": None} for n in ("Street", "City", "State")],
}
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "AccountChangeEvent",
    "namespace": "com.sforce.eventbus",
    "fields": [
        {
            "name": "ChangeEventHeader",
            "type": {
                "type": "record",
                "name": "ChangeEventHeader",
                "fields": [
                    {"name": "entityName", "type": "string"},
                    {"name": "recordIds", "type": {"type": "array", "items": "string"}},
                    {
                        "name": "changeType",
                        "type": {"type": "enum", "name": "ChangeType", "symbols": ["CREATE", "UPDATE", "DELETE"]},
                    },
                    {"name": "changeOrigin", "type": "string"},
                    {"name": "transactionKey", "type": "string"},
                    {"name": "sequenceNumber", "type": "int"},
                    {"name": "commitTimestamp", "type": "long"},
                    {"name": "commitNumber", "type": "long"},
                    {"name": "commitUser", "type": "string"},
                    {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
                    {"name": "diffFields", "type": {"type": "array", "items": "string"}},
                    {"name": "changedFields", "type": {"type": "array", "items": "string"}},
                ],
            },
        },
        {"name": "Name", "type": ["null", "string"], "default": None},
        {"name": "BillingAddress", "type": ["null", ADDRESS], "default": None},
        {"name": "ShippingAddress", "type": ["null", "com.sforce.eventbus.Address"], "default": None},
        {"name": "Phone", "type": ["null", "string"], "default": None},
        {"name": "Description", "type": ["null", "string"], "default": None},
        {"name": "LastModifiedDate", "type": ["null", "long"], "doc": "LastModifiedDate:DateTime", "default": None},
    ],
}
LAYOUT = Layout.of(SCHEMA)
TOP = ["Name", "BillingAddress", "ShippingAddress", "Phone", "Description", "LastModifiedDate"]
NESTED = {"BillingAddress": ["Street", "City", "State"], "ShippingAddress": ["Street", "City", "State"]}
ACCOUNT = "001000000000001AAA"


def encode(names: list[str], *, parent_bit: bool) -> list[str]:
    """The documented encoding: element 0 over top-level fields, `<p>-0x..` per compound with components."""
    fields = [f["name"] for f in SCHEMA["fields"]]
    top, nested = 0, {}
    for name in names:
        parent, _, component = name.partition(".")
        index = fields.index(parent)
        if component:
            nested[index] = nested.get(index, 0) | 1 << NESTED[parent].index(component)
            if parent_bit:
                top |= 1 << index
        else:
            top |= 1 << index
    entries = [f"0x{top:02X}"] if top else []
    return entries + [f"{index}-0x{bits:02X}" for index, bits in nested.items()]


FIELD_NAMES = st.sampled_from(
    ["Name", "Phone", "Description", "LastModifiedDate"]
    + [f"{c}.{p}" for c in ("BillingAddress", "ShippingAddress") for p in NESTED[c]]
)


@given(names=st.lists(FIELD_NAMES, unique=True), parent_bit=st.booleans(), reverse=st.booleans())
def test_the_decoder_inverts_the_documented_encoding(names: list[str], parent_bit: bool, reverse: bool) -> None:
    entries = encode(names, parent_bit=parent_bit)
    if reverse:
        entries.reverse()  # element 0 is not assumed to come first
    decoded = decode(entries, LAYOUT)
    assert sorted(decoded) == sorted(names)
    assert len(decoded) == len(set(decoded))


def test_the_layout_resolves_a_named_type_used_twice() -> None:
    assert LAYOUT.fields[1:] == tuple(TOP)
    assert LAYOUT.nested == {2: ("Street", "City", "State"), 3: ("Street", "City", "State")}
    # fastavro's parsed schema replaces the second Address by its name; the layout reads the JSON instead.
    assert decode(["3-0x02"], LAYOUT) == ["ShippingAddress.City"]


def test_a_documented_bitmap_decodes_to_the_documented_bits() -> None:
    wide = Layout(tuple(f"F{i}" for i in range(32)), {})
    assert decode(["0x650004E0"], wide) == [f"F{i}" for i in (5, 6, 7, 10, 24, 26, 29, 30)]
    assert decode(["0x4"], wide) == ["F2"]  # an odd number of digits is a number all the same


@pytest.mark.parametrize("entry", ["Name", "0xZZ", "x-0x01", "1-0x01", "0x", 7])
def test_malformed_entries_are_refused(entry: Any) -> None:
    if entry == "0x":
        assert decode([entry], LAYOUT) == []  # an empty bitmap names nothing
        return
    with pytest.raises(BitmapError):
        decode([entry], LAYOUT)


def test_bits_past_the_record_and_the_header_bit_name_nothing() -> None:
    assert decode([f"0x{1 << 40 | 1:X}"], LAYOUT) == []


def _event(record: dict[str, Any], replay: int = 7, schema: Schema | None = None) -> PubSubEvent:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(json.loads(json.dumps(SCHEMA))), record)
    chosen = schema or Schema.from_json("sid1", json.dumps(SCHEMA))
    return PubSubEvent(
        "/data/AccountChangeEvent", replay.to_bytes(8, "big") + b"\0\0", "sid1", buffer.getvalue(), chosen
    )


def _header(change_type: str, changed: list[str], nulled: list[str] = (), diffed: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "entityName": "Account",
        "recordIds": [ACCOUNT],
        "changeType": change_type,
        "changeOrigin": "com/salesforce/api/rest/62.0",
        "transactionKey": "t-1",
        "sequenceNumber": 1,
        "commitTimestamp": 1_720_000_000_000,
        "commitNumber": 1_719_876_940_980_994_049,  # past 2**53: JSON readers must keep it exact
        "commitUser": "005000000000001AAA",
        "nulledFields": list(nulled),
        "diffFields": list(diffed),
        "changedFields": list(changed),
    }


def _record(header: dict[str, Any], **values: Any) -> dict[str, Any]:
    record: dict[str, Any] = dict.fromkeys(TOP)
    record.update(values)
    return {"ChangeEventHeader": header, **record}


def test_an_update_becomes_the_cometd_message_of_the_same_change() -> None:
    changed = ["Name", "Phone", "Description", "LastModifiedDate", "BillingAddress.City"]
    header = _header("UPDATE", encode(changed, parent_bit=False), nulled=encode(["Phone"], parent_bit=False))
    header["diffFields"] = encode(["Description"], parent_bit=False)
    record = _record(
        header,
        Name="Acme",
        ShippingAddress={"Street": "present without its bit", "City": None, "State": None},  # not a change
        BillingAddress={"Street": None, "City": "Lyon", "State": None},
        Description="--- \n+++ x\n@@ -1,1 +1,1 @@\n-a\n+b\n",
        LastModifiedDate=1_720_000_000_123,
    )
    message = _event(record).to_message()
    assert message["channel"] == "/data/AccountChangeEvent"
    assert message["data"]["event"] == {"replayId": 7, "pubsubReplayId": token((7).to_bytes(8, "big") + b"\0\0")}
    payload = message["data"]["payload"]
    assert payload["ChangeEventHeader"]["changedFields"] == [
        "Name",
        "BillingAddress.City",
        "Phone",
        "Description",
        "LastModifiedDate",
    ]
    assert "nulledFields" not in payload["ChangeEventHeader"]
    assert {k: v for k, v in payload.items() if k != "ChangeEventHeader"} == {
        "Name": "Acme",
        "Phone": None,
        "Description": {"diff": "--- \n+++ x\n@@ -1,1 +1,1 @@\n-a\n+b\n"},
        "BillingAddress": {"City": "Lyon"},
        "LastModifiedDate": "2024-07-03T09:46:40.123Z",
    }
    cometd = {
        "channel": "/data/AccountChangeEvent",
        "data": {
            "schema": "sid1",
            "payload": {
                "ChangeEventHeader": _header(
                    "UPDATE", ["Name", "Phone", "Description", "BillingAddress.City", "LastModifiedDate"]
                ),
                "Name": "Acme",
                "BillingAddress": {"City": "Lyon"},
                "Phone": None,
                "Description": {"diff": "--- \n+++ x\n@@ -1,1 +1,1 @@\n-a\n+b\n"},
                "LastModifiedDate": "2024-07-03T09:46:40.123Z",
            },
            "event": {"replayId": 7},
        },
    }
    for key in ("nulledFields", "diffFields"):
        del cometd["data"]["payload"]["ChangeEventHeader"][key]  # type: ignore[attr-defined]
    filters = Filters.from_settings(Settings())
    ours = normalize(parse(_event(record)), filters, {}).events
    theirs = normalize(parse(cometd), filters, {}).events
    assert len(ours) == 1
    assert ours == theirs
    assert ours[0].fields == {
        "Name": "Acme",
        "Phone": None,
        "BillingCity": "Lyon",
        "LastModifiedDate": "2024-07-03T09:46:40.123Z",
    }
    assert ours[0].changed_fields == ("BillingCity", "Description", "LastModifiedDate", "Name", "Phone")
    assert parse(_event(record)).opaque_replay_id == token((7).to_bytes(8, "big") + b"\0\0")


def test_a_create_carries_every_non_null_field() -> None:
    record = _record(
        _header("CREATE", []), Name="Acme", ShippingAddress={"Street": None, "City": "Oslo", "State": None}
    )
    payload = _event(record).to_message()["data"]["payload"]
    assert {k: v for k, v in payload.items() if k != "ChangeEventHeader"} == {
        "Name": "Acme",
        "ShippingAddress": {"City": "Oslo"},
    }


def test_a_payload_that_is_not_avro_of_its_schema_is_malformed_with_its_position() -> None:
    event = _event(_record(_header("DELETE", [])))
    broken = PubSubEvent(event.topic, event.replay_id, event.schema_id, b'{"not": "avro"}', event.schema)
    with pytest.raises(MalformedCdcError) as caught:
        parse(broken)
    assert caught.value.reason == "bad_avro"
    assert caught.value.position == ("/data/AccountChangeEvent", 7)
    assert caught.value.opaque_replay_id == token(event.replay_id)
    unknown = PubSubEvent(event.topic, event.replay_id, "nope", event.payload, None)
    with pytest.raises(MalformedCdcError, match="unknown_schema"):
        parse(unknown)


def test_the_replay_number_is_the_leading_big_endian_counter() -> None:
    assert replay_number(bytes.fromhex("0000000000 10DB4D 0000".replace(" ", ""))) == 1104717
