"""The Requests tab end to end: the syncer's failure and its replay as one request going Failed -> Success with
one error log and the Account link following it; `off` writes nothing; kill -9 of the writer mid-batch and a
restart land every record once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from devstack.process import ServiceProcess
from services.cli import app
from services.requests_tab.records import letter_id, parent_id
from services.syncer.dlq import dead_letters
from shared import kafka
from shared.deadletter import DeadLetter, Failure, dead_letter_headers, dead_letter_of
from shared.events import RequestRecord, RequestStatus
from shared.salesforce_view import (
    ACCOUNT_LAST_SYNC,
    ACCOUNT_LOGISENSE_ID,
    ACCOUNT_SYNC_REASON,
    ACCOUNT_SYNC_STATUS,
    ERROR_ID,
    ERROR_OBJECT,
    REQUEST_ID,
    REQUEST_OBJECT,
)
from shared.settings import KafkaSettings, RequestsTabSettings, Settings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.fixtures.schema import deploy_schema
from tests.services.requests_tab.support import org_records, request_record, run_tab, tab_committed
from tests.services.syncer.e2e import committed, run_syncer, seed_accounts, settings_with_notes, subprocess_env
from tests.services.syncer.support import change, create_syncer_topics, publish
from tests.services.syncer.test_dlq import cli
from tests.services.syncer.test_process import wait_for

pytestmark = pytest.mark.integration


def with_tab(settings: Settings, **tab: object) -> Settings:
    return settings.model_copy(update={"requests_tab": RequestsTabSettings(**tab)})  # type: ignore[arg-type]


def account(sf: SalesforceEmulator, account_id: str) -> dict[str, object]:
    (found,) = [a for a in sf.records("Account") if a["Id"] == account_id]
    return found


async def test_a_failure_and_its_replay_are_one_request_going_from_failed_to_success(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """A LogiSense 400 lands as a Failed request with one error log (its replay command included) and the
    Account's link says Failed; after the fix and `sfls dlq replay` the same request is Success, still with one
    error log, and the Account carries its LogiSense id. The good account's Success stays out (`failures`)."""
    sf = salesforce_emulator
    settings = with_tab(settings_with_notes(kafka_settings, sf, logisense_emulator), flush_seconds=0.2)
    deploy_schema(sf, settings)
    topics = create_syncer_topics(kafka_settings)
    (bad,) = seed_accounts(sf, 1, prefix="Bad", Description="x" * 300)
    (good,) = seed_accounts(sf, 1, prefix="Good", Description="Key account")
    publish(producer_factory(), topics.changes, [change(bad), change(good)])
    await run_syncer(settings, lambda: committed(settings) >= 2)

    await run_tab(settings, sf, lambda: [len(x) for x in org_records(sf)] == [1, 1])
    (request,), (error,) = org_records(sf)
    (letter,) = dead_letters(kafka_settings, topics.changes_dlt)
    assert (request["Status__c"], request["Kind__c"], request["Account__c"]) == ("Failed", "account_sync", bad)
    assert "notes" in str(request["Reason__c"])
    assert error["Request__c"] == request["Id"]
    assert (error["Error_Class__c"], error["HTTP_Status__c"]) == ("RejectedError", 400)
    assert error["Dead_Letter_Id__c"] == letter_id(letter)
    assert error["Replay_Command__c"] == f"sfls dlq replay --at {letter.partition}:{letter.offset}"
    assert account(sf, bad)[ACCOUNT_SYNC_STATUS] == "Failed"
    assert "notes" in str(account(sf, bad)[ACCOUNT_SYNC_REASON])
    assert account(sf, bad)[ACCOUNT_LOGISENSE_ID] is None
    landed = {a["sfdcid"]: a for a in logisense_emulator.accounts()}
    assert account(sf, good)[ACCOUNT_SYNC_STATUS] == "Synced"
    assert account(sf, good)[ACCOUNT_LOGISENSE_ID] == str(landed[good]["identity"])
    assert account(sf, good)[ACCOUNT_LAST_SYNC]

    sf.rest().update("Account", bad, {"Description": "Fixed"})
    assert "replayed 1 dead letter" in cli(
        kafka_settings, "dlq", "replay", "--at", f"{letter.partition}:{letter.offset}"
    )
    await run_syncer(settings, lambda: committed(settings) >= 3)
    await run_tab(settings, sf, lambda: [r["Status__c"] for r in org_records(sf)[0]] == ["Success"])

    (after,), errors = org_records(sf)
    assert after["Id"] == request["Id"]
    assert after["Request_Id__c"] == request["Request_Id__c"]
    assert after["Reason__c"] is None
    assert [e["Id"] for e in errors] == [error["Id"]]
    landed = {a["sfdcid"]: a for a in logisense_emulator.accounts()}
    assert account(sf, bad)[ACCOUNT_SYNC_STATUS] == "Synced"
    assert account(sf, bad)[ACCOUNT_LOGISENSE_ID] == str(landed[bad]["identity"])
    assert account(sf, bad)[ACCOUNT_SYNC_REASON] is None


async def test_off_writes_nothing(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """Mode `off` reads and commits the request log and the dead letters but never calls Salesforce."""
    sf = salesforce_emulator
    settings = with_tab(settings_with_notes(kafka_settings, sf, logisense_emulator), mode="off", flush_seconds=0.2)
    deploy_schema(sf, settings)
    topics = create_syncer_topics(kafka_settings)
    records = [request_record(f"001{i:015d}") for i in range(20)]
    kafka.produce_and_flush(producer_factory(), topics.requests, ((r.key.encode(), r.to_bytes(), []) for r in records))
    before = sf.counters()["total"]

    await run_tab(settings, sf, lambda: tab_committed(settings) >= 20)

    assert org_records(sf) == ([], [])
    assert sf.counters()["total"] == before


@pytest.mark.failure
def test_kill_minus_nine_mid_batch_then_restart_lands_every_record_once(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
    tmp_path: Path,
) -> None:
    """SIGKILL while the writer is half-way through its upserts, restart: each request and error log once."""
    sf = salesforce_emulator
    settings = settings_with_notes(kafka_settings, sf, logisense_emulator)
    deploy_schema(sf, settings)
    topics = create_syncer_topics(kafka_settings)
    records: list[RequestRecord] = [request_record(f"001{i:015d}") for i in range(1500)]
    records += [request_record(f"001{i:015d}", RequestStatus.SUCCESS) for i in range(500)]  # not landed
    producer = producer_factory()
    kafka.produce_and_flush(producer, topics.requests, ((r.key.encode(), r.to_bytes(), []) for r in records))
    env = subprocess_env(
        settings,
        SFLS_REQUESTS_TAB__BATCH_RECORDS="2000",
        SFLS_REQUESTS_TAB__FLUSH_SECONDS="1",
        SFLS_KAFKA__SESSION_TIMEOUT_MS="6000",
    )
    sf.admin("POST", "latency", {"ms": 250})  # each composite call of 200 takes a while: the kill lands mid-batch
    log = tmp_path / "tab.log"
    first = ServiceProcess.sfls("requests-tab", "run", env=env, log=log)
    try:
        wait_for(first, lambda: len(org_records(sf)[0]), at_least=400, seconds=60, what="requests landed")
    finally:
        first.kill()
    partial = len(org_records(sf)[0])
    assert 400 <= partial < 1500
    assert tab_committed(settings) == 0
    sf.admin("POST", "latency", {"ms": 0})

    second = ServiceProcess.sfls("requests-tab", "run", env=env, log=log)
    try:
        wait_for(second, lambda: tab_committed(settings), at_least=2000, seconds=90, what="records committed")
        assert second.terminate(30) == 0
    finally:
        second.kill()
    requests, _ = org_records(sf)
    ids = [r["Request_Id__c"] for r in requests]
    assert len(ids) == len(set(ids)) == 1500
    assert set(ids) == {r.request_id for r in records[:1500]}
    assert {r["Status__c"] for r in requests} == {"Failed"}


def test_purge_deletes_the_expired_requests_with_their_error_logs_in_one_bulk_job(
    kafka_settings: KafkaSettings, salesforce_emulator: SalesforceEmulator, logisense_emulator: LogisenseEmulator
) -> None:
    """`sfls requests-tab purge`: requests started before the retention go, their error logs with them."""
    sf = salesforce_emulator
    settings = settings_with_notes(kafka_settings, sf, logisense_emulator)
    deploy_schema(sf, settings)
    now = datetime.now(UTC)
    old = [now - timedelta(days=40 + i) for i in range(30)]
    recent = [now - timedelta(days=i) for i in range(5)]
    ids = sf.seed(
        REQUEST_OBJECT,
        [
            {"Name": f"r{i}", REQUEST_ID: f"r{i}", "Status__c": "Failed", "Started__c": t.isoformat()}
            for i, t in enumerate(old + recent)
        ],
    )
    sf.seed(ERROR_OBJECT, [{"Name": "e", ERROR_ID: f"t:0:{i}", "Request__c": ids[i]} for i in range(0, 35, 5)])
    env = subprocess_env(settings, COLUMNS="200")
    runner = CliRunner()

    dry = runner.invoke(app, ["requests-tab", "purge", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would delete 30 request(s) started more than 30 day(s) ago" in dry.output
    assert len(org_records(sf)[0]) == 35
    jobs = sf.counters()["bulk"]

    done = runner.invoke(app, ["requests-tab", "purge"], env=env)
    assert done.exit_code == 0, done.output
    assert "deleted 30 request(s)" in done.output
    requests, errors = org_records(sf)
    assert sorted(r[REQUEST_ID] for r in requests) == [f"r{i}" for i in range(30, 35)]
    assert [e[ERROR_ID] for e in errors] == ["t:0:30"]  # the only error log of a recent request
    assert sf.counters()["bulk"] > jobs

    never = runner.invoke(app, ["requests-tab", "purge", "--older-than", "0"], env=env)
    assert never.exit_code == 1
    assert "retention is 0 days" in never.output


async def test_a_dead_letter_ahead_of_its_request_lands_under_a_request_the_real_one_then_updates(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """A dead letter read before its request record (a backlog), of an Account Salesforce does not have, and a
    listener dead letter that names no request: both land, each under a request made from it; when the request
    record arrives it updates that same request."""
    sf = salesforce_emulator
    settings = with_tab(settings_with_notes(kafka_settings, sf, logisense_emulator), flush_seconds=0.2)
    deploy_schema(sf, settings)
    topics = create_syncer_topics(kafka_settings)
    kafka.ensure_topics(kafka_settings, [s for s in topics.specs(kafka_settings) if s.name == topics.listener_dlt])
    gone = "001000000000099AAA"  # no such Account: the request lands without the lookup
    request = request_record(gone)
    now = datetime.now(UTC)
    failure = Failure(error_class="RejectedError", message="no", attempts=2, last_failure=now)
    producer = producer_factory()
    letters = [
        (gone.encode(), b"{}", dead_letter_headers(replace(failure, request_id=request.request_id), service="syncer")),
    ]
    kafka.produce_and_flush(producer, topics.changes_dlt, ((k, v, list(h)) for k, v, h in letters))
    malformed = dead_letter_headers(replace(failure, error_class="MalformedCdcMessage.bad_avro"), service="listener")
    kafka.produce_and_flush(producer, topics.listener_dlt, [(None, b"\x00", list(malformed))])

    await run_tab(settings, sf, lambda: len(org_records(sf)[1]) == 2)
    requests, errors = org_records(sf)
    by_id = {r[REQUEST_ID]: r for r in requests}
    assert set(by_id) == {request.request_id, parent_id(org_letter(errors, topics.listener_dlt))}
    made = by_id[request.request_id]
    assert (made["Kind__c"], made["Status__c"], made["Account__c"], made["Key__c"]) == (
        "dead_letter",
        "Failed",
        None,
        gone,
    )
    assert {e["Request__c"] for e in errors} == {r["Id"] for r in requests}

    kafka.produce_and_flush(producer, topics.requests, [(gone.encode(), request.to_bytes(), [])])
    await run_tab(settings, sf, lambda: {r["Kind__c"] for r in org_records(sf)[0]} == {"account_sync", "dead_letter"})
    requests, errors = org_records(sf)
    (landed,) = [r for r in requests if r[REQUEST_ID] == request.request_id]
    assert landed["Id"] == made["Id"]
    assert landed["Reason__c"] == "LogiSense said no"
    assert len(requests) == 2
    assert len(errors) == 2


def org_letter(errors: list[dict[str, object]], topic: str) -> DeadLetter:
    """The dead letter an error log of `topic` came from, rebuilt from its external id (topic:partition:offset)."""
    (error,) = [e for e in errors if str(e[ERROR_ID]).startswith(topic + ":")]
    _, partition, offset = str(error[ERROR_ID]).rsplit(":", 2)
    return dead_letter_of(
        topic=topic,
        partition=int(partition),
        offset=int(offset),
        key=None,
        value=None,
        headers=[],
        timestamp=datetime.now(UTC),
    )


def test_an_org_without_the_objects_stops_the_writer_naming_them_and_the_fix(
    kafka_settings: KafkaSettings, salesforce_emulator: SalesforceEmulator, logisense_emulator: LogisenseEmulator
) -> None:
    """Before the schema is deployed the writer ends with exit code 2, naming both objects and how to deploy
    them (or turn it off); it commits nothing, so what it would have landed waits in Kafka."""
    settings = settings_with_notes(kafka_settings, salesforce_emulator, logisense_emulator)
    create_syncer_topics(kafka_settings)
    result = CliRunner().invoke(app, ["requests-tab", "run"], env=subprocess_env(settings, COLUMNS="250"))
    assert result.exit_code == 2, result.output
    for needed in (REQUEST_OBJECT, ERROR_OBJECT, "sfls import schema", "SFLS_REQUESTS_TAB__MODE=off"):
        assert needed in result.output, result.output
    assert tab_committed(settings) == 0
