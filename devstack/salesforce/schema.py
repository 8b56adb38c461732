"""The emulated org's schema: objects, fields, key prefixes, and the describe documents built from them.

Built-in objects are Account, Contact, Product2 and User with the fields sfls reads and writes
(including the LogiSense trigger fields named by `SalesforceFields`), and the sales objects:
Pricebook2, PricebookEntry, OpportunityStage (read-only through the API), Opportunity and
OpportunityLineItem (their rules live in sales.py). A multi-currency org adds `CurrencyIsoCode`
to Account, Opportunity, Product2, PricebookEntry and OpportunityLineItem (`add_currency()`). The schema is extensible:
`extend()` takes the JSON shape of `--schema FILE` and `POST /__admin/schema`:

    {"objects": [{"name": "LogiSense_Package__c", "label": "LogiSense Package",
                  "fields": [{"name": "LogiSense_Id__c", "type": "string", "externalId": true}]}],
     "fields": {"Account": [{"name": "Region_Code__c", "type": "string"}]}}
A picklist field may give `picklistValues` (a list of values) and `restrictedPicklist` (true: others refused).

Field lookups are case-insensitive, as in Salesforce; every object gets the system fields.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

# Compound fields: the compound name, its component -> flat field name (CDC nests by component).
ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country")
SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "double": "xsd:double",
    "currency": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "address": "urn:address",
}
FIELD_TYPES = {
    "id",
    "string",
    "textarea",
    "picklist",
    "reference",
    "boolean",
    "double",
    "currency",
    "int",
    "date",
    "datetime",
    "email",
    "phone",
    "url",
    "address",
}


class SchemaError(ValueError):
    """A schema definition (file or admin request) is not valid."""


@dataclass
class FieldDef:
    """One field of an object, with what describe reports about it."""

    name: str
    type: str = "string"
    label: str = ""
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    required: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    length: int = 255
    compound: str | None = None  # the compound field this one is a component of
    component: str | None = None  # its name inside the compound (CDC nesting)
    calculated: bool = False
    custom: bool = False
    system: bool = False
    picklist_values: tuple[str, ...] = ()
    restricted: bool = False  # a restricted picklist refuses values outside picklist_values
    default_value: str | None = None

    @property
    def is_long_text(self) -> bool:
        return self.type == "textarea"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label or self.name,
            "type": self.type,
            "soapType": SOAP_TYPES.get(self.type, "xsd:string"),
            "length": self.length if self.type in {"string", "textarea", "picklist", "email", "phone", "url"} else 0,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "externalId": self.external_id,
            "unique": self.unique,
            "idLookup": self.external_id or self.type == "id",
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "compoundFieldName": self.compound,
            "calculated": self.calculated,
            "custom": self.custom,
            "defaultedOnCreate": self.system or self.type == "boolean",
            "filterable": self.type != "textarea",
            "sortable": self.type != "textarea",
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value == self.default_value,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist_values
            ],
            "restrictedPicklist": self.restricted,
            "defaultValue": self.default_value,
        }


@dataclass
class ObjectDef:
    """An sObject type: its name, key prefix and fields (looked up case-insensitively)."""

    name: str
    key_prefix: str
    label: str = ""
    custom: bool = False
    api_writable: bool = True  # False: the API may only read it (User and OpportunityStage)
    cdc_min_version: float = 0.0  # its change event channel exists for clients of this API version and later
    fields: dict[str, FieldDef] = field(default_factory=dict)
    _by_lower: dict[str, FieldDef] = field(default_factory=dict, repr=False)
    _by_relationship: dict[str, FieldDef] = field(default_factory=dict, repr=False)

    def add(self, definition: FieldDef) -> None:
        if definition.type not in FIELD_TYPES:
            raise SchemaError(f"field {self.name}.{definition.name}: unknown type {definition.type!r}")
        self.fields[definition.name] = definition
        self._by_lower[definition.name.lower()] = definition
        if definition.relationship_name:
            self._by_relationship[definition.relationship_name.lower()] = definition

    def remove(self, name: str) -> None:
        definition = self.fields.pop(name, None)
        if definition is not None:
            self._by_lower.pop(name.lower(), None)
            if definition.relationship_name:
                self._by_relationship.pop(definition.relationship_name.lower(), None)

    def field(self, name: str) -> FieldDef | None:
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        return self._by_relationship.get(name.lower())

    @property
    def external_id_fields(self) -> list[FieldDef]:
        return [f for f in self.fields.values() if f.external_id or f.unique]

    @property
    def compounds(self) -> dict[str, list[FieldDef]]:
        """Compound field name -> its component fields."""
        groups: dict[str, list[FieldDef]] = {}
        for definition in self.fields.values():
            if definition.compound:
                groups.setdefault(definition.compound, []).append(definition)
        return groups

    @property
    def change_event_channel(self) -> str:
        base = self.name[:-3] + "__" if self.name.endswith("__c") else self.name
        return f"/data/{base}ChangeEvent"

    def describe(self, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.label or self.name,
            "labelPlural": (self.label or self.name) + "s",
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "createable": self.api_writable,
            "updateable": self.name == "User" or self.api_writable,
            "deletable": self.api_writable,
            "undeletable": True,
            "queryable": True,
            "retrieveable": True,
            "searchable": True,
            "fields": [f.describe() for f in self.fields.values()],
            "childRelationships": [],
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        }


def _system_fields(obj: ObjectDef, *, owner: bool) -> None:
    obj.add(FieldDef("Id", "id", "Record ID", nillable=False, createable=False, updateable=False, system=True))
    obj.add(
        FieldDef("IsDeleted", "boolean", "Deleted", nillable=False, createable=False, updateable=False, system=True)
    )
    for name, label in (("CreatedDate", "Created Date"), ("LastModifiedDate", "Last Modified Date")):
        obj.add(FieldDef(name, "datetime", label, nillable=False, createable=False, updateable=False, system=True))
    obj.add(FieldDef("SystemModstamp", "datetime", "System Modstamp", createable=False, updateable=False, system=True))
    for name, rel, label in (
        ("CreatedById", "CreatedBy", "Created By ID"),
        ("LastModifiedById", "LastModifiedBy", "Last Modified By ID"),
    ):
        obj.add(
            FieldDef(
                name,
                "reference",
                label,
                nillable=False,
                createable=False,
                updateable=False,
                reference_to=("User",),
                relationship_name=rel,
                system=True,
            )
        )
    if owner:
        obj.add(FieldDef("OwnerId", "reference", "Owner ID", reference_to=("User",), relationship_name="Owner"))


def _address(obj: ObjectDef, prefix: str) -> None:
    compound = f"{prefix}Address"
    for part in ADDRESS_PARTS:
        flat = f"{prefix}{part}"
        obj.add(FieldDef(flat, "textarea" if part == "Street" else "string", flat, compound=compound, component=part))
    obj.add(FieldDef(compound, "address", compound, createable=False, updateable=False, calculated=True))


def _ref(name: str, target: str, relationship: str, **kwargs: Any) -> FieldDef:
    return FieldDef(name, "reference", name, reference_to=(target,), relationship_name=relationship, **kwargs)


def build_default_objects() -> dict[str, ObjectDef]:
    """The standard objects sfls touches, with the default custom fields of the managed package."""
    account = ObjectDef("Account", "001", "Account")
    _system_fields(account, owner=True)
    account.add(FieldDef("Name", "string", "Account Name", nillable=False, required=True))
    account.add(FieldDef("Type", "picklist", "Account Type"))
    account.add(_ref("ParentId", "Account", "Parent"))
    account.add(FieldDef("Description", "textarea", "Account Description", length=32000))
    account.add(FieldDef("Phone", "phone", "Account Phone", length=40))
    account.add(FieldDef("Industry", "picklist", "Industry"))
    account.add(FieldDef("Website", "url", "Website"))
    _address(account, "Billing")
    _address(account, "Shipping")
    for name in ("LogiSense_Status__c", "LogiSense_Bill_Group__c", "LogiSense_AR_Term__c", "Region__c"):
        account.add(FieldDef(name, "string", name, custom=True))
    for name in ("Usage_Invoice_Recipient__c", "Subscription_Invoice_Recipient__c"):
        account.add(_ref(name, "Account", name[:-3] + "__r", custom=True))
    account.add(FieldDef("LogiSense_Id__c", "string", "LogiSense Id", external_id=True, unique=True, custom=True))

    contact = ObjectDef("Contact", "003", "Contact")
    _system_fields(contact, owner=True)
    contact.add(_ref("AccountId", "Account", "Account"))
    contact.add(FieldDef("Salutation", "picklist", "Salutation", compound="Name", component="Salutation"))
    contact.add(FieldDef("FirstName", "string", "First Name", compound="Name", component="FirstName"))
    contact.add(
        FieldDef(
            "LastName", "string", "Last Name", nillable=False, required=True, compound="Name", component="LastName"
        )
    )
    contact.add(FieldDef("Name", "string", "Full Name", createable=False, updateable=False, calculated=True))
    for name, kind in (("Title", "string"), ("Email", "email"), ("Phone", "phone"), ("MobilePhone", "phone")):
        contact.add(FieldDef(name, kind, name))
    _address(contact, "Mailing")
    contact.add(FieldDef("Description", "textarea", "Contact Description", length=32000))
    contact.add(FieldDef("LogiSense_Contact_Type__c", "string", "LogiSense Contact Type", custom=True))
    contact.add(FieldDef("LogiSense_Id__c", "string", "LogiSense Id", external_id=True, unique=True, custom=True))

    product = ObjectDef("Product2", "01t", "Product")
    _system_fields(product, owner=False)
    product.add(FieldDef("Name", "string", "Product Name", nillable=False, required=True))
    product.add(FieldDef("ProductCode", "string", "Product Code"))
    product.add(FieldDef("Family", "picklist", "Product Family"))
    product.add(FieldDef("IsActive", "boolean", "Active", nillable=False))
    product.add(FieldDef("Description", "textarea", "Product Description", length=4000))
    product.add(FieldDef("LogiSense_Id__c", "string", "LogiSense Id", external_id=True, unique=True, custom=True))
    product.add(FieldDef("LogiSense_Frequency__c", "string", "LogiSense Frequency", custom=True))
    product.add(FieldDef("LogiSense_Currency__c", "string", "LogiSense Currency", custom=True))
    product.add(FieldDef("LogiSense_Price__c", "currency", "LogiSense Price", custom=True))

    user = ObjectDef("User", "005", "User")
    _system_fields(user, owner=False)
    for name in ("Username", "LastName", "Email", "Alias"):
        user.add(FieldDef(name, "email" if name == "Email" else "string", name, nillable=name == "Alias"))
    user.add(FieldDef("FirstName", "string", "First Name"))
    user.add(FieldDef("Name", "string", "Full Name", createable=False, updateable=False, calculated=True))
    user.add(FieldDef("IsActive", "boolean", "Active", nillable=False))
    user.api_writable = False
    return {obj.name: obj for obj in (account, contact, product, user, *_sales_objects())}


def _read_only(name: str, kind: str, label: str, **kwargs: Any) -> FieldDef:
    return FieldDef(name, kind, label, createable=False, updateable=False, **kwargs)


PUSH_STATUSES = ("Ready", "Pushed", "Stale", "Withdrawn", "Failed")
FORECAST_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("Pipeline", "Pipeline"),
    ("BestCase", "Best Case"),
    ("Commit", "Commit"),
    ("Omitted", "Omitted"),
    ("Closed", "Closed"),
)


def _sales_objects() -> list[ObjectDef]:
    """Pricebook2, PricebookEntry, OpportunityStage, Opportunity, OpportunityLineItem."""
    return [*_price_books(), _opportunity(), _line_item()]


def _price_books() -> list[ObjectDef]:
    book = ObjectDef("Pricebook2", "01s", "Price Book")
    _system_fields(book, owner=False)
    book.add(FieldDef("Name", "string", "Price Book Name", nillable=False, required=True))
    book.add(FieldDef("IsActive", "boolean", "Active", nillable=False))
    book.add(FieldDef("Description", "textarea", "Description"))
    book.add(_read_only("IsStandard", "boolean", "Is Standard Price Book", nillable=False))
    book.add(_read_only("IsArchived", "boolean", "Is Archived", nillable=False))

    entry = ObjectDef("PricebookEntry", "01u", "Price Book Entry")
    _system_fields(entry, owner=False)
    entry.add(_ref("Pricebook2Id", "Pricebook2", "Pricebook2", nillable=False, required=True, updateable=False))
    entry.add(_ref("Product2Id", "Product2", "Product2", nillable=False, required=True, updateable=False))
    entry.add(FieldDef("UnitPrice", "currency", "List Price"))
    entry.add(FieldDef("UseStandardPrice", "boolean", "Use Standard Price", nillable=False))
    entry.add(FieldDef("IsActive", "boolean", "Active", nillable=False))
    entry.add(_read_only("Name", "string", "Product Name"))
    entry.add(_read_only("ProductCode", "string", "Product Code"))
    entry.add(_read_only("IsArchived", "boolean", "Is Archived", nillable=False))
    entry.add(FieldDef("LogiSense_Key__c", "string", "LogiSense Key", external_id=True, unique=True, custom=True))

    stage = ObjectDef("OpportunityStage", "01J", "Opportunity Stage", api_writable=False)
    _system_fields(stage, owner=False)
    for name, kind, label in (
        ("MasterLabel", "string", "Master Label"),
        ("ApiName", "string", "Api Name"),
        ("IsActive", "boolean", "Active"),
        ("IsClosed", "boolean", "Closed"),
        ("IsWon", "boolean", "Won"),
        ("DefaultProbability", "double", "Probability (%)"),
        ("ForecastCategory", "picklist", "Forecast Type"),
        ("ForecastCategoryName", "picklist", "Forecast Category"),
        ("SortOrder", "int", "Sort Order"),
        ("Description", "string", "Description"),
    ):
        stage.add(_read_only(name, kind, label))
    return [book, entry, stage]


def _opportunity() -> ObjectDef:
    opportunity = ObjectDef("Opportunity", "006", "Opportunity")
    _system_fields(opportunity, owner=True)
    opportunity.add(FieldDef("Name", "string", "Name", length=120, nillable=False, required=True))
    opportunity.add(_ref("AccountId", "Account", "Account"))
    opportunity.add(FieldDef("StageName", "picklist", "Stage", length=255, nillable=False, required=True))
    opportunity.add(FieldDef("CloseDate", "date", "Close Date", nillable=False, required=True))
    opportunity.add(_ref("Pricebook2Id", "Pricebook2", "Pricebook2"))
    opportunity.add(FieldDef("Amount", "currency", "Amount"))
    opportunity.add(FieldDef("Probability", "double", "Probability (%)"))
    opportunity.add(FieldDef("Type", "picklist", "Opportunity Type"))
    opportunity.add(FieldDef("Description", "textarea", "Description", length=32000))
    categories = tuple(label for _, label in FORECAST_CATEGORIES)
    opportunity.add(FieldDef("ForecastCategoryName", "picklist", "Forecast Category", picklist_values=categories))
    opportunity.add(
        _read_only(
            "ForecastCategory",
            "picklist",
            "Forecast Category",
            picklist_values=tuple(c for c, _ in FORECAST_CATEGORIES),
        )
    )
    for name, label in (("IsClosed", "Closed"), ("IsWon", "Won"), ("HasOpportunityLineItem", "Has Line Item")):
        opportunity.add(_read_only(name, "boolean", label, nillable=False))
    opportunity.add(_read_only("LastStageChangeDate", "datetime", "Last Stage Change Date"))
    opportunity.add(FieldDef("LogiSense_Price_Plan_Id__c", "string", "LogiSense Price Plan Id", custom=True))
    opportunity.add(
        FieldDef(
            "LogiSense_Push_Status__c",
            "picklist",
            "LogiSense Push Status",
            custom=True,
            picklist_values=PUSH_STATUSES,
            restricted=True,  # an emulator choice: the package's picklist refuses values it does not define
        )
    )
    opportunity.add(FieldDef("LogiSense_Pushed_At__c", "datetime", "LogiSense Pushed At", custom=True))
    opportunity.add(
        FieldDef("LogiSense_Push_Reason__c", "textarea", "LogiSense Push Reason", length=32768, custom=True)
    )
    opportunity.add(FieldDef("LogiSense_Push_Hash__c", "string", "LogiSense Push Hash", custom=True))
    opportunity.add(
        FieldDef("LogiSense_Product_Codes__c", "textarea", "LogiSense Product Codes", length=32768, custom=True)
    )

    return opportunity


def _line_item() -> ObjectDef:
    line = ObjectDef("OpportunityLineItem", "00k", "Opportunity Product", cdc_min_version=60.0)
    _system_fields(line, owner=False)
    line.add(_ref("OpportunityId", "Opportunity", "Opportunity", nillable=False, required=True, updateable=False))
    line.add(
        _ref("PricebookEntryId", "PricebookEntry", "PricebookEntry", nillable=False, required=True, updateable=False)
    )
    line.add(_ref("Product2Id", "Product2", "Product2", createable=False, updateable=False))
    line.add(_read_only("Name", "string", "Opportunity Product Name", length=376))
    line.add(_read_only("ProductCode", "string", "Product Code"))
    line.add(FieldDef("Quantity", "double", "Quantity", nillable=False, required=True))
    line.add(FieldDef("UnitPrice", "currency", "Sales Price"))
    line.add(FieldDef("TotalPrice", "currency", "Total Price"))
    line.add(_read_only("ListPrice", "currency", "List Price"))
    line.add(_read_only("Subtotal", "currency", "Subtotal"))
    line.add(FieldDef("Discount", "double", "Discount"))
    line.add(FieldDef("ServiceDate", "date", "Date"))
    line.add(FieldDef("Description", "string", "Line Description"))
    line.add(FieldDef("SortOrder", "int", "Sort Order"))
    line.add(FieldDef("Account_Product_Code_Name__c", "string", "Account Product Code Name", custom=True))
    line.add(FieldDef("LogiSense_Product_Code_Id__c", "string", "LogiSense Product Code Id", custom=True))
    return line


# Objects that get CurrencyIsoCode in a multi-currency org: (createable, updateable).
CURRENCY_OBJECTS = {
    "Account": (True, True),
    "Product2": (True, True),
    "Opportunity": (True, True),
    "PricebookEntry": (True, False),  # fixed when the entry is created
    "OpportunityLineItem": (False, False),  # always the opportunity's
}


def add_currency(objects: dict[str, ObjectDef], codes: tuple[str, ...]) -> None:
    """Make the org multi-currency: CurrencyIsoCode (restricted picklist of `codes`, default the first)."""
    for name, (createable, updateable) in CURRENCY_OBJECTS.items():
        obj = objects[name]
        obj.remove("CurrencyIsoCode")
        obj.add(
            FieldDef(
                "CurrencyIsoCode",
                "picklist",
                "Currency ISO Code",
                length=3,
                createable=createable,
                updateable=updateable,
                picklist_values=codes,
                restricted=True,
                default_value=codes[0],
            )
        )


def remove_currency(objects: dict[str, ObjectDef]) -> None:
    for name in CURRENCY_OBJECTS:
        objects[name].remove("CurrencyIsoCode")


_FIELD_KEYS = {
    "name",
    "type",
    "label",
    "nillable",
    "externalId",
    "unique",
    "required",
    "referenceTo",
    "relationshipName",
    "length",
    "updateable",
    "createable",
    "picklistValues",
    "restrictedPicklist",
}


def _field_from_json(owner: str, spec: Any) -> FieldDef:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise SchemaError(f"{owner}: each field needs a JSON object with a 'name'")
    unknown = set(spec) - _FIELD_KEYS
    if unknown:
        raise SchemaError(f"{owner}.{spec['name']}: unknown keys {sorted(unknown)}")
    name = spec["name"]
    kind = spec.get("type", "string")
    reference_to = spec.get("referenceTo") or ()
    if isinstance(reference_to, str):
        reference_to = (reference_to,)
    relationship = spec.get("relationshipName")
    if kind == "reference" and not relationship:
        relationship = name[:-3] + "__r" if name.endswith("__c") else name.removesuffix("Id")
    return FieldDef(
        name,
        kind,
        str(spec.get("label", name)),
        nillable=bool(spec.get("nillable", not spec.get("required", False))),
        createable=bool(spec.get("createable", True)),
        updateable=bool(spec.get("updateable", True)),
        external_id=bool(spec.get("externalId", False)),
        unique=bool(spec.get("unique", spec.get("externalId", False))),
        required=bool(spec.get("required", False)),
        reference_to=tuple(reference_to),
        relationship_name=relationship,
        length=int(spec.get("length", 255)),
        custom=name.endswith("__c"),
        picklist_values=tuple(str(v) for v in spec.get("picklistValues") or ()),
        restricted=bool(spec.get("restrictedPicklist", False)),
    )


class Schema:
    """Every object of the org; custom objects get key prefixes a00, a01, ... in definition order."""

    def __init__(self) -> None:
        self.objects: dict[str, ObjectDef] = build_default_objects()
        self._by_lower = {name.lower(): obj for name, obj in self.objects.items()}
        self._by_prefix = {obj.key_prefix: obj for obj in self.objects.values()}
        self._custom_count = 0

    def copy(self) -> Schema:
        return copy.deepcopy(self)

    def get(self, name: str) -> ObjectDef | None:
        return self._by_lower.get(name.lower())

    def by_prefix(self, prefix: str) -> ObjectDef | None:
        return self._by_prefix.get(prefix)

    def _next_prefix(self) -> str:
        digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        prefix = "a0" + digits[self._custom_count % 62]
        self._custom_count += 1
        return prefix

    def extend(self, spec: Any) -> list[str]:
        """Add custom objects and fields from the JSON shape in the module docstring; returns what was added."""
        if not isinstance(spec, dict):
            raise SchemaError("a schema extension is a JSON object with 'objects' and/or 'fields'")
        added: list[str] = []
        for obj_spec in spec.get("objects", []):
            if not isinstance(obj_spec, dict) or not isinstance(obj_spec.get("name"), str):
                raise SchemaError("each object needs a JSON object with a 'name'")
            name = obj_spec["name"]
            if not name.endswith("__c"):
                raise SchemaError(f"custom object {name!r} must end in '__c'")
            obj = self.get(name)
            if obj is None:
                obj = ObjectDef(name, self._next_prefix(), str(obj_spec.get("label", name)), custom=True)
                _system_fields(obj, owner=True)
                obj.add(FieldDef("Name", "string", obj_spec.get("nameLabel", "Name")))
                self.objects[name] = obj
                self._by_lower[name.lower()] = obj
                self._by_prefix[obj.key_prefix] = obj
                added.append(name)
            for field_spec in obj_spec.get("fields", []):
                definition = _field_from_json(name, field_spec)
                obj.add(definition)
                added.append(f"{name}.{definition.name}")
        fields = spec.get("fields", {})
        if not isinstance(fields, dict):
            raise SchemaError("'fields' maps an object name to a list of fields")
        for obj_name, field_specs in fields.items():
            target = self.get(obj_name)
            if target is None:
                raise SchemaError(f"cannot add fields to unknown object {obj_name!r}")
            for field_spec in field_specs:
                definition = _field_from_json(target.name, field_spec)
                target.add(definition)
                added.append(f"{target.name}.{definition.name}")
        return added
