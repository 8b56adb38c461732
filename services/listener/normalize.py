"""The one place a CDC message becomes change events (the contract is shared/events.py), and the filters.

A CometD CDC message is `{"channel": ..., "data": {"schema": ..., "payload": {...}, "event":
{"replayId": N}}}`. `parse` checks its shape (anything else raises MalformedCdcError with a
short reason: the caller dead-letters it); `normalize` turns a parsed message into:

- one change event per record id (Salesforce merges identical changes to several records);
- nothing for our own echo (`changeOrigin` carries `client=<client_tag>`), counted as `echo`;
- nothing for an UPDATE that touched no trigger field (shared/mapping.py), counted as
  `not_trigger`; CREATE, DELETE and UNDELETE always pass;
- a RESYNC event (source `gap`) per record of a GAP_CREATE/UPDATE/DELETE/UNDELETE, which
  carries no field values;
- for GAP_OVERFLOW, an OverflowRequest: the caller queries every record of the entity changed
  since the commit timestamp and turns each into a RESYNC event (source `overflow`).

Field values: an UPDATE body holds only changed fields; a field set to null is present as
`null` and kept as `None` in `fields`, an unchanged field is absent. Compound fields arrive
nested (`"BillingAddress": {"City": ...}`, Contact `"Name": {"LastName": ...}`) and are
flattened to their sObject names (`BillingCity`, `LastName`), in `fields` and in
`changed_fields` alike. A long text sent as `{"diff": ...}` counts as a change of that field,
but its value is not carried: the syncer re-reads the record.

Contact and Opportunity events are keyed by the record's AccountId: taken from the payload when
present, otherwise from `resolved` (the caller resolves it with a batched, cached lookup; see
resolve.py). An OpportunityLineItem event is keyed by its opportunity's AccountId and names the
opportunity (`opportunity_id`), so an account's sync and its opportunities share a partition. A record
with no account is dropped as `no_account`. Opportunity changes are followed only when
`opportunity.watch` or `opportunity.auto_push` is on (`channels`); their trigger fields are in
shared/mapping.py.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.listener.filters import Filters
from services.listener.message import HEADER, CdcMessage, Decodable, MalformedCdcError
from shared.compound import component_name, flat_field_name, is_nested, names_any
from shared.events import ChangeEvent, ChangeType, Entity, Source, epoch_ms_to_datetime, make_event_id, resync_event

T = TypeVar("T")
OVERFLOW_RECORD_ID = "000000000000000AAA"
PLAIN_TYPES = {"CREATE": ChangeType.CREATE, "UPDATE": ChangeType.UPDATE, "DELETE": ChangeType.DELETE}
PLAIN_TYPES["UNDELETE"] = ChangeType.UNDELETE
GAP_TYPES = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"})
GAP_OVERFLOW = "GAP_OVERFLOW"
ALWAYS_PASS = frozenset({"CREATE", "DELETE", "UNDELETE"})
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")

# Drop reasons (label values of sfls_listener_changes_dropped_total).
DROP_ECHO = "echo"
DROP_NOT_TRIGGER = "not_trigger"
DROP_NO_ACCOUNT = "no_account"


@dataclass(frozen=True)
class OverflowRequest:
    """GAP_OVERFLOW: every record of `entity` modified at or after `since_ms` must be resynced."""

    entity: Entity
    since_ms: int
    replay_id: int
    channel: str


@dataclass
class Outcome:
    """What one CDC message produced."""

    events: list[ChangeEvent] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    overflow: OverflowRequest | None = None


def _position(message: Mapping[str, Any]) -> tuple[str, int] | None:
    """The channel and replay id of a decoded message, when it has them, even if the rest is malformed."""
    channel, data = message.get("channel"), message.get("data")
    event = data.get("event") if isinstance(data, Mapping) else None
    replay_id = event.get("replayId") if isinstance(event, Mapping) else None
    if (
        isinstance(channel, str)
        and _is_utf8(channel)
        and isinstance(replay_id, int)
        and not isinstance(replay_id, bool)
    ):
        return channel, replay_id
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _is_record_id(value: Any) -> bool:
    return isinstance(value, str) and _RECORD_ID.match(value) is not None


def parse(message: Any) -> CdcMessage:
    """Check the shape of a CDC message (a dict, or its JSON text, decoded once here) and read its header.

    A malformed message raises MalformedCdcError carrying its position when that could be read.
    """
    check_text = True
    if isinstance(message, Decodable):  # a Pub/Sub event (services/listener/pubsub/events.py)
        message = message.to_message()
        check_text = False  # Avro strings are valid UTF-8 by the format (fastavro refuses others)
    if isinstance(message, bytes | str):
        try:
            message = json.loads(message)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
            raise MalformedCdcError("bad_json", str(exc)) from None
    if not isinstance(message, Mapping):
        raise MalformedCdcError("bad_shape", f"a message is a JSON object, got {type(message).__name__}")
    found = _position(message)
    if found is None:
        raise MalformedCdcError("missing_replay_id", "no channel or no integer data.event.replayId")
    try:
        return _checked(message, found, check_text=check_text)
    except MalformedCdcError as exc:
        exc.position, exc.opaque_replay_id = found, _opaque(message)
        raise


def _opaque(message: Mapping[str, Any]) -> str | None:
    """The Pub/Sub replay id (base64) of a message services/listener/pubsub/events.py built; None from CometD."""
    value = message["data"]["event"].get("pubsubReplayId")
    return value if isinstance(value, str) else None


def _checked(message: Mapping[str, Any], found: tuple[str, int], *, check_text: bool = True) -> CdcMessage:
    channel, replay_id = found
    payload = message["data"].get("payload")
    if not isinstance(payload, Mapping):
        raise MalformedCdcError("bad_shape", "data.payload is missing or not an object")
    header = payload.get(HEADER)
    if not isinstance(header, Mapping):
        raise MalformedCdcError("missing_header", f"data.payload.{HEADER} is missing or not an object")
    entity, change_type, record_ids = _identity(header)
    body = {k: v for k, v in payload.items() if k != HEADER}
    parent = "OpportunityId" if entity is Entity.OPPORTUNITY_LINE else "AccountId"
    parent_id = body.get(parent)
    if entity is not Entity.ACCOUNT and parent_id not in (None, "") and not _is_record_id(parent_id):
        raise MalformedCdcError("bad_field", f"{parent} {parent_id!r} is not an id")
    if check_text:
        _check_text(payload)
    return CdcMessage(
        channel=channel,
        replay_id=replay_id,
        entity=entity,
        change_type=change_type,
        record_ids=record_ids,
        commit_timestamp=_commit_timestamp(header),
        transaction_key=_typed(header, "transactionKey", str, ""),
        sequence_number=_typed(header, "sequenceNumber", int, 0),
        change_origin=_typed(header, "changeOrigin", str, ""),
        changed_fields=_field_list(header),
        body=body,
        opaque_replay_id=_opaque(message),
    )


def _identity(header: Mapping[str, Any]) -> tuple[Entity, str, tuple[str, ...]]:
    entity_name = header.get("entityName")
    try:
        entity = Entity(str(entity_name))
    except ValueError:
        raise MalformedCdcError("unknown_entity", f"entityName {entity_name!r} is not synced") from None
    change_type = header.get("changeType")
    if not isinstance(change_type, str) or (
        change_type not in PLAIN_TYPES and change_type not in GAP_TYPES and change_type != GAP_OVERFLOW
    ):
        raise MalformedCdcError("unknown_change_type", f"changeType {change_type!r}")
    record_ids = header.get("recordIds")
    if (
        not isinstance(record_ids, list)
        or not record_ids
        or not all(isinstance(r, str) and _RECORD_ID.match(r) for r in record_ids)
    ):
        raise MalformedCdcError("bad_record_ids", f"recordIds {record_ids!r} is not a list of record ids")
    return entity, change_type, tuple(record_ids)


def _typed(header: Mapping[str, Any], name: str, kind: type[T], default: T | None) -> T:
    """A header field of the given type; absent or null takes the default (None: required)."""
    value = header.get(name)
    if value is None and default is not None:
        return default
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedCdcError("bad_header", f"{name} {value!r} is not a {kind.__name__}")
    return value


def _commit_timestamp(header: Mapping[str, Any]) -> int:
    """commitTimestamp: epoch milliseconds that a datetime can hold (years 1 to 9999)."""
    value = _typed(header, "commitTimestamp", int, None)
    try:
        epoch_ms_to_datetime(value)
    except (ValueError, OverflowError, OSError):
        raise MalformedCdcError(
            "bad_header", f"commitTimestamp {value!r} is not a time in epoch milliseconds"
        ) from None
    return value


def _check_text(body: Mapping[str, Any]) -> None:
    """Field names and values must be valid Unicode (a lone surrogate cannot be written as UTF-8).

    ASCII text (most of it) is passed by `str.isascii`; anything else is written as JSON and encoded once."""
    if _plain_ascii(body):
        return
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise MalformedCdcError("bad_field", f"a field name or value is not valid Unicode ({exc.reason})") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise MalformedCdcError("bad_field", f"the payload cannot be stored as JSON ({exc})") from None


def _plain_ascii(value: Any, depth: int = 0) -> bool:
    """True for JSON-shaped data whose strings are all ASCII (then it is valid UTF-8 and can be stored)."""
    if isinstance(value, str):
        return value.isascii()
    if value is None or isinstance(value, bool | int | float):
        return True
    if depth > 20:
        return False
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and k.isascii() and _plain_ascii(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_ascii(v, depth + 1) for v in value)
    return False


def _field_list(header: Mapping[str, Any]) -> tuple[str, ...]:
    changed = header.get("changedFields") or []
    if not isinstance(changed, list) or not all(isinstance(f, str) for f in changed):
        raise MalformedCdcError("bad_header", f"changedFields {changed!r} is not a list of field names")
    return tuple(changed)


def is_diff(value: Any) -> bool:
    """A long text sent as a unified diff (CometD): `{"diff": "..."}`."""
    return isinstance(value, Mapping) and set(value) == {"diff"}


def flatten(entity: Entity, body: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The delivered values by sObject field name, and the fields that came as diffs."""
    fields: dict[str, Any] = {}
    diffed: list[str] = []
    for name, value in body.items():
        if is_diff(value):
            diffed.append(name)
        elif isinstance(value, Mapping) and is_nested(entity, name):
            for component, part in value.items():
                flat = component_name(entity, name, component)
                if is_diff(part):
                    diffed.append(flat)
                else:
                    fields[flat] = part
        else:
            fields[name] = value
    return fields, diffed


def records_to_resolve(message: CdcMessage, filters: Filters) -> list[tuple[Entity, str]]:
    """(entity, id) of the records whose account the payload lacks, for records that may produce an event.

    A line whose payload names its opportunity needs that opportunity's account; any other line, its own row.
    """
    if message.entity is Entity.ACCOUNT or message.change_type == GAP_OVERFLOW:
        return []
    if message.change_type not in GAP_TYPES and (
        filters.is_echo(message.change_origin) or not _passes(message, filters)
    ):
        return []
    if message.entity is Entity.OPPORTUNITY_LINE:
        opportunity = message.body.get("OpportunityId")
        if isinstance(opportunity, str) and opportunity and message.change_type not in GAP_TYPES:
            return [(Entity.OPPORTUNITY, opportunity)]
        return [(message.entity, record_id) for record_id in message.record_ids]
    if message.change_type not in GAP_TYPES and isinstance(message.body.get("AccountId"), str):
        return []
    # Absent (an UPDATE of other fields, a DELETE) or nulled (the contact left its account: the
    # cache still knows the account it left, so that account resyncs).
    return [(message.entity, record_id) for record_id in message.record_ids]


def _passes(message: CdcMessage, filters: Filters) -> bool:
    if message.change_type in ALWAYS_PASS:
        return True
    changed = message.changed_fields or tuple(k for k in message.body if k != "LastModifiedDate")
    triggers = filters.triggers[message.entity]
    return not triggers.isdisjoint(changed) or any(names_any(name, triggers) for name in changed if "." in name)


def normalize(
    message: CdcMessage,
    filters: Filters,
    accounts: Mapping[str, str | None],
    lines: Mapping[str, str | None] | None = None,
) -> Outcome:
    """The change events of one CDC message, what was dropped and why, and any overflow to resync.

    `accounts`: record id (contact, opportunity) -> AccountId; `lines`: line id -> OpportunityId (resolve.py).
    """
    lines = lines or {}
    outcome = Outcome()
    if message.change_type == GAP_OVERFLOW:
        outcome.overflow = OverflowRequest(message.entity, message.commit_timestamp, message.replay_id, message.channel)
        return outcome
    if message.change_type in GAP_TYPES:
        for record_id in message.record_ids:
            account_id, opportunity_id = _owner_of(message, record_id, accounts, lines)
            if account_id is None:
                outcome.dropped[DROP_NO_ACCOUNT] += 1
                continue
            outcome.events.append(
                resync_event(
                    message.entity,
                    record_id,
                    account_id,
                    Source.GAP,
                    origin=f"gap:{message.replay_id}",
                    committed_at=message.committed_at,
                    replay_id=message.replay_id,
                    transaction_key=message.transaction_key,
                    sequence_number=message.sequence_number,
                    opportunity_id=opportunity_id,
                )
            )
        return outcome
    if filters.is_echo(message.change_origin):
        outcome.dropped[DROP_ECHO] += len(message.record_ids)
        return outcome
    if not _passes(message, filters):
        outcome.dropped[DROP_NOT_TRIGGER] += len(message.record_ids)
        return outcome
    fields, diffed = flatten(message.entity, message.body)
    # In name order: the transports list changed fields in different orders (CometD as written, Pub/Sub by position).
    changed = sorted({flat_field_name(message.entity, name) for name in message.changed_fields} | set(diffed))
    for record_id in message.record_ids:
        account_id, opportunity_id = _owner_of(message, record_id, accounts, lines)
        if account_id is None:
            outcome.dropped[DROP_NO_ACCOUNT] += 1
            continue
        outcome.events.append(
            ChangeEvent(
                event_id=make_event_id(f"cdc:{message.replay_id}", record_id),
                entity=message.entity,
                change_type=PLAIN_TYPES[message.change_type],
                record_id=record_id,
                account_id=account_id,
                changed_fields=tuple(changed),
                fields=fields,
                commit_timestamp=message.committed_at,
                transaction_key=message.transaction_key,
                sequence_number=message.sequence_number,
                replay_id=message.replay_id,
                source=Source.CDC,
                opportunity_id=opportunity_id,
            )
        )
    return outcome


def _owner_of(
    message: CdcMessage, record_id: str, accounts: Mapping[str, str | None], lines: Mapping[str, str | None]
) -> tuple[str | None, str | None]:
    """(AccountId, OpportunityId) of one record of the message: from the payload, else from the lookups."""
    if message.entity is Entity.ACCOUNT:
        return record_id, None
    if message.entity is Entity.OPPORTUNITY_LINE:
        from_payload = message.body.get("OpportunityId")
        opportunity = from_payload if isinstance(from_payload, str) and from_payload else lines.get(record_id)
        return (accounts.get(opportunity) or None, opportunity) if opportunity else (None, None)
    from_payload = message.body.get("AccountId")
    account = from_payload if isinstance(from_payload, str) and from_payload else accounts.get(record_id) or None
    return account, record_id if message.entity is Entity.OPPORTUNITY else None
