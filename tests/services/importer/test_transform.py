"""Unit tests: the entity table, LogiSense -> Salesforce transforms, content hashes, deep flattening."""

from __future__ import annotations

from typing import Any

import pytest

from services.importer.entities import ENTITIES, GROUPS, INVOICE_ACCOUNT_FIELD, PRICE_BOOK_NAMES
from services.importer.fetch import _flatten
from services.importer.land import describe_errors, soql_in
from services.importer.targets import check_targets, resolve, salesforce_schema, select
from services.importer.transform import content_hash, to_record
from shared.errors import ConfigError, MappingError
from shared.kafka import CATALOGUE_ENTITIES, REFERENCE_ENTITIES
from shared.settings import (
    ImportSettings,
    ImportTarget,
    InvoiceColumn,
    MappingSettings,
    ProductExtension,
    Settings,
)

EXT, HASH = "LogiSense_Id__c", "LogiSense_Hash__c"


def _settings(**kwargs: Any) -> Settings:
    return Settings(**kwargs)


def _frequency(**changes: Any) -> dict[str, Any]:
    item = {
        "identity": 41,
        "name": "Fiber Pro Monthly",
        "packageId": 7,
        "packageName": "Fiber Pro",
        "sku": "FP-M",
        "isActive": True,
        "frequency": 1,
        "frequencyTypeId": 3,
        "termId": None,
        "family": "Connectivity",
        "updated": "2024-01-01T00:00:00.000Z",
    }
    item.update(changes)
    return item


def _prepare(name: str, item: dict[str, Any], settings: Settings | None = None, **kwargs: Any) -> Any:
    entity = resolve(name, settings or _settings())
    return to_record(entity, item, external_id_field=EXT, hash_field=HASH, **kwargs)


def test_frequency_lands_on_product2_with_package_lookup_by_external_id() -> None:
    """A package frequency becomes a Product2 record whose package lookup is set by the package's LogiSense id."""
    prepared = _prepare("package_frequency", _frequency())
    record = prepared.record
    assert resolve("package_frequency", _settings()).sobject == "Product2"
    assert record[EXT] == "41"
    assert record["Name"] == "Fiber Pro Monthly"
    assert record["ProductCode"] == "FP-M"
    assert record["IsActive"] is True
    assert record["Package__r"] == {EXT: "7"}
    assert record[HASH] == prepared.hash
    assert prepared.logisense_id == 41


def test_product_extensions_map_frequency_custom_fields_onto_product2() -> None:
    """The Product Extensions mapping puts the frequency's custom field `family` into Product2.Family."""
    settings = _settings(
        mappings=MappingSettings(product_extensions=(ProductExtension(logisense="family", salesforce="Family"),))
    )
    assert _prepare("package_frequency", _frequency(), settings).record["Family"] == "Connectivity"
    assert "Family" not in _prepare("package_frequency", _frequency()).record


def test_missing_parent_clears_the_lookup() -> None:
    """An item without a parent id sets the lookup field to null instead of a dangling reference."""
    record = _prepare(
        "package_service", {"identity": 3, "packageId": 1, "serviceId": 2, "usageRatePlanId": None}
    ).record
    assert record["Rate_Plan__c"] is None
    assert "Rate_Plan__r" not in record
    assert record["Service__r"] == {EXT: "2"}


def test_state_relates_to_its_country_and_rate_to_group_and_plan() -> None:
    """States point to their country; rates to both their rate group and their rate plan."""
    state = _prepare("state", {"identity": 9, "name": "Ontario", "code": "ON", "countryId": 2}).record
    assert state["Country__r"] == {EXT: "2"}
    rate = _prepare(
        "rate", {"identity": 5, "displayName": "Peak", "amount": 0.1, "usageRateGroupId": 3, "usageRatePlanId": 1}
    ).record
    assert rate["Rate_Group__r"] == {EXT: "3"}
    assert rate["Rate_Plan__r"] == {EXT: "1"}


def test_hash_ignores_unmapped_fields_and_key_order() -> None:
    """Changing a field the importer does not land (the `updated` stamp) keeps the hash; key order never matters."""
    first = _prepare("package_frequency", _frequency())
    stamped = _prepare("package_frequency", _frequency(updated="2025-05-05T00:00:00.000Z"))
    reordered = _prepare("package_frequency", dict(reversed(list(_frequency().items()))))
    assert first.hash == stamped.hash == reordered.hash


def test_hash_changes_with_any_landed_value_or_target() -> None:
    """A changed mapped value, lookup or target object gives a different hash, so the record is rewritten."""
    base = _prepare("package_frequency", _frequency()).hash
    assert _prepare("package_frequency", _frequency(name="Fiber Pro Yearly")).hash != base
    assert _prepare("package_frequency", _frequency(packageId=8)).hash != base
    assert _prepare("package_frequency", _frequency(isActive=False)).hash != base
    record = _prepare("package_frequency", _frequency()).record
    record.pop(HASH)
    assert content_hash("Product2", record) == base
    assert content_hash("Other__c", record) != base


def test_values_take_the_target_field_type() -> None:
    """Lists become JSON text, numbers stay numbers, booleans become text for text fields; junk numbers fail."""
    rule = _prepare(
        "pricing_rule",
        {
            "identity": 1,
            "serviceName": "Voice",
            "amount": 12,
            "tiers": [{"upTo": 10, "amount": 1.5}],
            "chargeType": "recurring",
        },
    ).record
    assert rule["Tiers__c"] == '[{"amount":1.5,"upTo":10}]'
    assert rule["Amount__c"] == 12
    settings = _settings(
        importer=ImportSettings(targets={"package": ImportTarget(fields={"Post_Paid_Text__c": "postPaid"})})
    )
    assert (
        _prepare("package", {"identity": 1, "name": "P", "postPaid": True}, settings).record["Post_Paid_Text__c"]
        == "true"
    )
    with pytest.raises(MappingError):
        _prepare("pricing_rule", {"identity": 1, "amount": "twelve"})
    with pytest.raises(MappingError):
        _prepare("package", {"name": "no identity"})


def test_targets_override_object_and_fields() -> None:
    """importer.targets can rename the object, add a field, and drop a default field."""
    settings = _settings(
        importer=ImportSettings(
            targets={
                "country": ImportTarget(sobject="Country__c", fields={"ISO__c": "countryCode", "Country_Code__c": ""})
            }
        )
    )
    entity = resolve("country", settings)
    assert entity.sobject == "Country__c"
    fields = {c.salesforce: c.logisense for c in entity.columns}
    assert fields["ISO__c"] == "countryCode"
    assert "Country_Code__c" not in fields
    with pytest.raises(ConfigError, match="unknown entities"):
        check_targets(ImportSettings(targets={"nope": ImportTarget()}))


def test_invoice_columns_follow_the_invoice_configuration() -> None:
    """Configured invoice columns become fields (previousBalance -> Previous_Balance__c); the account lookup is set."""
    settings = _settings(
        mappings=MappingSettings(
            invoice_columns=(InvoiceColumn(column="name", label="Invoice"), InvoiceColumn(column="previousBalance"))
        )
    )
    entity = resolve("invoice", settings)
    assert [c.salesforce for c in entity.columns] == ["Name", "LogiSense_Account_Id__c", "Previous_Balance__c"]
    record = to_record(
        entity,
        {"identity": 3, "name": "INV-3", "accountId": 10, "previousBalance": 5.5, "balance": 9},
        external_id_field=EXT,
        hash_field=HASH,
        account_id="001000000000001AAA",
    ).record
    assert record["Previous_Balance__c"] == 5.5
    assert "Balance__c" not in record
    assert record[INVOICE_ACCOUNT_FIELD] == "001000000000001AAA"
    default = [c.salesforce for c in resolve("invoice", _settings()).columns]
    assert default == ["Name", "LogiSense_Account_Id__c", "Date__c", "Due__c", "Balance__c"]


def test_parents_land_before_children_and_topics_cover_every_entity() -> None:
    """Every relation points to an entity earlier in the table, and every entity has a topic spec."""
    seen: set[str] = set()
    for entity in ENTITIES:
        for relation in entity.relations:
            assert relation.entity in seen, f"{entity.name} needs {relation.entity} first"
        seen.add(entity.name)
    assert set(GROUPS["catalogue"]) == set(CATALOGUE_ENTITIES) | set(PRICE_BOOK_NAMES)  # the price book: no topic
    assert set(GROUPS["data"]) | set(GROUPS["invoices"]) == set(REFERENCE_ENTITIES)


def test_select_groups_and_only() -> None:
    """`import all` is data, catalogue, invoices in order; --only picks one entity of the group or fails clearly."""
    assert select("all") == GROUPS["data"] + GROUPS["catalogue"] + GROUPS["invoices"]
    assert select("catalogue", "rate") == ("rate",)
    with pytest.raises(ConfigError, match="not an entity of `import data`"):
        select("data", "rate")


def test_schema_declares_every_target_field() -> None:
    """The Salesforce schema has the external id, hash, columns and lookups of every entity, Product2 as additions."""
    settings = _settings(
        mappings=MappingSettings(product_extensions=(ProductExtension(logisense="family", salesforce="Family"),))
    )
    schema = salesforce_schema(settings)
    objects = {o["name"]: {f["name"]: f for f in o["fields"]} for o in schema["objects"]}
    assert objects["LogiSense_State__c"]["Country__c"]["referenceTo"] == "LogiSense_Country__c"
    assert objects["LogiSense_Rate__c"]["Rate_Plan__c"]["relationshipName"] == "Rate_Plan__r"
    assert objects["LogiSense_Pricing_Rule__c"]["Product__c"]["referenceTo"] == "Product2"
    for fields in objects.values():
        assert fields[EXT]["externalId"] is True
        assert HASH in fields
    product = {f["name"] for f in schema["fields"]["Product2"]}
    assert {"Package__c", HASH, "Frequency__c"} <= product
    assert "Family" not in product  # a standard field already there


def test_deep_children_are_flattened_with_their_ancestors_ids() -> None:
    """A rate plan's groups' rates come out one by one, each carrying its rate plan's id."""
    plan = {
        "identity": 1,
        "usageRateGroups": [
            {"identity": 10, "rates": [{"identity": 100}, {"identity": 101}]},
            {"identity": 11, "rates": []},
            {"identity": 12, "rates": [{"identity": 102}]},
        ],
    }
    deep = resolve("rate", _settings()).deep
    assert deep is not None
    flat = _flatten(plan, deep, 0, {})
    assert [(r["identity"], r["usageRatePlanId"]) for r in flat] == [(100, 1), (101, 1), (102, 1)]


def test_salesforce_errors_read_as_one_line_and_ids_are_quoted() -> None:
    """Per-record errors become `CODE: message (fields)`; SOQL IN lists quote and escape."""
    errors = [{"statusCode": "STRING_TOO_LONG", "message": "Name: data value too large", "fields": ["Name"]}]
    assert describe_errors(errors) == "STRING_TOO_LONG: Name: data value too large (Name)"
    assert describe_errors([]) == "rejected by Salesforce without an error message"
    assert soql_in(["1", "o'k"]) == "'1', 'o\\'k'"
