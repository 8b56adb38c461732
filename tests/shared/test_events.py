"""The change-event contract: round trips, stable ids, keys and headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.events import ChangeEvent, ChangeType, Entity, RequestRecord, RequestStatus, Source, make_event_id

ACCOUNT = "001000000000001AAA"
CONTACT = "003000000000001AAA"


def _event(**overrides: object) -> ChangeEvent:
    base: dict[str, object] = {
        "event_id": make_event_id("replay:42", CONTACT),
        "entity": Entity.CONTACT,
        "change_type": ChangeType.UPDATE,
        "record_id": CONTACT,
        "account_id": ACCOUNT,
        "changed_fields": ("Title",),
        "fields": {"Title": None},
        "commit_timestamp": datetime(2026, 1, 1, tzinfo=UTC),
        "replay_id": 42,
    }
    base.update(overrides)
    return ChangeEvent.model_validate(base)


def test_round_trip_keeps_nulls_distinct_from_absent() -> None:
    """Serialising and parsing gives the same event; an explicit null survives."""
    event = _event()
    parsed = ChangeEvent.from_bytes(event.to_bytes())
    assert parsed == event
    assert "Title" in parsed.fields
    assert parsed.fields["Title"] is None
    assert parsed.schema_version == 1


def test_key_is_the_account_and_headers_route() -> None:
    """A contact event is keyed by its account; headers carry entity, change type and source."""
    event = _event(source=Source.GAP, change_type=ChangeType.RESYNC)
    assert event.key == ACCOUNT.encode()
    assert dict(event.headers()) == {"entity": b"Contact", "change_type": b"RESYNC", "source": b"gap"}


def test_event_id_is_stable_and_distinct() -> None:
    """The same origin and record give the same id; another record or origin another id."""
    assert make_event_id("replay:42", CONTACT) == make_event_id("replay:42", CONTACT)
    assert make_event_id("replay:42", CONTACT) != make_event_id("replay:43", CONTACT)
    assert make_event_id("replay:42", CONTACT) != make_event_id("replay:42", ACCOUNT)


@pytest.mark.parametrize(
    ("field", "value"),
    [("record_id", "short"), ("entity", "Lead"), ("change_type", "MERGE"), ("schema_version", 2)],
)
def test_invalid_events_are_rejected(field: str, value: object) -> None:
    """Events outside the contract do not validate."""
    with pytest.raises(ValidationError):
        _event(**{field: value})


def test_request_record_round_trip() -> None:
    """A request-log record survives serialisation."""
    record = RequestRecord(
        request_id="r1",
        service="syncer",
        kind="account_sync",
        status=RequestStatus.FAILED,
        key=ACCOUNT,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        duration_seconds=0.25,
        attempts=3,
        reason="HTTP 400",
    )
    assert RequestRecord.from_bytes(record.to_bytes()) == record


def test_opportunity_id_is_absent_from_the_json_of_other_events() -> None:
    """Account and contact events read as before the field existed; opportunity events carry it and round-trip."""
    base = {
        "event_id": "e1",
        "change_type": ChangeType.UPDATE,
        "account_id": "001000000000001AAA",
        "commit_timestamp": datetime(2026, 1, 1, tzinfo=UTC),
    }
    account = ChangeEvent(entity=Entity.ACCOUNT, record_id="001000000000001AAA", **base)
    assert "opportunity_id" not in json.loads(account.to_bytes())
    opportunity = ChangeEvent(
        entity=Entity.OPPORTUNITY_LINE, record_id="00k000000000001AAA", opportunity_id="006000000000001AAA", **base
    )
    assert json.loads(opportunity.to_bytes())["opportunity_id"] == "006000000000001AAA"
    assert ChangeEvent.from_bytes(opportunity.to_bytes()) == opportunity
    assert ChangeEvent.from_bytes(account.to_bytes()).opportunity_id is None
