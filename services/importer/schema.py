"""Every Salesforce custom object and field sfls needs, composed once: what an org admin deploys.

`sfls_schema()` is the union of
- the importer's objects and fields (`salesforce_schema()`, services/importer/targets.py), with the price
  book entry key and the quote to cash write-back fields on Opportunity and OpportunityLineItem;
- the billing admin's view (`VIEW_SCHEMA`, shared/salesforce_view.py): the LogiSense Requests tab, its
  Request Error Logs, and the Account link fields the syncer writes;
- the trigger fields sfls reads (`salesforce.fields`: status, bill group, AR term, the two invoice recipient
  lookups on Account, the contact type on Contact), the configured custom Account and Contact fields
  (`mappings.account_extensions`, `mappings.contact_points`), and `Product2.<external_id_field>`, which the
  importer upserts products by and quote to cash reads.

The shape is the Salesforce emulator's `POST /__admin/schema` JSON (`sfls import schema --json`);
services/importer/sfdx.py renders it as Salesforce DX source (`sfls import schema --out DIR`).
"""

from __future__ import annotations

import copy
from typing import Any

from services.importer.targets import salesforce_schema
from shared.salesforce_view import VIEW_SCHEMA
from shared.settings import Settings

# The standard objects that get custom fields (the rest of the org's objects are sfls's own custom objects).
STANDARD_OBJECTS = ("Account", "Contact", "Product2", "PricebookEntry", "Opportunity", "OpportunityLineItem")


def label_of(name: str) -> str:
    """A field or object label from its API name: LogiSense_Bill_Group__c -> LogiSense Bill Group."""
    return name.removesuffix("__c").replace("_", " ")


def _trigger_fields(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """The custom fields sfls reads on Account and Contact, and the product key on Product2."""
    names = settings.salesforce.fields
    account: list[dict[str, Any]] = [
        {"name": name, "type": "string", "length": 255, "label": label_of(name)}
        for name in (names.status, names.bill_group, names.ar_term)
    ]
    for name, children in (
        (names.usage_invoice_recipient, "Usage_Invoiced_Accounts"),
        (names.subscription_invoice_recipient, "Subscription_Invoiced_Accounts"),
    ):
        account.append(
            {
                "name": name,
                "type": "reference",
                "referenceTo": "Account",
                "relationshipName": name.removesuffix("__c") + "__r",
                "childRelationshipName": children,
                "deleteConstraint": "SetNull",
                "label": label_of(name),
            }
        )
    for extension in settings.mappings.account_extensions:
        account.append({"name": extension.salesforce, "type": "string", "length": 255})
    contact: list[dict[str, Any]] = [
        {"name": names.contact_type, "type": "string", "length": 255, "label": "LogiSense Contact Type"}
    ]
    for points in settings.mappings.contact_points.values():
        contact.extend({"name": field, "type": "string", "length": 255} for field in points.values())
    key = settings.importer.external_id_field
    product = [{"name": key, "type": "string", "length": 40, "externalId": True, "unique": True}]
    return {"Account": account, "Contact": contact, "Product2": product}


def sfls_schema(settings: Settings) -> dict[str, Any]:
    """Every custom object and custom field sfls reads or writes, in the emulator's schema JSON shape.

    Objects keep their first definition; a field already given for an object is not given again. Only
    custom fields (`__c`) of the standard objects are listed: the org has the standard ones.
    """
    importer = salesforce_schema(settings)
    view = copy.deepcopy(VIEW_SCHEMA)
    objects: dict[str, dict[str, Any]] = {}
    for obj in [*copy.deepcopy(importer["objects"]), *view["objects"]]:
        if obj["name"] not in objects:
            objects[obj["name"]] = obj
    fields: dict[str, list[dict[str, Any]]] = {name: [] for name in STANDARD_OBJECTS}
    for source in (importer["fields"], view["fields"], _trigger_fields(settings)):
        for obj_name, specs in source.items():
            target = fields.setdefault(obj_name, [])
            known = {f["name"] for f in target}
            for spec in specs:
                if spec["name"].endswith("__c") and spec["name"] not in known:
                    known.add(spec["name"])
                    target.append(copy.deepcopy(spec))
    return {
        "objects": list(objects.values()),
        "fields": {name: specs for name, specs in fields.items() if specs},
        "notes": list(importer["notes"]),
    }
