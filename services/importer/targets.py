"""The importer's entities as configured: which a command imports, and each with its overrides applied.

`select` gives the entities of an `sfls import` group in landing order. `resolve` applies
`importer.targets.<entity>` (target object and fields), `mappings.invoice_columns` and
`mappings.product_extensions` to an entity of the table (services/importer/entities.py);
`check_targets` refuses overrides of entities that do not exist. `salesforce_schema()` gives the
custom objects and fields the resolved entities need (and the price book's PricebookEntry fields), in
the shape the Salesforce emulator's `POST /__admin/schema` takes, plus `notes` for the admin: the entry key,
and where a product's Product Services are. It is the importer's part of `sfls_schema()`
(services/importer/schema.py), the whole of what an org admin deploys.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from services.importer.entities import (
    BY_NAME,
    DEFAULT_INVOICE_COLUMNS,
    ENTITIES,
    GROUPS,
    INVOICE_ACCOUNT_FIELD,
    INVOICE_COLUMN_TYPES,
)
from services.importer.model import Column, ImportEntity
from services.importer.price_book import KEY_FIELD
from shared.errors import ConfigError
from shared.settings import ImportSettings, Settings


def invoice_column_field(column: str) -> str:
    """The Salesforce field of a LogiSense invoice column: name -> Name, previousBalance -> Previous_Balance__c."""
    if column == "name":
        return "Name"
    words: list[str] = []
    current = ""
    for char in column:
        if char.isupper() and current:
            words.append(current)
            current = char
        else:
            current += char
    words.append(current)
    return "_".join(w[:1].upper() + w[1:] for w in words) + "__c"


def resolve(name: str, settings: Settings) -> ImportEntity:
    """The entity with the configured target object, fields and (for invoices) columns applied."""
    base = BY_NAME.get(name)
    if base is None:
        raise ConfigError(f"unknown entity {name!r}; choose one of: {', '.join(BY_NAME)}")
    columns = list(base.columns)
    if base.name == "invoice":
        configured = [c.column for c in settings.mappings.invoice_columns] or list(DEFAULT_INVOICE_COLUMNS)
        known = {c.logisense for c in columns}
        for column in configured:
            if column not in known:
                columns.append(Column(invoice_column_field(column), column, INVOICE_COLUMN_TYPES.get(column, "string")))
                known.add(column)
    if base.name == "package_frequency":
        for extension in settings.mappings.product_extensions:
            columns = [c for c in columns if c.salesforce != extension.salesforce]
            columns.append(Column(extension.salesforce, extension.logisense, "string"))
    target = settings.importer.targets.get(name)
    sobject = base.sobject
    if target is not None:
        sobject = target.sobject or sobject
        for sf_field, ls_field in target.fields.items():
            columns = [c for c in columns if c.salesforce != sf_field]
            if ls_field:
                columns.append(Column(sf_field, ls_field, "string"))
    return replace(base, sobject=sobject, columns=tuple(columns))


def check_targets(settings: ImportSettings) -> None:
    """Refuse overrides for entities that do not exist, naming the valid ones."""
    unknown = sorted(set(settings.targets) - set(BY_NAME))
    if unknown:
        raise ConfigError(
            f"importer.targets: unknown entities {', '.join(unknown)}; the entities are {', '.join(BY_NAME)}"
        )


def select(group: str, only: str | None = None) -> tuple[str, ...]:
    """Entities of a command ("catalogue", "data", "invoices", "all"), in landing order, or just `only`."""
    names = GROUPS["data"] + GROUPS["catalogue"] + GROUPS["invoices"] if group == "all" else GROUPS.get(group)
    if names is None:
        raise ConfigError(f"unknown import group {group!r}")
    if only is None:
        return names
    if only not in names:
        raise ConfigError(f"--only {only}: not an entity of `import {group}`; choose one of: {', '.join(names)}")
    return (only,)


def salesforce_schema(settings: Settings) -> dict[str, Any]:
    """The custom objects and fields the resolved entities land in (emulator `POST /__admin/schema` shape)."""
    ext, hash_field = settings.importer.external_id_field, settings.importer.hash_field
    resolved = [resolve(e.name, settings) for e in ENTITIES]
    sobjects = {e.name: e.sobject for e in resolved}
    objects: dict[str, list[dict[str, Any]]] = {}
    for entity in resolved:
        fields = objects.setdefault(entity.sobject, [])
        names = {f["name"] for f in fields}

        def add(spec: dict[str, Any], names: set[str] = names, fields: list[dict[str, Any]] = fields) -> None:
            if spec["name"] not in names:
                names.add(spec["name"])
                fields.append(spec)

        add({"name": ext, "type": "string", "externalId": True, "length": 40})
        add({"name": hash_field, "type": "string", "length": 64})
        for column in entity.columns:
            spec: dict[str, Any] = {"name": column.salesforce, "type": column.type}
            if column.salesforce == "Name":
                spec["length"] = 80  # a custom object's Name field holds 80 characters
            elif column.type == "textarea":
                spec["length"] = 32000
            add(spec)
        for relation in entity.relations:
            add(
                {
                    "name": relation.salesforce,
                    "type": "reference",
                    "referenceTo": sobjects[relation.entity],
                    "relationshipName": relation.relationship,
                }
            )
        if entity.name == "invoice":
            add({"name": INVOICE_ACCOUNT_FIELD, "type": "reference", "referenceTo": "Account"})
    objects["PricebookEntry"] = [
        {"name": KEY_FIELD, "type": "string", "externalId": True, "unique": True, "length": 40},
        {"name": hash_field, "type": "string", "length": 64},
    ]
    objects["Opportunity"] = list(OPPORTUNITY_FIELDS)
    objects["OpportunityLineItem"] = list(LINE_FIELDS)
    standard = {"Account", "Contact", "Product2", "User", "PricebookEntry", "Opportunity", "OpportunityLineItem"}
    return {
        "objects": [
            {"name": name, "label": name[:-3].replace("_", " "), "fields": fields}
            for name, fields in objects.items()
            if name not in standard
        ],
        "fields": {
            name: [f for f in fields if f["name"] not in _STANDARD_FIELDS.get(name, ())]
            for name, fields in objects.items()
            if name in standard
        },
        "notes": _schema_notes(sobjects),
    }


def _schema_notes(sobjects: dict[str, str]) -> list[str]:
    """What the field lists cannot say: the price book entry key, and where a product's Product Services are."""
    product, services, rules = sobjects["package_frequency"], sobjects["package_service"], sobjects["pricing_rule"]
    return [
        f"PricebookEntry.{KEY_FIELD}: External ID, unique; the price book entries of `sfls import catalogue` "
        "(`<frequencyId>:<ISO>`, standard book `std:<frequencyId>:<ISO>`) are upserted by it.",
        f"The Product Services of a {product} are its {services} and {rules} records: "
        f"{rules}.Product__c is a lookup to {product} (relationship Product__r), so a product lists its pricing rules; "
        f"{services} belongs to the package ({services}.Package__c, the same package as {product}.Package__c), "
        "because LogiSense connects services to a package, shared by all its frequencies.",
    ]


# The write-back fields of quote to cash (services/opportunity/opportunities.py reads and writes them).
OPPORTUNITY_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "LogiSense_Price_Plan_Id__c", "type": "string", "length": 40},
    {
        "name": "LogiSense_Push_Status__c",
        "type": "picklist",
        "picklistValues": ["Ready", "Pushed", "Stale", "Withdrawn", "Failed"],
        "restrictedPicklist": True,
    },
    {"name": "LogiSense_Pushed_At__c", "type": "datetime"},
    {"name": "LogiSense_Push_Reason__c", "type": "textarea", "length": 32768},
    {"name": "LogiSense_Push_Hash__c", "type": "string", "length": 64},
    {"name": "LogiSense_Product_Codes__c", "type": "textarea", "length": 32768},
)
LINE_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "Account_Product_Code_Name__c", "type": "string", "length": 80},
    {"name": "LogiSense_Product_Code_Id__c", "type": "string", "length": 40},
)
_STANDARD_FIELDS = {"Product2": ("Name", "ProductCode", "IsActive", "Family", "Description", "LogiSense_Id__c")}
