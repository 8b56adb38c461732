"""The Pub/Sub encoding of CometD-shaped change events (devstack/salesforce/avro.py), without a server."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest

from devstack.salesforce.avro import EncodeError, Layout, Registry, bitmap, encode
from devstack.salesforce.config import Config
from devstack.salesforce.pubsub import PubSub
from devstack.salesforce.schema import Schema
from devstack.salesforce.state import Emulator


def _layout(entity: str) -> Layout:
    obj = Schema().get(entity)
    assert obj is not None
    return Registry().current(obj)


def _header(entity: str = "Account", change_type: str = "UPDATE", changed: list[str] | None = None) -> dict[str, Any]:
    return {
        "entityName": entity,
        "recordIds": ["001000000000001AAA"],
        "changeType": change_type,
        "changeOrigin": "com/salesforce/api/rest/62.0",
        "transactionKey": "0001",
        "sequenceNumber": 1,
        "commitTimestamp": 1712694387000,
        "commitNumber": 1719876940980994049,
        "commitUser": "0055g0000000001AAA",
        "changedFields": changed or [],
    }


def _decode(layout: Layout, payload: dict[str, Any]) -> dict[str, Any]:
    record = fastavro.schemaless_reader(io.BytesIO(encode(layout, payload)), json.loads(layout.schema_json), None)
    assert isinstance(record, dict)
    return record


def test_bitmaps_are_upper_case_whole_bytes() -> None:
    assert [bitmap([22]), bitmap([1, 2]), bitmap([0]), bitmap([8]), bitmap([5, 6, 7, 10, 24, 26, 29, 30])] == [
        "0x400000",
        "0x06",
        "0x01",
        "0x0100",
        "0x650004E0",
    ]


def test_diff_and_nulled_components() -> None:
    """A diff value travels as its text (diffFields); a nulled component goes into a `p-0x..` nulledFields entry."""
    layout = _layout("Account")
    top = [f["name"] for f in json.loads(layout.schema_json)["fields"]]
    payload = {
        "ChangeEventHeader": _header(changed=["Description", "BillingAddress.State", "LastModifiedDate"]),
        "Description": {"diff": "--- \n+++ x\n@@ -1,1 +1,1 @@\n-a\n+b\n"},
        "BillingAddress": {"State": None},
        "LastModifiedDate": "2024-04-09T20:26:27.000Z",
    }
    record = _decode(layout, payload)
    header = record["ChangeEventHeader"]
    assert record["Description"].startswith("--- ")
    assert header["diffFields"] == [bitmap([top.index("Description")])]
    assert header["nulledFields"] == [f"{top.index('BillingAddress')}-0x04"]
    assert header["changedFields"] == [
        bitmap([top.index("Description"), top.index("LastModifiedDate")]),
        f"{top.index('BillingAddress')}-0x04",
    ]
    assert record["LastModifiedDate"] == 1712694387000


def test_contact_name_and_delete() -> None:
    """Contact's Name compound is a PersonName record; DELETE carries the header only."""
    layout = _layout("Contact")
    fields = {f["name"]: f for f in json.loads(layout.schema_json)["fields"]}
    assert fields["Name"]["type"][1]["name"] == "PersonName"
    assert [f["name"] for f in fields["Name"]["type"][1]["fields"]] == ["Salutation", "FirstName", "LastName"]
    record = _decode(layout, {"ChangeEventHeader": _header("Contact", "CREATE"), "Name": {"LastName": "Lovelace"}})
    assert record["Name"] == {"Salutation": None, "FirstName": None, "LastName": "Lovelace"}
    record = _decode(layout, {"ChangeEventHeader": _header("Contact", "DELETE")})
    assert all(value is None for name, value in record.items() if name != "ChangeEventHeader")


@pytest.mark.parametrize(
    "payload",
    [
        {"Name": "no header"},
        {"ChangeEventHeader": {**_header(), "changeType": "BOGUS"}},
        {"ChangeEventHeader": _header(entity="Contact")},
        {"ChangeEventHeader": _header(), "Nope__c": "x"},
        {"ChangeEventHeader": _header(), "Name": 5},
        {"ChangeEventHeader": _header(), "BillingAddress": "Paris"},
        {"ChangeEventHeader": _header(changed=["Nope"])},
        {"ChangeEventHeader": {k: v for k, v in _header().items() if k != "commitNumber"}},
        {"ChangeEventHeader": _header(), "LastModifiedDate": "yesterday"},
    ],
)
def test_what_does_not_fit_the_schema_raises(payload: dict[str, Any]) -> None:
    with pytest.raises(EncodeError):
        encode(_layout("Account"), payload)


def test_unknown_entity_is_delivered_undecodable_with_the_account_schema() -> None:
    state = Emulator(Config("id", "secret", "user@example.com", "password"))
    pubsub = PubSub(state)
    message = {"channel": "/data/ChangeEvents", "data": {"payload": {"ChangeEventHeader": {"entityName": "Nope"}}}}
    replay_id = state.events.publish_verbatim(message)
    (event,) = [e for e in state.log.events if e.replay_id == replay_id]
    consumer = pubsub.codec.consumer_event(event)
    account = state.store.schema.get("Account")
    assert account is not None
    layout = pubsub.codec.current(account)
    assert consumer.event.schema_id == layout.schema_id
    assert consumer.replay_id == replay_id.to_bytes(8, "big") + b"\x00\x00"
    with pytest.raises(EOFError):
        fastavro.schemaless_reader(io.BytesIO(consumer.event.payload), json.loads(layout.schema_json), None)
