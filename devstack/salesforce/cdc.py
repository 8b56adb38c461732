"""Where a committed transaction becomes Change Data Capture events, and where events are retained.

Event shapes follow Salesforce Change Data Capture as delivered over CometD:
- CREATE and UNDELETE carry every non-null field plus the system fields; UPDATE carries only the
  changed fields plus LastModifiedDate, with nulls explicit; DELETE carries the header only.
- Compound fields nest (`"BillingAddress": {"City": ...}`, Contact `"Name": {"FirstName": ...}`),
  and changedFields names their components as `BillingAddress.City`.
- Never in the body: Id, IsDeleted, SystemModstamp and calculated fields; no nulledFields/diffFields.
- Changes of one transaction that did the same thing to several records of one entity (same
  change type, same body) merge into one event with several recordIds.
- Long text of 1,000+ characters may become `{"diff": "..."}` on UPDATE when `long_text_diff` is on.

`EventLog` keeps events with monotonically increasing replay ids for the retention window
(and below the admin-set floor nothing is valid); listeners (the CometD sessions) are told of
each new event. An event of an object whose change event needs a newer API version
(OpportunityLineItemChangeEvent: 60.0) carries that version, and CometD clients of older versions
neither see its channel nor get it on /data/ChangeEvents (the latter is an emulator choice).
"""

from __future__ import annotations

import base64
import bisect
import difflib
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack.salesforce.base import cdc_datetime, now_ms
from devstack.salesforce.config import Tunables
from devstack.salesforce.schema import ObjectDef, Schema
from devstack.salesforce.store import Change, Store, Transaction

ALL_CHANNEL = "/data/ChangeEvents"
OVERFLOW_RECORD_ID = "000000000000000AAA"
_EXCLUDED = {"Id", "IsDeleted", "SystemModstamp"}


@dataclass(frozen=True)
class StoredEvent:
    replay_id: int
    channels: frozenset[str]
    data: dict[str, Any]
    created: float
    min_version: float = 0.0  # delivered only to CometD clients of this API version or later


class EventLog:
    """Retained events in replay-id order; ids below `floor` are no longer valid."""

    def __init__(self, tunables: Tunables) -> None:
        self.tunables = tunables
        self.events: list[StoredEvent] = []
        self._ids: list[int] = []
        self.last_id = 0
        self.floor = 1
        self.listeners: list[Callable[[StoredEvent], None]] = []

    def publish(self, channels: frozenset[str], data: dict[str, Any], min_version: float = 0.0) -> int:
        self.prune()
        self.last_id += 1
        data = {**data, "event": {**data.get("event", {}), "replayId": self.last_id}}
        event = StoredEvent(self.last_id, channels, data, time.monotonic(), min_version)
        self.events.append(event)
        self._ids.append(event.replay_id)
        for listener in list(self.listeners):
            listener(event)
        return event.replay_id

    def prune(self) -> None:
        cutoff = time.monotonic() - self.tunables.retention_seconds
        cut = 0
        while cut < len(self.events) and self.events[cut].created < cutoff:
            cut += 1
        if cut:
            self.floor = max(self.floor, self.events[cut - 1].replay_id + 1)
        self._drop_below(self.floor)

    def _drop_below(self, replay_id: int) -> None:
        index = bisect.bisect_left(self._ids, replay_id)
        if index:
            del self.events[:index]
            del self._ids[:index]

    def set_floor(self, oldest_replay_id: int) -> None:
        """Admin retention: events older than this id are gone, and so is the validity of their ids."""
        self.floor = max(1, oldest_replay_id)
        self._drop_below(self.floor)

    def clear(self) -> None:
        self.events.clear()
        self._ids.clear()
        self.floor = self.last_id + 1

    def valid(self, replay_id: int) -> bool:
        self.prune()
        return self.floor <= replay_id <= self.last_id

    def after(self, channel: str, replay_id: int) -> list[StoredEvent]:
        """Retained events on `channel` with an id greater than `replay_id` (-2: all retained)."""
        self.prune()
        start = 0 if replay_id < 0 else bisect.bisect_right(self._ids, replay_id)
        return [e for e in self.events[start:] if channel in e.channels]

    def scan(self, channel: str, replay_id: int, limit: int) -> tuple[list[StoredEvent], int]:
        """Up to `limit` retained events on `channel` after `replay_id`, and the id the scan reached
        (the next scan may start after it: no event of the channel lies between)."""
        self.prune()
        found: list[StoredEvent] = []
        reached = replay_id
        events = self.events
        for index in range(bisect.bisect_right(self._ids, replay_id), len(events)):
            event = events[index]
            if channel in event.channels:
                found.append(event)
            reached = event.replay_id
            if len(found) >= limit:
                break
        else:
            reached = max(reached, self.last_id)
        return found, reached


def schema_id(obj: ObjectDef) -> str:
    """A stable 22-character id that changes whenever the object's fields change, like Salesforce's."""
    digest = hashlib.sha256((obj.name + "|" + "|".join(sorted(obj.fields))).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def long_text_diff(old: str, new: str) -> str | None:
    """A unified diff as CometD CDC sends it, or None when Salesforce would send the full value."""
    if len(new) < 1000 or not old or abs(len(new) - len(old)) > 0.5 * max(len(old), 1):
        return None
    old_lines, new_lines = old.split("\n"), new.split("\n")
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    hunks: list[str] = []
    changed = 0
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        changed += max(i2 - i1, j2 - j1)
        hunks.append(f"@@ -{i1 + 1},{i2 - i1} +{j1 + 1},{j2 - j1} @@\n")
        hunks.extend(f"-{line}\n" for line in old_lines[i1:i2])
        hunks.extend(f"+{line}\n" for line in new_lines[j1:j2])
    if changed > 0.25 * max(len(old_lines), len(new_lines)):
        return None
    text = f"--- \n+++ {hashlib.sha256(new.encode()).hexdigest()}\n" + "".join(hunks)
    return text if len(text) < len(new) else None


class ChangeEvents:
    """Turns committed transactions (and admin injections) into events in the log."""

    def __init__(self, store: Store, log: EventLog, tunables: Tunables) -> None:
        self.store = store
        self.log = log
        self.tunables = tunables
        self._commit_numbers = itertools.count(1_719_876_940_980_994_049, 1_048_583)
        store.on_commit = self.on_commit

    @property
    def schema(self) -> Schema:
        return self.store.schema

    def _value(self, obj: ObjectDef, name: str, value: Any) -> Any:
        definition = obj.fields[name]
        return cdc_datetime(value) if definition.type == "datetime" and isinstance(value, str) else value

    def _full_body(self, obj: ObjectDef, record: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for name, definition in obj.fields.items():
            if name in _EXCLUDED or definition.calculated or record.get(name) is None:
                continue
            value = self._value(obj, name, record[name])
            if definition.compound:
                body.setdefault(definition.compound, {})[definition.component] = value
            else:
                body[name] = value
        return body

    def _update_body(
        self, obj: ObjectDef, old: dict[str, Any], new: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        body: dict[str, Any] = {}
        changed: list[str] = []
        for name, definition in obj.fields.items():
            if name in _EXCLUDED or definition.calculated or name == "LastModifiedDate":
                continue
            if old.get(name) == new.get(name):
                continue
            value = self._value(obj, name, new.get(name))
            if definition.is_long_text and self.tunables.long_text_diff and isinstance(value, str):
                diff = long_text_diff(old.get(name) or "", value)
                value = {"diff": diff} if diff is not None else value
            if definition.compound:
                body.setdefault(definition.compound, {})[definition.component] = value
                changed.append(f"{definition.compound}.{definition.component}")
            else:
                body[name] = value
                changed.append(name)
        body["LastModifiedDate"] = cdc_datetime(new["LastModifiedDate"])
        changed.append("LastModifiedDate")
        return body, changed

    def _body(self, change: Change) -> tuple[dict[str, Any], list[str]]:
        obj = self.store.object(change.entity)
        if change.change_type == "DELETE":
            return {}, []
        if change.change_type == "UPDATE" and change.old is not None and change.new is not None:
            return self._update_body(obj, change.old, change.new)
        return self._full_body(obj, change.new or {}), []

    def on_commit(self, transaction: Transaction) -> None:
        """Merge the transaction's changes into events and publish them, in change order."""
        groups: dict[str, tuple[Change, dict[str, Any], list[str], list[str]]] = {}
        for change in transaction.changes:
            body, changed = self._body(change)
            key = json.dumps([change.entity, change.change_type, body, changed], sort_keys=True, default=str)
            if key in groups:
                groups[key][3].append(change.record_id)
            else:
                groups[key] = (change, body, changed, [change.record_id])
        commit_number = next(self._commit_numbers)
        transaction_key = str(uuid.uuid4())
        for sequence, (change, body, changed, record_ids) in enumerate(groups.values(), start=1):
            header = {
                "entityName": change.entity,
                "recordIds": record_ids,
                "changeType": change.change_type,
                "changeOrigin": transaction.origin,
                "transactionKey": transaction_key,
                "sequenceNumber": sequence,
                "commitTimestamp": transaction.stamp_ms,
                "commitNumber": commit_number,
                "commitUser": self.store.user_id,
                "changedFields": changed,
            }
            self._publish(self.store.object(change.entity), {"ChangeEventHeader": header, **body})

    def _publish(self, obj: ObjectDef, payload: dict[str, Any]) -> int:
        channels = frozenset({ALL_CHANNEL, obj.change_event_channel})
        data = {"schema": schema_id(obj), "payload": payload, "event": {}}
        return self.log.publish(channels, data, obj.cdc_min_version)

    def header_only(self, obj: ObjectDef, change_type: str, record_ids: list[str]) -> int:
        """A gap or overflow event: header only, no origin, no changed fields, sequence 1."""
        header = {
            "entityName": obj.name,
            "recordIds": record_ids,
            "changeType": change_type,
            "changeOrigin": "",
            "transactionKey": str(uuid.uuid4()),
            "sequenceNumber": 1,
            "commitTimestamp": now_ms(),
            "commitNumber": next(self._commit_numbers),
            "commitUser": self.store.user_id,
            "changedFields": [],
        }
        return self._publish(obj, {"ChangeEventHeader": header})

    def publish_verbatim(self, message: dict[str, Any]) -> int:
        """An arbitrary message as delivered; it also reaches /data/ChangeEvents when it names its entity."""
        channel = message["channel"]
        data = message["data"]
        channels = {channel}
        header = data.get("payload", {}).get("ChangeEventHeader") if isinstance(data.get("payload"), dict) else None
        entity = header.get("entityName") if isinstance(header, dict) else None
        obj = self.schema.get(entity) if isinstance(entity, str) else None
        if obj is not None and channel in {ALL_CHANNEL, obj.change_event_channel}:
            channels |= {ALL_CHANNEL, obj.change_event_channel}
        return self.log.publish(frozenset(channels), data, obj.cdc_min_version if obj is not None else 0.0)
