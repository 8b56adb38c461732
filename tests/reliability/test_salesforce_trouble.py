"""Salesforce trouble: session expiry during a long poll, a replay id expired during downtime, GAP_OVERFLOW.

What the README's Listener section promises: the listener re-authenticates and resubscribes from its checkpoint; when
Salesforce no longer retains that replay id it subscribes from new events and publishes a full
resync; gap events resync their records and GAP_OVERFLOW resyncs every record of the entity
changed since the overflow. Each test ends with LogiSense equal to Salesforce field for field.
CI size: 150 accounts with one contact each; `SFLS_RELIABILITY_SCALE=full`: 1,000.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from devstack.salesforce.base import format_datetime
from shared.events import ChangeType, Source
from shared.settings import KafkaSettings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.reliability.support import (
    CHANNELS,
    ChangeWriter,
    Pipeline,
    dead_letters,
    missing_changes,
    pipeline,
    published_events,
    scaled,
    seed,
    wait_converged,
    wait_until,
)
from tests.services.listener.conftest import state_of

pytestmark = [pytest.mark.failure, pytest.mark.integration]

ACCOUNTS = scaled(150, 1000)
CONVERGE_SECONDS = scaled(90, 600)


def converge(run: Pipeline) -> None:
    wait_converged(run.sf, run.ls, run.settings, CONVERGE_SECONDS, alive=run.check_alive, context=run.logs)


def checkpointed(run: Pipeline) -> None:
    """Wait until the listener committed the newest CDC message of every channel."""
    events = run.sf.events()
    newest = {c: max((e["replayId"] for e in events if c in e["channels"]), default=0) for c in CHANNELS}
    wanted = {channel: last for channel, last in newest.items() if last}

    def checkpoints() -> dict[str, int]:
        return {channel: c.replay_id for channel, c in state_of(run.kafka_settings).checkpoints.items()}

    def reached(seen: dict[str, int]) -> bool:
        return all(seen.get(channel, 0) >= last for channel, last in wanted.items())

    wait_until(checkpoints, 60, f"the listener's checkpoints to reach {wanted}", until=reached)


@pytest.mark.timeout(scaled(180, 900))
def test_session_expiry_during_a_long_poll_reauthenticates_and_loses_nothing(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    tmp_path: Path,
) -> None:
    """Every session and token expires while a long poll is held: both services log in again, nothing is lost."""
    sf = salesforce_emulator
    sf.tune(cometd_timeout_ms=8000)  # long polls held 8 s, so the expiry lands inside one
    accounts, contacts = seed(sf, ACCOUNTS)
    writer = ChangeWriter(sf, accounts, contacts)
    with pipeline(kafka_settings, sf, logisense_emulator, tmp_path, sync={"interval_minutes": 0.02}) as run:
        try:
            run.start_listener()
            run.start_syncer()
            writer.rename_all("initial")
            converge(run)
            time.sleep(2)  # the listener is idle inside a held /meta/connect
            before = sf.counters()
            expired = sf.admin("POST", "sessions/expire")
            assert expired["expired_sessions"] >= 1
            writer.relogin()
            writer.round(1)
            writer.round(2)
        finally:
            writer.close()
        converge(run)
        after = sf.counters()
        assert after["token"] > before["token"] + 1  # our writer and at least one service logged in again
        assert after["cometd"]["handshake"] > before["cometd"].get("handshake", 0)
        assert missing_changes(sf, kafka_settings, run.settings) == []
        assert dead_letters(kafka_settings) == []


@pytest.mark.timeout(scaled(180, 900))
def test_replay_id_expired_during_downtime_triggers_a_full_resync(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    tmp_path: Path,
) -> None:
    """Listener down while retention passes its checkpoint: on restart it resyncs every account, LogiSense converges."""
    sf = salesforce_emulator
    accounts, contacts = seed(sf, ACCOUNTS)
    writer = ChangeWriter(sf, accounts, contacts)
    with pipeline(kafka_settings, sf, logisense_emulator, tmp_path, sync={"interval_minutes": 0.02}) as run:
        try:
            listener = run.start_listener()
            run.start_syncer()
            writer.rename_all("initial")
            converge(run)
            checkpointed(run)
            assert listener.terminate() == 0
            writer.round(1)  # changes the listener will never receive as CDC
            writer.round(2)
        finally:
            writer.close()
        last = sf.admin("GET", "cdc/events")["last"]
        sf.admin("POST", "retention", {"oldest_replay_id": last + 1})  # everything up to now is gone
        run.start_listener()
        converge(run)
        resynced = {
            e.record_id[:15]
            for e in published_events(kafka_settings)
            if e.source is Source.BACKFILL and e.change_type is ChangeType.RESYNC
        }
        assert resynced == {a[:15] for a in accounts}
        assert "replay id no longer retained" in (tmp_path / "listener.log").read_text()
        assert dead_letters(kafka_settings) == []


def _silently(sf: SalesforceEmulator, sobject: str, ids: set[str], change: dict[str, Any], stamp: str) -> None:
    """Change records without CDC (admin replace), stamped as modified at `stamp`."""
    records = [r for r in sf.records(sobject) if r["Id"] in ids]
    assert len(records) == len(ids)
    sf.seed(sobject, [{**r, **change, "LastModifiedDate": stamp} for r in records])


@pytest.mark.timeout(scaled(180, 900))
def test_gap_and_gap_overflow_resync_the_changes_whose_events_were_lost(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    tmp_path: Path,
) -> None:
    """Changes with only a GAP_UPDATE or a GAP_OVERFLOW to show for them reach LogiSense through resyncs."""
    sf = salesforce_emulator
    accounts, contacts = seed(sf, ACCOUNTS)
    writer = ChangeWriter(sf, accounts, contacts)
    with pipeline(kafka_settings, sf, logisense_emulator, tmp_path, sync={"interval_minutes": 0.02}) as run:
        try:
            run.start_listener()
            run.start_syncer()
            writer.rename_all("initial")
        finally:
            writer.close()
        converge(run)
        # A transaction too big for CDC: its changes carry its commit time and produce no events.
        stamp = format_datetime(int((time.time() + 2) * 1000))
        overflowed = set(accounts[: len(accounts) // 2])
        _silently(sf, "Account", overflowed, {"Name": "Renamed in bulk", "LogiSense_AR_Term__c": "Net 60"}, stamp)
        touched_contacts = set(contacts[len(contacts) // 2 :])
        _silently(sf, "Contact", touched_contacts, {"Title": "Bulk title"}, stamp)
        gapped = accounts[-5:]
        _silently(sf, "Account", set(gapped), {"Type": "Reseller"}, stamp)
        sf.admin("POST", "cdc/gap", {"entity": "Account", "changeType": "GAP_UPDATE", "recordIds": gapped})
        sf.admin("POST", "cdc/overflow", {"entity": "Account"})
        sf.admin("POST", "cdc/overflow", {"entity": "Contact"})
        converge(run)
        events = published_events(kafka_settings)
        assert {e.record_id[:15] for e in events if e.source is Source.GAP} == {a[:15] for a in gapped}
        overflow = {e.record_id[:15] for e in events if e.source is Source.OVERFLOW}
        assert {a[:15] for a in overflowed} | {c[:15] for c in touched_contacts} <= overflow
        assert dead_letters(kafka_settings) == []
