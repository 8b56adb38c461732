"""The listener end to end: Salesforce emulator (REST writes -> CDC) -> listener -> Kafka (read_committed)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.listener.app import OPPORTUNITY_RESYNC_NAME, RESYNC_NAME
from services.listener.publisher import BackfillProgress
from shared import kafka
from shared.deadletter import ERROR_CLASS
from shared.events import ChangeType, Entity, Source
from shared.settings import KafkaSettings, OpportunitySettings
from tests.services.listener.conftest import (
    ListenerThread,
    events_after_sync,
    listener_settings,
    state_of,
    wait_checkpointed,
    wait_until,
)
from tests.services.listener.support import SalesforceApi, cdc_message, change_events, read_committed

pytestmark = pytest.mark.integration

ACCOUNTS = "/data/AccountChangeEvent"
CONTACTS = "/data/ContactChangeEvent"
OPPORTUNITIES = "/data/OpportunityChangeEvent"
LINES = "/data/OpportunityLineItemChangeEvent"


@pytest.fixture
def api(emulator: Any) -> Iterator[SalesforceApi]:
    """REST writes against the emulator, as a Salesforce user would make them."""
    client = SalesforceApi(emulator.settings())
    yield client
    client.close()


def _accounts(emulator: Any, n: int, prefix: str = "Acme") -> list[str]:
    """Create accounts without CDC (admin API), so tests start from a known state."""
    answer = emulator.admin(
        "POST", "/records", {"sobject": "Account", "records": [{"Name": f"{prefix} {i}"} for i in range(n)]}
    )
    return list(answer["ids"])


def test_name_update_gives_exactly_one_event(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """A REST update of Name produces exactly one UPDATE event keyed by the account, with the new Name."""
    (account,) = _accounts(emulator, 1)
    run_listener_thread()
    api.update("Account", account, {"Name": "Renamed"})
    events = events_after_sync(emulator, kafka_settings, ACCOUNTS)
    assert len(events) == 1
    event = events[0]
    assert event.key == account.encode()
    assert (event.entity, event.change_type, event.source) == (Entity.ACCOUNT, ChangeType.UPDATE, Source.CDC)
    assert event.fields["Name"] == "Renamed"
    assert "Name" in event.changed_fields


def test_description_only_update_gives_no_event_and_composite_gives_three(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """A Description-only update is dropped; one composite update of 3 accounts gives 3 events."""
    accounts = _accounts(emulator, 4)
    run_listener_thread()
    api.update("Account", accounts[3], {"Description": "only a note"})
    api.update_many("Account", [{"Id": a, "Type": "Customer"} for a in accounts[:3]])
    events = events_after_sync(emulator, kafka_settings, ACCOUNTS)
    assert sorted(e.record_id for e in events) == sorted(accounts[:3])
    assert all(e.fields.get("Type") == "Customer" for e in events)
    assert len({e.event_id for e in events}) == 3


def test_contact_update_without_account_id_is_keyed_by_its_account(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """A Contact Title update (payload lacks AccountId) is keyed by the contact's account."""
    (account,) = _accounts(emulator, 1)
    answer = emulator.admin(
        "POST", "/records", {"sobject": "Contact", "records": [{"LastName": "Lovelace", "AccountId": account}]}
    )
    (contact,) = answer["ids"]
    run_listener_thread()
    api.update("Contact", contact, {"Title": "CFO"})
    events = events_after_sync(emulator, kafka_settings, CONTACTS)
    assert [(e.entity, e.record_id, e.key) for e in events] == [(Entity.CONTACT, contact, account.encode())]
    assert "AccountId" not in events[0].fields


def test_echo_gaps_overflow_and_malformed_messages(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """Own echo is dropped; GAP_UPDATE and GAP_OVERFLOW become resyncs; a malformed message is dead-lettered."""
    accounts = _accounts(emulator, 3)
    run_listener_thread()
    api.update("Account", accounts[0], {"Name": "by sfls"}, client="sfls")
    emulator.admin("POST", "/cdc/gap", {"entity": "Account", "changeType": "GAP_UPDATE", "recordIds": accounts[:2]})
    emulator.admin("POST", "/cdc/overflow", {"entity": "Account"})
    broken = cdc_message(channel=ACCOUNTS)
    del broken["data"]["payload"]["ChangeEventHeader"]
    emulator.admin("POST", "/cdc/publish", {"message": broken})
    api.update("Account", accounts[2], {"Name": "after the broken one"})
    events = events_after_sync(emulator, kafka_settings, ACCOUNTS)
    gap = sorted(e.record_id for e in events if e.source is Source.GAP)
    assert gap == sorted(accounts[:2])
    overflow = [e for e in events if e.source is Source.OVERFLOW]
    assert accounts[0] in {e.record_id for e in overflow}  # modified (by our echo) after the overflow's commit
    assert all(e.change_type is ChangeType.RESYNC for e in overflow)
    cdc = [e for e in events if e.source is Source.CDC]
    assert [(e.record_id, e.fields.get("Name")) for e in cdc] == [(accounts[2], "after the broken one")]
    dead = read_committed(kafka_settings, kafka.Topics(kafka_settings.topic_prefix).listener_dlt)
    assert len(dead) == 1
    headers = dict(dead[0].headers() or [])
    if emulator.transport == "cometd":  # the raw JSON message, which has its replay id
        assert headers[ERROR_CLASS] == b"MalformedCdcMessage.missing_header"
        assert json.loads(dead[0].value() or b"")["data"]["event"]["replayId"] > 0
    else:  # a message Avro cannot carry: its undecodable payload bytes
        assert headers[ERROR_CLASS] == b"MalformedCdcMessage.bad_avro"
        assert dead[0].value()


def test_an_overflow_is_read_from_a_slow_salesforce_before_the_transaction_opens(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """GAP_OVERFLOW over many query pages of a slow Salesforce: every page is read before the Kafka transaction
    opens, so paging that takes longer than the transaction timeout still commits, each record once."""
    accounts = _accounts(emulator, 200)
    emulator.admin("POST", "/cdc/overflow", {"entity": "Account"})
    api.update_many("Account", [{"Id": account, "Description": "after the overflow"} for account in accounts])
    emulator.admin("POST", "/settings", {"query_batch_size": 20})  # ten pages
    # Ten pages take longer than the transaction timeout plus the broker's abort sweep (5 s on the test broker).
    emulator.admin("POST", "/latency", {"ms": 1000})
    try:
        run_listener_thread(initial_replay=-2, transaction_timeout_seconds=2.0)
        events = events_after_sync(emulator, kafka_settings, ACCOUNTS)
    finally:
        emulator.admin("POST", "/latency", {"ms": 0})
    overflow = [e.record_id for e in events if e.source is Source.OVERFLOW]
    assert sorted(overflow) == sorted(accounts)


def test_restart_resumes_after_the_checkpoint_without_duplicates(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """Changes made while the listener is down are delivered after restart, each exactly once."""
    accounts = _accounts(emulator, 3)
    first = run_listener_thread()
    api.update("Account", accounts[0], {"Name": "one"})
    wait_checkpointed(emulator, kafka_settings, ACCOUNTS)
    first.stop()
    api.update("Account", accounts[1], {"Name": "two"})
    api.update("Account", accounts[2], {"Name": "three"})
    run_listener_thread(first.settings)  # same transactional id and prefix: resumes from the checkpoint
    events = events_after_sync(emulator, kafka_settings, ACCOUNTS)
    assert [e.fields["Name"] for e in events if e.source is Source.CDC] == ["one", "two", "three"]


def test_session_expiry_and_dropped_connections_are_survived(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """Expired sessions/tokens and dropped long polls are survived without losing or repeating events."""
    accounts = _accounts(emulator, 3)
    run_listener_thread()
    api.update("Account", accounts[0], {"Name": "before"})
    wait_checkpointed(emulator, kafka_settings, ACCOUNTS)
    emulator.admin("POST", "/sessions/expire")
    api = SalesforceApi(emulator.settings())  # our own REST token expired too
    api.update("Account", accounts[1], {"Name": "after expiry"})
    wait_checkpointed(emulator, kafka_settings, ACCOUNTS)
    emulator.admin("POST", "/connections/drop")
    api.update("Account", accounts[2], {"Name": "after drop"})
    events = events_after_sync(emulator, kafka_settings, ACCOUNTS)
    api.close()
    assert [e.fields["Name"] for e in events] == ["before", "after expiry", "after drop"]


def test_expired_checkpoint_triggers_a_full_resync(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """A checkpoint older than the retention window: subscribe from new events and resync every account."""
    accounts = _accounts(emulator, 5)
    first = run_listener_thread()
    api.update("Account", accounts[0], {"Name": "seen"})
    wait_checkpointed(emulator, kafka_settings, ACCOUNTS)
    first.stop()
    api.update("Account", accounts[1], {"Name": "lost to retention"})
    last = emulator.admin("GET", "/cdc/events")["last"]
    emulator.admin("POST", "/retention", {"oldest_replay_id": last + 1})
    run_listener_thread(first.settings)
    wait_until(lambda: state_of(kafka_settings).backfills.get(RESYNC_NAME), what="full resync", until=_done)
    api.update("Account", accounts[2], {"Name": "new after resync"})
    events = events_after_sync(emulator, kafka_settings, ACCOUNTS)
    resynced = {e.record_id for e in events if e.source is Source.BACKFILL}
    assert resynced == set(accounts)
    assert [e.fields["Name"] for e in events if e.source is Source.CDC] == ["seen", "new after resync"]


def _done(progress: BackfillProgress | None) -> bool:
    return progress is not None and progress.done


@pytest.mark.transports("cometd")  # a CometD re-handshake; Pub/Sub's stalled-stream watchdog is tested on its own
def test_silently_dropped_resubscription_is_caught_by_the_watchdog(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """A re-handshake whose re-subscribe is refused (stale id) is detected and rebuilt into a resync."""
    accounts = _accounts(emulator, 2)
    run_listener_thread()
    api.update("Account", accounts[0], {"Name": "seen"})
    wait_checkpointed(emulator, kafka_settings, ACCOUNTS)
    last = emulator.admin("GET", "/cdc/events")["last"]
    emulator.admin("POST", "/retention", {"oldest_replay_id": last + 1})
    emulator.admin("POST", "/sessions/expire", {"cometd": True, "tokens": False})
    wait_until(lambda: state_of(kafka_settings).backfills.get(RESYNC_NAME), what="full resync", until=_done)
    api.update("Account", accounts[1], {"Name": "after watchdog"})
    events = events_after_sync(emulator, kafka_settings, ACCOUNTS)
    assert [e.fields["Name"] for e in events if e.source is Source.CDC] == ["seen", "after watchdog"]
    assert {e.record_id for e in events if e.source is Source.BACKFILL} == set(accounts)


def test_opportunity_and_line_changes_are_keyed_by_the_account_when_followed(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """With opportunity.watch on, Opportunity and OpportunityLineItem changes become events keyed by the
    opportunity's AccountId and naming the opportunity, also when the payload lacks AccountId/OpportunityId;
    an Opportunity update of a non-trigger field gives no event."""
    (account,) = _accounts(emulator, 1)
    book = api.create("Pricebook2", {"Name": "LogiSense Price Book", "IsActive": True})
    product = api.create("Product2", {"Name": "Fibre", "ProductCode": "FIB", "IsActive": True, "LogiSense_Id__c": "7"})
    [standard] = api.call("GET", "/query?q=SELECT+Id+FROM+Pricebook2+WHERE+IsStandard+=+true")["records"]
    entry = {"Product2Id": product, "UnitPrice": 100, "IsActive": True}
    api.create("PricebookEntry", {**entry, "Pricebook2Id": standard["Id"]})
    book_entry = api.create("PricebookEntry", {**entry, "Pricebook2Id": book})
    settings = listener_settings(emulator, kafka_settings)
    run_listener_thread(settings.model_copy(update={"opportunity": OpportunitySettings(watch=True)}))

    deal = {"Name": "Deal", "AccountId": account, "StageName": "Prospecting", "CloseDate": "2026-11-30"}
    opportunity = api.create("Opportunity", {**deal, "Pricebook2Id": book})
    line = api.create(
        "OpportunityLineItem",
        {"OpportunityId": opportunity, "PricebookEntryId": book_entry, "Quantity": 1, "UnitPrice": 90},
    )
    api.update("OpportunityLineItem", line, {"UnitPrice": 80})
    api.update("Opportunity", opportunity, {"Description": "not a trigger field"})
    api.update("Opportunity", opportunity, {"StageName": "Closed Won"})
    api.delete("OpportunityLineItem", line)

    events = events_after_sync(emulator, kafka_settings, OPPORTUNITIES, LINES)
    assert events, "no opportunity events"
    assert {(e.key, e.opportunity_id) for e in events} == {(account.encode(), opportunity)}
    kinds = {(e.entity, e.change_type, e.record_id) for e in events}
    assert {
        (Entity.OPPORTUNITY, ChangeType.CREATE, opportunity),
        (Entity.OPPORTUNITY_LINE, ChangeType.CREATE, line),
        (Entity.OPPORTUNITY_LINE, ChangeType.UPDATE, line),
        (Entity.OPPORTUNITY_LINE, ChangeType.DELETE, line),
    } <= kinds
    stage = [e for e in events if e.entity is Entity.OPPORTUNITY and "StageName" in e.changed_fields]
    assert len(stage) == 1
    assert "AccountId" not in stage[0].fields
    assert not [e for e in events if e.changed_fields == ("Description",)]


def test_opportunity_changes_are_not_followed_by_default(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """With opportunity.watch and auto_push off, an opportunity change gives no event and no subscription."""
    (account,) = _accounts(emulator, 1)
    run_listener_thread()
    api.create(
        "Opportunity", {"Name": "Deal", "AccountId": account, "StageName": "Prospecting", "CloseDate": "2026-11-30"}
    )
    api.update("Account", account, {"Name": "Renamed"})
    events = events_after_sync(emulator, kafka_settings, ACCOUNTS)
    assert [(e.entity, e.record_id) for e in events] == [(Entity.ACCOUNT, account)]


def test_an_expired_opportunity_checkpoint_resyncs_the_won_opportunities(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """Opportunities followed, their checkpoint past retention: every won opportunity (only those) gets a RESYNC
    event keyed by its account, so the syncer pushes what changed while the listener was away."""
    accounts = _accounts(emulator, 2)
    deal = {"CloseDate": "2026-11-30", "AccountId": accounts[0]}
    settings = listener_settings(emulator, kafka_settings).model_copy(
        update={"opportunity": OpportunitySettings(watch=True)}
    )
    first = run_listener_thread(settings)
    api.create("Opportunity", {**deal, "Name": "seen", "StageName": "Prospecting"})
    wait_checkpointed(emulator, kafka_settings, OPPORTUNITIES)
    first.stop()
    won = api.create("Opportunity", {**deal, "Name": "won while away", "StageName": "Closed Won"})
    also_won = api.create(
        "Opportunity", {**deal, "AccountId": accounts[1], "Name": "won too", "StageName": "Closed Won"}
    )
    last = emulator.admin("GET", "/cdc/events")["last"]
    emulator.admin("POST", "/retention", {"oldest_replay_id": last + 1})
    run_listener_thread(settings)
    wait_until(
        lambda: state_of(kafka_settings).backfills.get(OPPORTUNITY_RESYNC_NAME), what="opportunity resync", until=_done
    )
    events = [
        e for e in change_events(kafka_settings) if e.source is Source.BACKFILL and e.entity is Entity.OPPORTUNITY
    ]
    assert {(e.record_id, e.key, e.opportunity_id) for e in events} == {
        (won, accounts[0].encode(), won),
        (also_won, accounts[1].encode(), also_won),
    }


@pytest.mark.transports("pubsub")
def test_a_silently_stalled_pubsub_stream_is_resubscribed_by_the_watchdog(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """No event and no keepalive for `pubsub_watchdog_seconds`: the streams are cancelled and resubscribed from the
    checkpoint, and changes made meanwhile arrive once."""
    from prometheus_client import REGISTRY

    def stalled() -> float:
        return REGISTRY.get_sample_value("sfls_listener_reconnects_total", {"reason": "stream_stalled"}) or 0.0

    accounts = _accounts(emulator, 2)
    run_listener_thread(pubsub_watchdog_seconds=3.0)
    api.update("Account", accounts[0], {"Name": "before the stall"})
    wait_checkpointed(emulator, kafka_settings, ACCOUNTS)
    before = stalled()
    emulator.admin("POST", "/pubsub/faults", {"keepalives": False})
    wait_until(stalled, 30, "a stream_stalled resubscribe", until=lambda seen: seen > before)
    emulator.admin("POST", "/pubsub/faults", {"reset": True})
    api.update("Account", accounts[1], {"Name": "after the stall"})
    events = events_after_sync(emulator, kafka_settings, ACCOUNTS)
    assert [e.fields["Name"] for e in events if e.source is Source.CDC] == ["before the stall", "after the stall"]


@pytest.mark.transports("cometd")
def test_a_switch_of_transport_is_a_full_resync_never_a_silent_gap(
    emulator: Any, api: SalesforceApi, kafka_settings: KafkaSettings, run_listener_thread: Callable[..., ListenerThread]
) -> None:
    """A checkpoint written over CometD means nothing to Pub/Sub: the restarted listener counts a transport_switch
    resync, resyncs every account, subscribes from new events, and its first commit replaces the checkpoint."""
    from prometheus_client import REGISTRY

    def switches() -> float:
        return REGISTRY.get_sample_value("sfls_listener_resyncs_total", {"reason": "transport_switch"}) or 0.0

    accounts = _accounts(emulator, 3)
    first = run_listener_thread()
    api.update("Account", accounts[0], {"Name": "over CometD"})
    wait_checkpointed(emulator, kafka_settings, ACCOUNTS)
    first.stop()
    assert state_of(kafka_settings).checkpoints[ACCOUNTS].transport == "cometd"
    before = switches()
    salesforce = first.settings.salesforce.model_copy(update={"transport": "pubsub"})
    run_listener_thread(first.settings.model_copy(update={"salesforce": salesforce}))
    assert switches() >= before + 1
    wait_until(lambda: state_of(kafka_settings).backfills.get(RESYNC_NAME), what="full resync", until=_done)
    api.update("Account", accounts[1], {"Name": "over Pub/Sub"})
    events = events_after_sync(emulator, kafka_settings, ACCOUNTS)
    assert {e.record_id for e in events if e.source is Source.BACKFILL} == set(accounts)
    assert [e.fields["Name"] for e in events if e.source is Source.CDC] == ["over CometD", "over Pub/Sub"]
    checkpoint = state_of(kafka_settings).checkpoints[ACCOUNTS]
    assert (checkpoint.transport, bool(checkpoint.pubsub_replay_id)) == ("pubsub", True)
