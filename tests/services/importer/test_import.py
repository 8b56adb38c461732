"""Acceptance tests of the importer: the real broker and both emulators, end to end."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from services.cli import app
from services.importer.app import run_import
from services.importer.entities import BY_NAME, PRICE_BOOK_NAMES
from services.importer.publish import live_ids, read_topic
from services.importer.targets import select
from shared.deadletter import ERROR_MESSAGE, parse_dead_letter
from shared.events import RequestRecord, RequestStatus
from shared.kafka import Topics
from shared.settings import (
    InvoiceColumn,
    KafkaSettings,
    MappingSettings,
    ProductExtension,
    RetrySettings,
    Settings,
)
from tests.environment import sfls_env
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator

pytestmark = pytest.mark.integration

EXT = "LogiSense_Id__c"
MAPPINGS = MappingSettings(
    product_extensions=(ProductExtension(logisense="family", salesforce="Family"),),
    invoice_columns=(InvoiceColumn(column="name", label="Invoice"), InvoiceColumn(column="balance", label="Balance")),
)


@pytest.fixture
def settings(
    kafka_settings: KafkaSettings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> Settings:
    """Settings pointing at the broker (unique topic prefix) and both emulators, with the schema deployed."""
    settings = Settings(
        kafka=kafka_settings,
        logisense=logisense_emulator.settings(),
        salesforce=salesforce_emulator.settings(),
        mappings=MAPPINGS,
    )
    from tests.fixtures.schema import deploy_schema

    deploy_schema(salesforce_emulator, settings)
    return settings


def _by_external_id(salesforce: SalesforceEmulator, sobject: str) -> dict[str, dict[str, Any]]:
    return {r[EXT]: r for r in salesforce.records(sobject) if r.get(EXT) and not r.get("IsDeleted")}


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _writes(salesforce: SalesforceEmulator) -> tuple[int, dict[str, int]]:
    counters = salesforce.counters()
    return counters["composite"], dict(counters["sobject_write"])


async def _logisense_items(emulator: LogisenseEmulator, resource: str) -> list[dict[str, Any]]:
    async with emulator.client() as client:
        return [item async for item in client.paged(resource)]


async def test_full_import_lands_every_entity_with_its_relations(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    """`import all` lands every item of every entity, with frequency->package, rate->plan, state->country lookups."""
    logisense_emulator.reset(accounts=2, invoices_per_account=2)
    created_before = _metric("sfls_importer_items_total", entity="state", outcome="created")
    report = await run_import(settings, select("all"))
    assert report.ok, [(e.entity, e.error, e.reasons) for e in report.entities]
    fetched = {e.entity: e.fetched for e in report.entities}
    assert all(fetched[name] > 0 for name in select("all")), fetched
    for name in (n for n in select("all") if n not in PRICE_BOOK_NAMES):  # the price book: test_price_book.py
        landed = _by_external_id(salesforce_emulator, BY_NAME[name].sobject)
        assert len(landed) == fetched[name], name

    packages = _by_external_id(salesforce_emulator, "LogiSense_Package__c")
    products = _by_external_id(salesforce_emulator, "Product2")
    for frequency in await _logisense_items(logisense_emulator, "Package/Frequency"):
        product = products[str(frequency["identity"])]
        assert product["Package__c"] == packages[str(frequency["packageId"])]["Id"]
        assert product["Family"] == frequency["family"]
        assert product["Name"] == frequency["name"]

    plans = _by_external_id(salesforce_emulator, "LogiSense_Rate_Plan__c")
    groups = await _logisense_items(logisense_emulator, "Usage/Rate/Group")
    plan_of_group = {g["identity"]: g["usageRatePlanId"] for g in groups}
    rates = _by_external_id(salesforce_emulator, "LogiSense_Rate__c")
    for rate in await _logisense_items(logisense_emulator, "Usage/Rate"):
        expected = plans[str(plan_of_group[rate["usageRateGroupId"]])]["Id"]
        assert rates[str(rate["identity"])]["Rate_Plan__c"] == expected

    countries = _by_external_id(salesforce_emulator, "LogiSense_Country__c")
    states = _by_external_id(salesforce_emulator, "LogiSense_State__c")
    for state in await _logisense_items(logisense_emulator, "State"):
        assert states[str(state["identity"])]["Country__c"] == countries[str(state["countryId"])]["Id"]

    topics = Topics(settings.kafka.topic_prefix)
    assert live_ids(settings.kafka, BY_NAME["package"].topic(topics)) == {int(i) for i in packages}
    records = [RequestRecord.from_bytes(m.value() or b"") for m in read_topic(settings.kafka, topics.requests)]
    assert Counter(r.kind for r in records) == Counter(f"import:{name}" for name in select("all"))
    assert all(r.status is RequestStatus.SUCCESS and r.service == "importer" for r in records)
    assert next(r for r in records if r.kind == "import:state").counts["created"] == fetched["state"]
    assert _metric("sfls_importer_items_total", entity="state", outcome="created") - created_before == fetched["state"]
    assert _metric("sfls_importer_last_success_timestamp_seconds", entity="state") > 0
    assert _metric("sfls_importer_run_duration_seconds", entity="state") > 0


async def test_second_identical_run_writes_nothing_to_salesforce(
    settings: Settings, salesforce_emulator: SalesforceEmulator
) -> None:
    """Run twice: the second run finds every stored hash equal and makes zero Salesforce writes."""
    first = await run_import(settings, select("all"))
    assert first.ok
    before = _writes(salesforce_emulator)
    second = await run_import(settings, select("all"))
    assert second.ok
    assert _writes(salesforce_emulator) == before
    for entity in second.entities:
        assert (entity.created, entity.updated, entity.unchanged) == (0, 0, entity.fetched), entity.entity


async def test_changing_one_package_updates_exactly_that_record(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    """Renaming one package in LogiSense makes the next catalogue run write that one record and nothing else."""
    assert (await run_import(settings, select("catalogue"))).ok
    package = (await _logisense_items(logisense_emulator, "Package"))[3]
    async with logisense_emulator.client() as client:
        await client.update("Package", package["identity"], {"name": "Renamed Package"})
    composite, writes = _writes(salesforce_emulator)

    report = await run_import(settings, select("catalogue"))

    assert report.ok
    after_composite, after_writes = _writes(salesforce_emulator)
    assert after_composite == composite + 1
    assert Counter(after_writes) - Counter(writes) == Counter({"LogiSense_Package__c": 1})
    by_entity = {e.entity: e for e in report.entities}
    assert (by_entity["package"].updated, by_entity["package"].created) == (1, 0)
    assert sum(e.updated + e.created for e in report.entities) == 1
    landed = _by_external_id(salesforce_emulator, "LogiSense_Package__c")[str(package["identity"])]
    assert landed["Name"] == "Renamed Package"


def _bulk(settings: Settings, threshold: int) -> Settings:
    """The settings with Bulk API 2.0 above `threshold` changed records, polling the emulator's jobs quickly."""
    return settings.model_copy(
        update={
            "importer": settings.importer.model_copy(update={"bulk_threshold": threshold}),
            "salesforce": settings.salesforce.model_copy(update={"bulk_poll_seconds": 0.05}),
        }
    )


async def test_above_the_bulk_threshold_entities_land_through_bulk_jobs(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    """bulk_threshold=40: entities with 40+ changed records land through Bulk API 2.0 jobs and the smaller ones
    through composite calls, relations resolve on both paths, and a second run writes nothing at all."""
    logisense_emulator.reset(catalogue_size=600)
    bulk = _bulk(settings, 40)
    names = select("catalogue")
    jobs_before = {n: _metric("sfls_importer_bulk_jobs_total", entity=n, outcome="complete") for n in names}

    report = await run_import(bulk, names)

    assert report.ok, [(e.entity, e.error, e.reasons) for e in report.entities]
    jobs = {n: _metric("sfls_importer_bulk_jobs_total", entity=n, outcome="complete") - jobs_before[n] for n in names}
    for entity in (e for e in report.entities if e.entity not in PRICE_BOOK_NAMES):  # see test_price_book.py
        landed = _by_external_id(salesforce_emulator, BY_NAME[entity.entity].sobject)
        assert len(landed) == entity.fetched == entity.created, entity.entity
        assert jobs[entity.entity] == (1 if entity.fetched >= 40 else 0), (entity.entity, entity.fetched)
    assert {"package", "package_frequency", "rate"} <= {n for n, count in jobs.items() if count}
    assert "rate_plan" in {n for n, count in jobs.items() if not count}
    counters = salesforce_emulator.counters()
    assert counters["bulk"] >= 5 * sum(jobs.values())  # create, upload, close, poll, info per job

    packages = _by_external_id(salesforce_emulator, "LogiSense_Package__c")
    products = _by_external_id(salesforce_emulator, "Product2")
    for frequency in await _logisense_items(logisense_emulator, "Package/Frequency"):
        assert products[str(frequency["identity"])]["Package__c"] == packages[str(frequency["packageId"])]["Id"]
    plans = _by_external_id(salesforce_emulator, "LogiSense_Rate_Plan__c")
    plan_of_group = {
        g["identity"]: g["usageRatePlanId"] for g in await _logisense_items(logisense_emulator, "Usage/Rate/Group")
    }
    rates = _by_external_id(salesforce_emulator, "LogiSense_Rate__c")
    for rate in await _logisense_items(logisense_emulator, "Usage/Rate"):
        assert rates[str(rate["identity"])]["Rate_Plan__c"] == plans[str(plan_of_group[rate["usageRateGroupId"]])]["Id"]

    second = await run_import(bulk, names)

    assert second.ok
    after = salesforce_emulator.counters()
    assert (after["bulk"], after["composite"], after["sobject_write"]) == (
        counters["bulk"], counters["composite"], counters["sobject_write"]
    )  # fmt: skip
    assert all(e.unchanged == e.fetched for e in second.entities)


async def test_a_row_rejected_in_a_bulk_job_is_dead_lettered_and_the_rest_lands(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    """One package Salesforce refuses inside a Bulk API job: the others land, the reason is in the summary,
    the request log and the importer's dead-letter topic."""
    packages = await _logisense_items(logisense_emulator, "Package")
    bad = packages[2]["identity"]
    async with logisense_emulator.client() as client:
        await client.update("Package", bad, {"name": "N" * 100})  # LogiSense takes 255, the Name field 80

    report = await run_import(_bulk(settings, 5), ["package"])

    (entity,) = report.entities
    assert not report.ok
    assert (entity.created, entity.failed) == (len(packages) - 1, 1)
    assert entity.reasons == [
        f"package {bad}: STRING_TOO_LONG: Name: data value too large: {'N' * 40}... (max length=80) (Name)"
    ]
    landed = _by_external_id(salesforce_emulator, "LogiSense_Package__c")
    assert set(landed) == {str(p["identity"]) for p in packages} - {str(bad)}
    assert salesforce_emulator.counters()["composite"] == 0
    topics = Topics(settings.kafka.topic_prefix)
    [letter] = [parse_dead_letter(m) for m in read_topic(settings.kafka, topics.importer_dlt)]
    assert letter.key == str(bad).encode()
    assert letter.headers[ERROR_MESSAGE].startswith("STRING_TOO_LONG")
    [request] = [RequestRecord.from_bytes(m.value() or b"") for m in read_topic(settings.kafka, topics.requests)]
    assert request.status is RequestStatus.FAILED
    assert "STRING_TOO_LONG" in request.reason


async def test_deleting_an_item_publishes_a_tombstone(
    settings: Settings, logisense_emulator: LogisenseEmulator
) -> None:
    """An item deleted in LogiSense since the last full run gets a tombstone (key, null value) in its topic."""
    assert (await run_import(settings, select("catalogue", "package"))).ok
    package = (await _logisense_items(logisense_emulator, "Package"))[0]
    async with logisense_emulator.client() as client:
        await client.delete("Package", package["identity"])

    report = await run_import(settings, select("catalogue", "package"))

    assert report.ok
    assert report.entities[0].deleted == 1
    topic = BY_NAME["package"].topic(Topics(settings.kafka.topic_prefix))
    last = [m for m in read_topic(settings.kafka, topic) if m.key() == str(package["identity"]).encode()][-1]
    assert last.value() is None
    assert live_ids(settings.kafka, topic) == {
        p["identity"] for p in await _logisense_items(logisense_emulator, "Package")
    }
    again = await run_import(settings, select("catalogue", "package"))
    assert again.entities[0].deleted == 0  # a tombstone is published once


async def test_a_logisense_outage_fails_the_entity_without_tombstones(
    settings: Settings, logisense_emulator: LogisenseEmulator
) -> None:
    """LogiSense failing after retries: the entity reports the error and no item is tombstoned for it."""
    assert (await run_import(settings, select("catalogue", "package"))).ok
    topic = BY_NAME["package"].topic(Topics(settings.kafka.topic_prefix))
    before = live_ids(settings.kafka, topic)
    logisense_emulator.faults(resource="Package", operation="paged", status=503, retry_after=0)
    fast = settings.model_copy(
        update={"sync": settings.sync.model_copy(update={"retry": RetrySettings(max_attempts=2, base_seconds=0.01)})}
    )

    report = await run_import(fast, select("catalogue", "package"))

    [entity] = report.entities
    assert not report.ok
    assert "503" in entity.error
    assert entity.deleted == 0
    assert live_ids(settings.kafka, topic) == before
    requests = [
        RequestRecord.from_bytes(m.value() or b"")
        for m in read_topic(settings.kafka, Topics(settings.kafka.topic_prefix).requests)
    ]
    assert requests[-1].status is RequestStatus.FAILED
    assert "503" in requests[-1].reason


async def test_dry_run_writes_nothing_anywhere(settings: Settings, salesforce_emulator: SalesforceEmulator) -> None:
    """--dry-run fetches and counts what it would create, but writes neither to Kafka nor to Salesforce."""
    report = await run_import(settings, select("data"), dry_run=True)
    assert report.ok
    assert report.dry_run
    assert all(e.created == e.fetched and e.published == 0 for e in report.entities)
    assert _writes(salesforce_emulator) == (0, {})
    assert live_ids(settings.kafka, Topics(settings.kafka.topic_prefix).reference("country")) is None


async def test_invoices_of_one_account_with_configured_columns(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    """`import invoices --account <Salesforce id>` lands that account's invoices, linked to the Account, with labels."""
    logisense_emulator.reset(accounts=2, invoices_per_account=2)
    [account_sf_id] = salesforce_emulator.seed("Account", [{"Name": "Acme"}])
    account = logisense_emulator.accounts()[0]
    async with logisense_emulator.client() as client:
        await client.update("Account", account["identity"], {"sfdcid": account_sf_id})

    report = await run_import(settings, select("invoices"), account=account_sf_id)

    assert report.ok
    invoices = salesforce_emulator.records("LogiSense_Invoice__c")
    assert len(invoices) == report.entities[0].fetched == 2
    assert {i["Account__c"] for i in invoices} == {account_sf_id}
    assert all("Balance__c" in i and i["Name"] for i in invoices)
    [message, _] = list(read_topic(settings.kafka, Topics(settings.kafka.topic_prefix).reference("invoice")))
    import json

    columns = json.loads(message.value() or b"")["displayColumns"]
    assert [(c["column"], c["label"]) for c in columns] == [("name", "Invoice"), ("balance", "Balance")]


@pytest.mark.usefixtures("settings")
def test_a_rejected_record_is_dead_lettered_and_fails_the_exit_code(
    kafka_settings: KafkaSettings,
    logisense_emulator: LogisenseEmulator,
    salesforce_emulator: SalesforceEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Salesforce refusing one record: the others land, the summary names the reason, the exit code is 1."""
    import asyncio

    packages = asyncio.run(_logisense_items(logisense_emulator, "Package"))
    bad = packages[1]["identity"]

    async def rename() -> None:
        async with logisense_emulator.client() as client:
            await client.update("Package", bad, {"name": "N" * 100})  # LogiSense takes 255, the Name field 80

    asyncio.run(rename())
    ls, sf = logisense_emulator, salesforce_emulator
    for key, value in sfls_env(salesforce=sf, logisense=ls, kafka=kafka_settings).items():
        if key.startswith("SFLS_"):
            monkeypatch.setenv(key, value)

    result = CliRunner().invoke(app, ["import", "catalogue", "--only", "package"])

    assert result.exit_code == 1, result.output
    assert f"package {bad}: STRING_TOO_LONG" in result.output
    landed = _by_external_id(sf, "LogiSense_Package__c")
    assert set(landed) == {str(p["identity"]) for p in packages} - {str(bad)}
    topics = Topics(kafka_settings.topic_prefix)
    [letter] = [parse_dead_letter(m) for m in read_topic(kafka_settings, topics.importer_dlt)]
    assert letter.key == str(bad).encode()
    assert letter.headers[ERROR_MESSAGE].startswith("STRING_TOO_LONG")
    [request] = [RequestRecord.from_bytes(m.value() or b"") for m in read_topic(kafka_settings, topics.requests)]
    assert request.status is RequestStatus.FAILED
    assert request.counts["failed"] == 1
    assert "STRING_TOO_LONG" in request.reason
