"""CDC message -> change events: shapes, filters, compound fields, diffs, gaps, malformed input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.listener.filters import Filters, channels
from services.listener.message import MalformedCdcError
from services.listener.normalize import (
    DROP_ECHO,
    DROP_NO_ACCOUNT,
    DROP_NOT_TRIGGER,
    normalize,
    parse,
    records_to_resolve,
)
from shared.events import ChangeType, Entity, Source, make_event_id
from shared.settings import Settings
from tests.services.listener.support import (
    ACCOUNT_A,
    ACCOUNT_B,
    ACCOUNT_C,
    COMMIT_MS,
    CONTACT_A,
    CONTACT_B,
    cdc_message,
)


@pytest.fixture
def filters() -> Filters:
    """The default trigger fields and client tag `sfls`."""
    return Filters.from_settings(Settings())


def test_name_update_becomes_one_event_keyed_by_the_account(filters: Filters) -> None:
    """An Account Name update gives one UPDATE event keyed by the account, carrying the new value."""
    message = parse(
        cdc_message(changed=["Name", "LastModifiedDate"], fields={"Name": "Acme", "LastModifiedDate": "2024-07-01"})
    )
    outcome = normalize(message, filters, {})
    assert len(outcome.events) == 1
    event = outcome.events[0]
    assert event.key == ACCOUNT_A.encode()
    assert event.change_type is ChangeType.UPDATE
    assert event.entity is Entity.ACCOUNT
    assert event.fields == {"Name": "Acme", "LastModifiedDate": "2024-07-01"}
    assert event.changed_fields == ("LastModifiedDate", "Name")  # in name order, whichever the transport
    assert event.event_id == make_event_id("cdc:101", ACCOUNT_A)
    assert event.replay_id == 101
    assert event.source is Source.CDC
    assert int(event.commit_timestamp.timestamp() * 1000) == COMMIT_MS


def test_update_of_non_trigger_fields_is_dropped_and_counted(filters: Filters) -> None:
    """A Description-only update produces no event and is counted as not_trigger."""
    message = parse(cdc_message(changed=["Description", "LastModifiedDate"], fields={"Description": "x"}))
    outcome = normalize(message, filters, {})
    assert outcome.events == []
    assert outcome.dropped == {DROP_NOT_TRIGGER: 1}


@pytest.mark.parametrize("change_type", ["CREATE", "DELETE", "UNDELETE"])
def test_create_delete_undelete_always_pass(filters: Filters, change_type: str) -> None:
    """CREATE, DELETE and UNDELETE pass whatever fields they carry."""
    outcome = normalize(parse(cdc_message(change_type=change_type, fields={"Description": "x"})), filters, {})
    assert [e.change_type.value for e in outcome.events] == [change_type]


def test_several_record_ids_become_one_event_each(filters: Filters) -> None:
    """A merged CDC message with three record ids yields three events with distinct ids and keys."""
    ids = [ACCOUNT_A, ACCOUNT_B, ACCOUNT_C]
    outcome = normalize(parse(cdc_message(record_ids=ids, changed=["Type"], fields={"Type": "Customer"})), filters, {})
    assert [e.record_id for e in outcome.events] == ids
    assert [e.key for e in outcome.events] == [i.encode() for i in ids]
    assert len({e.event_id for e in outcome.events}) == 3


def test_nulled_field_is_kept_distinct_from_an_absent_one(filters: Filters) -> None:
    """A field set to null is present with None; an unchanged field is absent."""
    message = parse(cdc_message(changed=["Type", "ParentId"], fields={"Type": "Customer", "ParentId": None}))
    event = normalize(message, filters, {}).events[0]
    assert "ParentId" in event.fields
    assert event.fields["ParentId"] is None
    assert "Name" not in event.fields


def test_compound_address_is_flattened_and_triggers_by_component(filters: Filters) -> None:
    """A custom trigger on BillingCity fires on `BillingAddress.City` and the value lands as BillingCity."""
    settings = Settings.model_validate(
        {"mappings": {"account_extensions": [{"salesforce": "BillingCity", "logisense": "city"}]}}
    )
    custom = Filters.from_settings(settings)
    message = parse(
        cdc_message(changed=["BillingAddress.City"], fields={"BillingAddress": {"City": "Oslo", "Street": None}})
    )
    assert normalize(message, filters, {}).dropped == {DROP_NOT_TRIGGER: 1}
    event = normalize(message, custom, {}).events[0]
    assert event.fields == {"BillingCity": "Oslo", "BillingStreet": None}
    assert event.changed_fields == ("BillingCity",)


def test_contact_name_compound_is_flattened(filters: Filters) -> None:
    """A Contact Name change (`Name.LastName`) passes and carries LastName, keyed by the payload's AccountId."""
    message = parse(
        cdc_message(
            "Contact",
            "CREATE",
            fields={"Name": {"FirstName": "Ada", "LastName": "Lovelace"}, "AccountId": ACCOUNT_B},
        )
    )
    assert records_to_resolve(message, filters) == []
    event = normalize(message, filters, {}).events[0]
    assert event.account_id == ACCOUNT_B
    assert event.fields == {"FirstName": "Ada", "LastName": "Lovelace", "AccountId": ACCOUNT_B}
    update = parse(cdc_message("Contact", changed=["Name.LastName"], fields={"Name": {"LastName": "King"}}))
    assert normalize(update, filters, {CONTACT_A: ACCOUNT_A}).events[0].changed_fields == ("LastName",)


def test_contact_update_without_account_id_is_keyed_by_the_resolved_account(filters: Filters) -> None:
    """A Contact UPDATE lacking AccountId asks for a lookup and is keyed by the account it returns."""
    message = parse(cdc_message("Contact", changed=["Title"], fields={"Title": "CFO"}))
    assert records_to_resolve(message, filters) == [(Entity.CONTACT, CONTACT_A)]
    event = normalize(message, filters, {CONTACT_A: ACCOUNT_C}).events[0]
    assert event.key == ACCOUNT_C.encode()
    assert event.entity is Entity.CONTACT


def test_contact_without_account_is_dropped(filters: Filters) -> None:
    """A contact whose account cannot be resolved is dropped as no_account."""
    message = parse(cdc_message("Contact", "DELETE", [CONTACT_A, CONTACT_B]))
    outcome = normalize(message, filters, {CONTACT_A: ACCOUNT_A, CONTACT_B: None})
    assert [e.record_id for e in outcome.events] == [CONTACT_A]
    assert outcome.dropped == {DROP_NO_ACCOUNT: 1}


def test_filtered_contact_needs_no_lookup(filters: Filters) -> None:
    """A Contact change of no trigger field asks for no AccountId lookup."""
    message = parse(cdc_message("Contact", changed=["Department"], fields={"Department": "R&D"}))
    assert records_to_resolve(message, filters) == []


def test_long_text_diff_counts_as_changed_without_its_value(filters: Filters) -> None:
    """A `{"diff": ...}` value marks the field changed but never lands as a value."""
    settings = Settings.model_validate(
        {"mappings": {"account_extensions": [{"salesforce": "Notes__c", "logisense": "notes"}]}}
    )
    message = parse(cdc_message(changed=[], fields={"Notes__c": {"diff": "--- \n+++ abc\n@@ -1 +1 @@\n-a\n+b\n"}}))
    event = normalize(message, Filters.from_settings(settings), {}).events[0]
    assert event.changed_fields == ("Notes__c",)
    assert "Notes__c" not in event.fields


@pytest.mark.parametrize(
    "origin",
    ["com/salesforce/api/rest/62.0;client=sfls", "com/salesforce/api/soap/60.0;client=sfls/"],
)
def test_own_echo_is_dropped(filters: Filters, origin: str) -> None:
    """A change whose changeOrigin carries client=sfls is dropped as echo, whatever its type."""
    outcome = normalize(parse(cdc_message(change_type="CREATE", origin=origin)), filters, {})
    assert outcome.events == []
    assert outcome.dropped == {DROP_ECHO: 1}


def test_other_clients_are_not_echo(filters: Filters) -> None:
    """A client id that merely starts with our tag is not our echo."""
    outcome = normalize(parse(cdc_message(change_type="CREATE", origin="x;client=sfls-other")), filters, {})
    assert len(outcome.events) == 1


def test_gap_event_becomes_resyncs_for_each_record(filters: Filters) -> None:
    """GAP_UPDATE with two ids gives two RESYNC events of source gap, without fields."""
    outcome = normalize(parse(cdc_message(change_type="GAP_UPDATE", record_ids=[ACCOUNT_A, ACCOUNT_B])), filters, {})
    assert [(e.change_type, e.source, e.record_id) for e in outcome.events] == [
        (ChangeType.RESYNC, Source.GAP, ACCOUNT_A),
        (ChangeType.RESYNC, Source.GAP, ACCOUNT_B),
    ]
    assert all(e.fields == {} for e in outcome.events)


def test_contact_gap_needs_its_account(filters: Filters) -> None:
    """A Contact GAP_DELETE asks for the (queryAll) account lookup and is keyed by it."""
    message = parse(cdc_message("Contact", "GAP_DELETE"))
    assert records_to_resolve(message, filters) == [(Entity.CONTACT, CONTACT_A)]
    assert normalize(message, filters, {CONTACT_A: ACCOUNT_B}).events[0].account_id == ACCOUNT_B


def test_overflow_becomes_a_request_for_the_entity(filters: Filters) -> None:
    """GAP_OVERFLOW yields no event but an overflow request since its commit timestamp."""
    outcome = normalize(parse(cdc_message(change_type="GAP_OVERFLOW", record_ids=["000000000000000AAA"])), filters, {})
    assert outcome.events == []
    assert outcome.overflow is not None
    assert outcome.overflow.entity is Entity.ACCOUNT
    assert outcome.overflow.since_ms == COMMIT_MS


def _broken(path: list[str], value: Any) -> dict[str, Any]:
    message = cdc_message()
    node: Any = message
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return message


_DELETE = object()
HEADER = ["data", "payload", "ChangeEventHeader"]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"{not json", "bad_json"),
        ([1, 2], "bad_shape"),
        (_broken(["data", "event", "replayId"], "12"), "missing_replay_id"),
        (_broken(["data", "payload"], "x"), "bad_shape"),
        (_broken(HEADER, _DELETE), "missing_header"),
        (_broken([*HEADER, "entityName"], "Lead"), "unknown_entity"),
        (_broken([*HEADER, "changeType"], "SNAPSHOT"), "unknown_change_type"),
        (_broken([*HEADER, "recordIds"], []), "bad_record_ids"),
        (_broken([*HEADER, "recordIds"], ["001*"]), "bad_record_ids"),
        (_broken([*HEADER, "commitTimestamp"], "yesterday"), "bad_header"),
        (_broken([*HEADER, "changedFields"], "Name"), "bad_header"),
        (_broken([*HEADER, "sequenceNumber"], True), "bad_header"),
    ],
)
def test_malformed_messages_raise_with_a_reason(message: Any, reason: str) -> None:
    """Each kind of malformed message is refused with its own reason label."""
    with pytest.raises(MalformedCdcError) as caught:
        parse(message)
    assert caught.value.reason == reason


def test_position_survives_a_malformed_body() -> None:
    """The channel and replay id are read even when the header is missing, so the checkpoint can move."""
    with pytest.raises(MalformedCdcError) as missing_header:
        parse(json.dumps(_broken(HEADER, _DELETE)))
    assert missing_header.value.reason == "missing_header"
    assert missing_header.value.position == ("/data/AccountChangeEvent", 101)
    with pytest.raises(MalformedCdcError) as garbage:
        parse(b"garbage")
    assert garbage.value.position is None


OPPORTUNITY = "006000000000001AAA"
LINE = "00k000000000001AAA"


def test_an_opportunity_event_is_keyed_by_its_account_and_names_itself(filters: Filters) -> None:
    """A StageName update without AccountId takes the account from the lookup and names the opportunity."""
    message = parse(
        cdc_message("Opportunity", "UPDATE", [OPPORTUNITY], changed=["StageName"], fields={"StageName": "Won"})
    )
    assert records_to_resolve(message, filters) == [(Entity.OPPORTUNITY, OPPORTUNITY)]
    [event] = normalize(message, filters, {OPPORTUNITY: ACCOUNT_A}).events
    assert (event.key, event.record_id, event.opportunity_id) == (ACCOUNT_A.encode(), OPPORTUNITY, OPPORTUNITY)


def test_a_line_event_is_keyed_by_its_opportunitys_account(filters: Filters) -> None:
    """A line CREATE names its opportunity, whose account is looked up; an UPDATE without it is looked up whole."""
    created = parse(
        cdc_message("OpportunityLineItem", "CREATE", [LINE], fields={"OpportunityId": OPPORTUNITY, "Quantity": 1})
    )
    assert records_to_resolve(created, filters) == [(Entity.OPPORTUNITY, OPPORTUNITY)]
    [event] = normalize(created, filters, {OPPORTUNITY: ACCOUNT_A}).events
    assert (event.entity, event.key, event.opportunity_id) == (Entity.OPPORTUNITY_LINE, ACCOUNT_A.encode(), OPPORTUNITY)
    updated = parse(
        cdc_message("OpportunityLineItem", "UPDATE", [LINE], changed=["UnitPrice"], fields={"UnitPrice": 5})
    )
    assert records_to_resolve(updated, filters) == [(Entity.OPPORTUNITY_LINE, LINE)]
    [event] = normalize(updated, filters, {OPPORTUNITY: ACCOUNT_A}, {LINE: OPPORTUNITY}).events
    assert (event.key, event.record_id, event.opportunity_id) == (ACCOUNT_A.encode(), LINE, OPPORTUNITY)
    unknown = normalize(updated, filters, {}, {})
    assert (unknown.events, unknown.dropped[DROP_NO_ACCOUNT]) == ([], 1)


def test_opportunity_updates_of_other_fields_are_dropped(filters: Filters) -> None:
    """Only the fields that change a push pass (shared/mapping.py); our write-back fields are not among them."""
    for changed in (["Description"], ["LogiSense_Push_Status__c"]):
        message = parse(cdc_message("Opportunity", "UPDATE", [OPPORTUNITY], changed=changed, fields={changed[0]: "x"}))
        outcome = normalize(message, filters, {OPPORTUNITY: ACCOUNT_A})
        assert (outcome.events, outcome.dropped[DROP_NOT_TRIGGER]) == ([], 1)


def test_opportunity_channels_are_subscribed_only_when_followed() -> None:
    """Default: Account and Contact only; watch or auto_push adds Opportunity, and the line channel from API 60.0."""
    assert channels(Settings()) == ("/data/AccountChangeEvent", "/data/ContactChangeEvent")
    followed = channels(Settings(opportunity={"auto_push": True}))
    assert followed[2:] == ("/data/OpportunityChangeEvent", "/data/OpportunityLineItemChangeEvent")
    old = channels(Settings(opportunity={"watch": True}, salesforce={"api_version": "59.0"}))
    assert old[2:] == ("/data/OpportunityChangeEvent",)
