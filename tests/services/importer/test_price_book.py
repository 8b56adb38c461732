"""Acceptance tests of the LogiSense Price Book: the real broker and both emulators, end to end."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.importer.app import run_import
from services.importer.entities import PRICE_BOOK_NAMES
from services.importer.publish import read_topic
from services.importer.run import EntityReport, RunReport
from services.importer.targets import salesforce_schema, select
from shared.events import RequestRecord
from shared.kafka import Topics
from shared.settings import Settings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.fixtures.schema import deploy_schema

pytestmark = pytest.mark.integration

KEY = "LogiSense_Key__c"
BOOK_NAME = "LogiSense Price Book"


@pytest.fixture
def settings(importer_settings: Settings) -> Settings:
    return importer_settings


async def _items(emulator: LogisenseEmulator, resource: str) -> list[dict[str, Any]]:
    async with emulator.client() as client:
        return [item async for item in client.paged(resource)]


async def _expected(emulator: LogisenseEmulator) -> dict[str, float]:
    """Custom-entry key `<pfId>:<ISO>` -> the sum of the frequency's recurring pricing rules in that currency."""
    codes = {c["identity"]: c["code"] for c in await _items(emulator, "Currency")}
    sold = defaultdict(set)
    for row in await _items(emulator, "Package/Currency"):
        sold[row["packageId"]].add(row["currencyId"])
    prices: dict[tuple[int, int], float] = defaultdict(float)
    for rule in await _items(emulator, "PricingRule"):
        if rule["chargeType"] == "recurring":
            prices[rule["packageFrequencyId"], rule["currencyId"]] += rule["amount"]
    return {
        f"{f['identity']}:{codes[c]}": round(prices[f["identity"], c], 2)
        for f in await _items(emulator, "Package/Frequency")
        for c in sold[f["packageId"]]
    }


def _entries(salesforce: SalesforceEmulator) -> dict[str, dict[str, Any]]:
    return {r[KEY]: r for r in salesforce.records("PricebookEntry") if r.get(KEY) and not r.get("IsDeleted")}


def _books(salesforce: SalesforceEmulator) -> tuple[str, list[dict[str, Any]]]:
    """(the standard book's Id, the custom books named like ours)."""
    books = [b for b in salesforce.records("Pricebook2") if not b.get("IsDeleted")]
    standard = next(b["Id"] for b in books if b["IsStandard"])
    return standard, [b for b in books if not b["IsStandard"] and b["Name"] == BOOK_NAME]


def _by_entity(report: RunReport) -> dict[str, EntityReport]:
    assert report.ok, [(e.entity, e.error, e.reasons) for e in report.entities]
    return {e.entity: e for e in report.entities}


def _writes(salesforce: SalesforceEmulator) -> tuple[int, int, dict[str, int]]:
    counters = salesforce.counters()
    return counters["composite"], counters["bulk"], dict(counters["sobject_write"])


async def test_the_book_and_its_standard_then_custom_entries_land_with_recurring_prices(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    """One active custom book; per frequency in the org currency a standard and a custom entry at the recurring sum."""
    report = _by_entity(await run_import(settings, select("catalogue")))

    standard, [book] = _books(salesforce_emulator)
    assert book["IsActive"] is True
    expected = await _expected(logisense_emulator)
    usd = {key: price for key, price in expected.items() if key.endswith(":USD")}
    entries = _entries(salesforce_emulator)
    assert set(entries) == set(usd) | {f"std:{key}" for key in usd}
    products = {p["Id"]: p["LogiSense_Id__c"] for p in salesforce_emulator.records("Product2")}
    for key, price in usd.items():
        custom, std = entries[key], entries[f"std:{key}"]
        assert (custom["Pricebook2Id"], std["Pricebook2Id"]) == (book["Id"], standard)
        assert custom["Product2Id"] == std["Product2Id"]
        assert products[custom["Product2Id"]] == key.split(":")[0]
        assert custom["UnitPrice"] == std["UnitPrice"] == price
        assert custom["IsActive"]
        assert std["IsActive"]
        assert custom["UseStandardPrice"] is False
    assert any(price > 0 for price in usd.values())
    order = [r[KEY] for r in salesforce_emulator.records("PricebookEntry") if r.get(KEY)]  # in creation order
    assert order == sorted(order, key=lambda key: not key.startswith("std:"))  # every standard entry came first
    assert (report["price_book"].created, report["price_book_entry"].created) == (1, 2 * len(usd))
    assert report["price_book_entry"].skipped == 2 * (len(expected) - len(usd)) > 0
    topics = Topics(settings.kafka.topic_prefix)
    kinds = [RequestRecord.from_bytes(m.value() or b"").kind for m in read_topic(settings.kafka, topics.requests)]
    assert {f"import:{name}" for name in PRICE_BOOK_NAMES} <= set(kinds)
    created = REGISTRY.get_sample_value(
        "sfls_importer_items_total", {"entity": "price_book_entry", "outcome": "created"}
    )
    assert (created or 0) >= 2 * len(usd)


async def test_a_second_identical_run_writes_nothing(
    settings: Settings, salesforce_emulator: SalesforceEmulator
) -> None:
    """Run the catalogue twice: the second run finds the book and every entry unchanged and writes nothing."""
    _by_entity(await run_import(settings, select("catalogue")))
    before = _writes(salesforce_emulator)

    report = _by_entity(await run_import(settings, select("catalogue")))

    assert _writes(salesforce_emulator) == before
    for name in PRICE_BOOK_NAMES:
        entity = report[name]
        assert (entity.created, entity.updated, entity.unchanged) == (0, 0, entity.fetched) != (0, 0, 0), name


async def test_a_dry_run_counts_the_book_and_entries_and_writes_nothing(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    """--dry-run on an empty org counts the book and every entry as created, and writes nothing to Salesforce."""
    report = _by_entity(await run_import(settings, select("catalogue"), dry_run=True))

    usd = [key for key in await _expected(logisense_emulator) if key.endswith(":USD")]
    assert (report["price_book"].created, report["price_book_entry"].created) == (1, 2 * len(usd))
    assert _writes(salesforce_emulator) == (0, 0, {})
    assert _books(salesforce_emulator)[1] == []


async def test_an_admin_made_standard_entry_is_adopted_not_duplicated(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    """A key-less standard entry an admin made for a product gets our key and price; no second one is created."""
    table = tuple(n for n in select("catalogue") if n not in PRICE_BOOK_NAMES)
    _by_entity(await run_import(settings, table))
    frequency = (await _items(logisense_emulator, "Package/Frequency"))[0]["identity"]
    product = next(p["Id"] for p in salesforce_emulator.records("Product2") if p["LogiSense_Id__c"] == str(frequency))
    standard, _ = _books(salesforce_emulator)
    [admin_id] = salesforce_emulator.seed(
        "PricebookEntry",
        [{"Pricebook2Id": standard, "Product2Id": product, "UnitPrice": 1.0, "IsActive": True}],
    )

    _by_entity(await run_import(settings, PRICE_BOOK_NAMES))

    mine = [
        e
        for e in salesforce_emulator.records("PricebookEntry")
        if e["Product2Id"] == product and e["Pricebook2Id"] == standard and not e.get("IsDeleted")
    ]
    assert [(e["Id"], e[KEY]) for e in mine] == [(admin_id, f"std:{frequency}:USD")]
    assert mine[0]["UnitPrice"] == (await _expected(logisense_emulator))[f"{frequency}:USD"]
    assert _entries(salesforce_emulator)[f"{frequency}:USD"]["IsActive"] is True


async def test_a_deactivated_package_and_a_removed_currency_make_entries_inactive_not_deleted(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    """Deactivating a package sets its frequencies' entries IsActive=false; a removed package currency too."""
    salesforce_emulator.tune(multi_currency=True)
    _by_entity(await run_import(settings, select("catalogue")))
    frequencies = await _items(logisense_emulator, "Package/Frequency")
    package = frequencies[0]["packageId"]
    of_package = {f["identity"] for f in frequencies if f["packageId"] == package}
    codes = {c["identity"]: c["code"] for c in await _items(logisense_emulator, "Currency")}
    other = next(
        row
        for row in await _items(logisense_emulator, "Package/Currency")
        if row["currencyId"] != 1 and row["packageId"] != package
    )
    removed = {f["identity"] for f in frequencies if f["packageId"] == other["packageId"]}
    async with logisense_emulator.client() as client:
        await client.update("Package", package, {"isActive": False})
        await client.delete("Package/Currency", other["identity"])
    before = _entries(salesforce_emulator)

    report = _by_entity(await run_import(settings, select("catalogue")))

    after = _entries(salesforce_emulator)
    assert set(after) == set(before)  # nothing deleted
    gone = {f"{f}:{codes[other['currencyId']]}" for f in removed}
    expected = {
        k for k in before if int(k.removeprefix("std:").split(":")[0]) in of_package or k.removeprefix("std:") in gone
    }
    assert {key for key, entry in after.items() if not entry["IsActive"]} == expected
    assert all(before[key]["IsActive"] for key in expected)
    assert report["price_book_entry"].updated == len(expected) > 0


async def test_a_multi_currency_org_gets_an_entry_per_currency_and_a_single_currency_org_only_its_own(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    """Multi-currency: entries per package currency; single-currency (org_currency CAD): only CAD's, others skipped."""
    expected = await _expected(logisense_emulator)
    salesforce_emulator.tune(multi_currency=True)
    report = _by_entity(await run_import(settings, select("catalogue")))
    entries = _entries(salesforce_emulator)
    assert set(entries) == set(expected) | {f"std:{key}" for key in expected}
    assert all(entry["CurrencyIsoCode"] == key.rsplit(":", 1)[1] for key, entry in entries.items())
    assert len({entry["CurrencyIsoCode"] for entry in entries.values()}) > 1
    assert report["price_book_entry"].skipped == 0

    salesforce_emulator.admin("POST", "reset")
    deploy_schema(salesforce_emulator, settings)
    cad = settings.model_copy(update={"importer": settings.importer.model_copy(update={"org_currency": "CAD"})})
    report = _by_entity(await run_import(cad, select("catalogue")))
    wanted = {key for key in expected if key.endswith(":CAD")}
    assert wanted
    assert set(_entries(salesforce_emulator)) == wanted | {f"std:{key}" for key in wanted}
    assert report["price_book_entry"].skipped == 2 * (len(expected) - len(wanted))


async def test_above_the_bulk_threshold_entries_land_through_bulk_jobs(
    settings: Settings, logisense_emulator: LogisenseEmulator, salesforce_emulator: SalesforceEmulator
) -> None:
    """Above bulk_threshold entries land by Bulk jobs (creates, updates, deactivations mixed); reruns write nothing."""
    bulk = settings.model_copy(
        update={
            "importer": settings.importer.model_copy(update={"bulk_threshold": 20}),
            "salesforce": settings.salesforce.model_copy(update={"bulk_poll_seconds": 0.05}),
        }
    )
    salesforce_emulator.tune(multi_currency=True)
    _by_entity(await run_import(bulk, select("catalogue")))
    expected = await _expected(logisense_emulator)
    assert set(_entries(salesforce_emulator)) == set(expected) | {f"std:{key}" for key in expected}
    package = (await _items(logisense_emulator, "Package"))[0]["identity"]
    rows = await _items(logisense_emulator, "Package/Currency")
    added = next(
        {"packageId": r["packageId"], "currencyId": c}
        for r in rows
        for c in (2, 3, 4)
        if r["packageId"] != package
        and not any(o["packageId"] == r["packageId"] and o["currencyId"] == c for o in rows)
    )
    removed = next(r for r in rows if r["currencyId"] != 1 and r["packageId"] not in (package, added["packageId"]))
    async with logisense_emulator.client() as client:
        await client.update("Package", package, {"isActive": False})
        await client.create("Package/Currency", {"packageId": added["packageId"], "currencyId": added["currencyId"]})
        await client.delete("Package/Currency", removed["identity"])
    jobs = "sfls_importer_bulk_jobs_total"
    before = REGISTRY.get_sample_value(jobs, {"entity": "price_book_entry", "outcome": "complete"}) or 0
    small = bulk.model_copy(update={"importer": bulk.importer.model_copy(update={"bulk_threshold": 2})})

    report = _by_entity(await run_import(small, select("catalogue")))

    entry = report["price_book_entry"]
    assert entry.created >= 2  # the added currency
    assert entry.updated >= 4  # the deactivated package, and the removed currency (key and IsActive only)
    entries = _entries(salesforce_emulator)
    gone = [e for e in entries.values() if not e["IsActive"] and e["Product2Id"] and e["CurrencyIsoCode"] != "USD"]
    assert gone
    after = REGISTRY.get_sample_value(jobs, {"entity": "price_book_entry", "outcome": "complete"}) or 0
    assert after - before == 2
    writes = _writes(salesforce_emulator)
    again = _by_entity(await run_import(small, select("catalogue")))
    assert _writes(salesforce_emulator) == writes
    assert again["price_book_entry"].unchanged == again["price_book_entry"].fetched


def test_import_schema_names_the_entry_key_and_where_product_services_are() -> None:
    """The schema lists the entry key (External ID, unique) and notes where Product Services are; --only takes both."""
    schema = salesforce_schema(Settings())
    fields = {f["name"]: f for f in schema["fields"]["PricebookEntry"]}
    assert (fields[KEY]["externalId"], fields[KEY]["unique"]) == (True, True)
    assert "LogiSense_Hash__c" in fields
    rules = {f["name"]: f for o in schema["objects"] if o["name"] == "LogiSense_Pricing_Rule__c" for f in o["fields"]}
    assert rules["Product__c"]["referenceTo"] == "Product2"
    notes = " ".join(schema["notes"])
    assert "LogiSense_Package_Service__c" in notes
    assert "LogiSense_Pricing_Rule__c" in notes
    assert select("catalogue", "price_book_entry") == ("price_book_entry",)
    assert select("catalogue")[-2:] == PRICE_BOOK_NAMES
