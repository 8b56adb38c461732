"""`sfls reconcile` end to end: drift injected into the emulators is found exactly once, repaired through the
syncer where repair applies, and reported otherwise (services/reconcile/)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from devstack.process import sfls_command
from shared import kafka
from shared.events import ChangeType, RequestRecord, RequestStatus
from shared.salesforce import SalesforceRest
from shared.settings import KafkaSettings, Settings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.reconcile.support import run_reconcile
from tests.services.syncer.e2e import (
    CONTACT_POINTS,
    committed,
    run_syncer,
    seed_accounts,
    seed_contacts,
    subprocess_env,
    syncer_settings,
)
from tests.services.syncer.support import change, create_syncer_topics, publish, read_all

pytestmark = pytest.mark.integration

UNKNOWN = "001000000000XYZAAA"


def reconcile(settings: Settings, *args: str, **env: str) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """`sfls reconcile --format json ARGS` through the syncer's own mapping (tests/services/syncer/e2e.py)."""
    return run_reconcile(settings, *args, SFLS_MAPPINGS__CONTACT_POINTS=json.dumps(CONTACT_POINTS), **env)


def kinds(drifts: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((d["kind"], d.get("salesforce_id", ""), d.get("field", "")) for d in drifts)


async def _synced(settings: Settings, producer: Producer, accounts: list[str]) -> None:
    topics = create_syncer_topics(settings.kafka)
    before = committed(settings)
    publish(producer, topics.changes, [change(a, change_type=ChangeType.RESYNC) for a in accounts])
    await run_syncer(settings, lambda: committed(settings) >= before + len(accounts))


async def test_every_injected_drift_is_found_once_and_the_repairable_ones_are_repaired_through_the_syncer(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator)
    accounts = seed_accounts(salesforce_emulator, 6)
    await _synced(settings, producer_factory(), accounts[:5])  # accounts[5] never reaches LogiSense
    code, drifts, summary = reconcile(settings)
    assert (code, kinds(drifts), summary["drift"]) == (
        1,
        [("account_missing", accounts[5], "")],
        {"account_missing": 1},
    )

    by_link = {a["sfdcid"][:15]: a for a in logisense_emulator.accounts()}
    edited, duplicated = by_link[accounts[0][:15]], by_link[accounts[1][:15]]
    async with logisense_emulator.client() as client:
        await client.update("Account", int(edited["identity"]), {"name": "Edited by hand"})
        await client.create("Account", {"name": "Nobody's", "sfdcid": UNKNOWN})
        await client.create("Account", {"name": "Second link", "sfdcid": accounts[1]})
    rest = SalesforceRest(salesforce_emulator.settings())
    rest.delete("Account", accounts[2])  # deleted in Salesforce; its LogiSense account stays open
    rest.close()

    code, drifts, summary = reconcile(settings)
    assert code == 1
    assert kinds(drifts) == sorted(
        [
            ("account_missing", accounts[5], ""),
            ("account_field_mismatch", accounts[0], "name"),
            ("account_duplicate_link", accounts[1], ""),
            ("account_orphan", accounts[2], ""),
            ("account_orphan", UNKNOWN, ""),
        ]
    ), drifts
    mismatch = next(d for d in drifts if d["kind"] == "account_field_mismatch")
    assert (mismatch["logisense"], mismatch["salesforce"]) == ("Edited by hand", "Acct 0000")
    assert mismatch["logisense_id"] == int(edited["identity"])
    duplicate = next(d for d in drifts if d["kind"] == "account_duplicate_link")
    assert str(duplicated["identity"]) in duplicate["detail"]
    assert summary["records"] == {"logisense": 7, "logisense_contacts": 0, "salesforce": 6, "salesforce_contacts": 0}

    code, drifts, summary = reconcile(settings, "--repair")
    assert (code, summary["repaired"]) == (1, 2)  # the missing and the mismatched account, through the syncer
    before = committed(settings)
    await run_syncer(settings, lambda: committed(settings) >= before + 2)

    code, drifts, summary = reconcile(settings)
    assert code == 1  # orphans and duplicates are left for a person
    runs = [
        RequestRecord.from_bytes(m.value() or b"")
        for m in read_all(kafka_settings, kafka.Topics(kafka_settings.topic_prefix).requests)
    ]
    runs = [r for r in runs if r.service == "reconcile"]
    assert len(runs) == 4  # one per run: the first, the drifted one, the repair, this one
    assert all(r.status is RequestStatus.FAILED for r in runs)
    assert runs[-1].counts["account_orphan"] == 2
    assert "account_duplicate_link 1" in runs[-1].reason
    assert kinds(drifts) == sorted(
        [
            ("account_duplicate_link", accounts[1], ""),
            ("account_orphan", accounts[2], ""),
            ("account_orphan", UNKNOWN, ""),
        ]
    ), drifts


async def test_a_synced_org_is_in_sync_and_exits_0(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator)
    accounts = seed_accounts(salesforce_emulator, 4)
    seed_contacts(salesforce_emulator, accounts)
    await _synced(settings, producer_factory(), accounts)
    code, drifts, summary = reconcile(settings)
    assert (code, drifts, summary["in_sync"]) == (0, [], True), drifts
    assert summary["records"] == {"logisense": 4, "logisense_contacts": 4, "salesforce": 4, "salesforce_contacts": 4}
    topic = kafka.Topics(kafka_settings.topic_prefix).requests
    [run] = [
        r
        for m in read_all(kafka_settings, topic)
        if (r := RequestRecord.from_bytes(m.value() or b"")).service == "reconcile"
    ]
    assert (run.kind, run.status, run.key, run.reason) == ("reconcile:accounts", RequestStatus.SUCCESS, "accounts", "")
    assert run.counts["records_salesforce"] == 4
    assert run.counts["repaired"] == 0
    code, drifts, _ = reconcile(settings, "--where", f"Id = '{accounts[0]}'")
    assert (code, drifts) == (0, [])


def test_a_bad_where_exits_2_naming_the_option(salesforce_emulator: SalesforceEmulator) -> None:
    done = subprocess.run(
        [*sfls_command(), "reconcile", "--where", "Name = 'x' ORDER BY Name"],
        env=subprocess_env(Settings(salesforce=salesforce_emulator.settings())),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "--where" in done.stderr


async def test_contacts_edited_or_deleted_by_hand_in_logisense_are_found_and_repaired(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """A contact renamed by hand, one deleted there and one whose email was changed there: each found once,
    keyed to its account; `--repair` resyncs those accounts and the syncer puts the contacts back."""
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator)
    accounts = seed_accounts(salesforce_emulator, 3)
    contacts = seed_contacts(salesforce_emulator, accounts)
    await _synced(settings, producer_factory(), accounts)
    assert reconcile(settings)[0] == 0

    async with logisense_emulator.client() as client:
        found = [c async for c in client.search_paged("Contact")]
        points = [p async for p in client.search_paged("Contact/Point")]
        links = {p["contactId"]: p["value"] for p in points if str(p.get("value", "")).startswith("003")}
        by_sf = {links[c["identity"]][:15]: c for c in found if c["identity"] in links}
        renamed, deleted, emailed = (by_sf[c[:15]] for c in contacts)
        await client.update("Contact", int(renamed["identity"]), {"lastName": "Renamed by hand"})
        await client.delete("Contact", int(deleted["identity"]))
        email = next(p for p in points if p["contactId"] == emailed["identity"] and "@" in str(p.get("value", "")))
        await client.update("Contact/Point", int(email["identity"]), {"value": "typo@example.com"})

    code, drifts, _ = reconcile(settings)
    assert code == 1
    assert kinds(drifts) == sorted(
        [
            ("contact_field_mismatch", contacts[0], "lastName"),
            ("contact_missing", contacts[1], ""),
            ("contact_point_mismatch", contacts[2], "email"),
        ]
    ), drifts
    assert {d["account_id"] for d in drifts} == set(accounts)
    point = next(d for d in drifts if d["kind"] == "contact_point_mismatch")
    assert point["logisense"] == {"value": "typo@example.com"}

    code, _, summary = reconcile(settings, "--repair")
    assert (code, summary["repaired"]) == (1, 3)
    before = committed(settings)
    await run_syncer(settings, lambda: committed(settings) >= before + 3)
    code, drifts, summary = reconcile(settings)
    assert (code, drifts, summary["in_sync"]) == (0, [], True)


async def test_sorting_on_disk_and_reading_through_bulk_query_jobs_find_the_same_drift(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """Sort runs of 4 records (every side spills to temporary files) and Bulk API 2.0 query jobs for every
    Salesforce read give exactly the drift of the default read, account and contact kinds alike."""
    sf, ls = salesforce_emulator, logisense_emulator
    settings = syncer_settings(kafka_settings, sf, ls)
    accounts = seed_accounts(sf, 24)
    contacts = seed_contacts(sf, accounts[:12])
    await _synced(settings, producer_factory(), accounts[:20])  # 20..23 never reach LogiSense
    by_link = {a["sfdcid"][:15]: a for a in ls.accounts()}
    async with ls.client() as client:
        await client.update("Account", int(by_link[accounts[3][:15]]["identity"]), {"name": "Edited by hand"})
        await client.create("Account", {"name": "Second link", "sfdcid": accounts[7]})
        await client.create("Account", {"name": "Nobody's", "sfdcid": UNKNOWN})
        found = [c async for c in client.search_paged("Contact")]
        await client.update("Contact", int(found[0]["identity"]), {"lastName": "Renamed by hand"})
        await client.delete("Contact", int(found[1]["identity"]))
    rest = SalesforceRest(sf.settings())
    rest.delete("Account", accounts[11])
    rest.delete("Contact", contacts[5])
    rest.close()

    default = reconcile(settings)
    jobs_before = sf.admin("GET", "limits")["limits"]["DailyBulkV2QueryJobs"]["used"]
    on_disk = reconcile(settings, SFLS_RECONCILE__SORT_CHUNK_RECORDS="4", SFLS_RECONCILE__BULK_THRESHOLD="1")

    assert default[0] == on_disk[0] == 1
    assert len(default[1]) >= 8, default[1]  # every kind above was found
    assert sorted(json.dumps(d, sort_keys=True) for d in on_disk[1]) == sorted(
        json.dumps(d, sort_keys=True) for d in default[1]
    )
    assert on_disk[2]["drift"] == default[2]["drift"]
    assert on_disk[2]["records"] == default[2]["records"]
    assert sf.admin("GET", "limits")["limits"]["DailyBulkV2QueryJobs"]["used"] - jobs_before == 2  # both reads
