"""What the importer imports: one row per entity, from LogiSense resource to Salesforce object.

Each entity names its LogiSense source (a paged resource, or a deep search whose nested children
are flattened), its Kafka topic (`<prefix>.catalogue.<entity>` or `<prefix>.reference.<entity>`,
keyed by the LogiSense id), its Salesforce target object and field map, and its relations to other
entities. A relation lands as a lookup set by the parent's external id (`Package__r:
{LogiSense_Id__c: "12"}`), so parents must land before children: ENTITIES is in that order.

Target objects and fields are defaults; `importer.targets.<entity>` in the config overrides them.
`salesforce_schema()` gives the custom objects and fields the defaults need, in the shape the
Salesforce emulator's `POST /__admin/schema` takes (the same list an org admin deploys).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from shared.errors import ConfigError
from shared.kafka import Topics
from shared.settings import ImportSettings, Settings

Group = Literal["catalogue", "data", "invoices"]
SfType = Literal["string", "textarea", "boolean", "double", "int", "datetime", "picklist"]


@dataclass(frozen=True)
class Column:
    """One Salesforce field fed by one LogiSense field."""

    salesforce: str
    logisense: str
    type: SfType = "string"


@dataclass(frozen=True)
class Relation:
    """A LogiSense foreign key landed as a Salesforce lookup to the parent entity's record."""

    logisense: str  # the foreign key on the LogiSense item, e.g. packageId
    entity: str  # the parent entity, e.g. package
    salesforce: str  # the lookup field, e.g. Package__c

    @property
    def relationship(self) -> str:
        """The relationship name used to set the lookup by external id (Package__c -> Package__r)."""
        return self.salesforce[:-3] + "__r" if self.salesforce.endswith("__c") else self.salesforce.removesuffix("Id")


@dataclass(frozen=True)
class Deep:
    """A deep search whose nested children are the entity's items: RatePlan/Search -> groups -> rates.

    `path` is the chain of child keys; each flattened item gets the ids of its ancestors under
    `inherit` (ancestor depth -> field name), e.g. a rate gets its rate plan's id as usageRatePlanId.
    """

    route: str
    path: tuple[str, ...]
    inherit: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportEntity:
    name: str
    group: Group
    resource: str  # the LogiSense resource (paged GET)
    sobject: str
    columns: tuple[Column, ...]
    relations: tuple[Relation, ...] = ()
    deep: Deep | None = None
    label: str = ""

    @property
    def kind(self) -> Literal["catalogue", "reference"]:
        return "catalogue" if self.group == "catalogue" else "reference"

    def topic(self, topics: Topics) -> str:
        return topics.catalogue(self.name) if self.kind == "catalogue" else topics.reference(self.name)

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").title()


def _c(salesforce: str, logisense: str, kind: SfType = "string") -> Column:
    return Column(salesforce, logisense, kind)


NAME = _c("Name", "name")
DESCRIPTION = _c("Description__c", "description", "textarea")
IS_DEFAULT = _c("Is_Default__c", "isDefault", "boolean")
IS_ACTIVE = _c("Is_Active__c", "isActive", "boolean")
CURRENCY = (_c("Currency_Id__c", "currencyId", "double"), _c("Currency_Name__c", "currencyName"))

_CATALOGUE: tuple[ImportEntity, ...] = (
    ImportEntity(
        "package",
        "catalogue",
        "Package",
        "LogiSense_Package__c",
        (
            NAME,
            DESCRIPTION,
            _c("Start__c", "start", "datetime"),
            _c("Expiry__c", "expiry", "datetime"),
            _c("Post_Paid__c", "postPaid", "boolean"),
            _c("Full_Period__c", "fullPeriod", "boolean"),
            _c("Bill_On_Account_Bill_Day__c", "billOnAccountBillDay", "boolean"),
            IS_ACTIVE,
        ),
    ),
    ImportEntity(
        "package_frequency",
        "catalogue",
        "Package/Frequency",
        "Product2",
        (
            NAME,
            _c("ProductCode", "sku"),
            _c("IsActive", "isActive", "boolean"),
            _c("Frequency__c", "frequency", "double"),
            _c("Frequency_Type_Id__c", "frequencyTypeId", "double"),
            _c("Term_Id__c", "termId", "double"),
        ),
        (Relation("packageId", "package", "Package__c"),),
    ),
    ImportEntity(
        "package_currency",
        "catalogue",
        "Package/Currency",
        "LogiSense_Package_Currency__c",
        (_c("Name", "currencyName"), *CURRENCY),
        (Relation("packageId", "package", "Package__c"),),
    ),
    ImportEntity(
        "service",
        "catalogue",
        "Service",
        "LogiSense_Service__c",
        (
            NAME,
            DESCRIPTION,
            _c("Service_Type_Id__c", "serviceTypeId", "double"),
            _c("Service_Base_Type_Id__c", "serviceBaseTypeId", "double"),
            _c("Service_Category_Id__c", "serviceCategoryId", "double"),
            _c("Usage_Frequency__c", "usageFrequency", "double"),
            _c("Usage_Frequency_Type_Id__c", "usageFrequencyTypeId", "double"),
            IS_ACTIVE,
            _c("Is_Tax_Exempt__c", "isTaxExempt", "boolean"),
            _c("Is_Tax_Inclusive__c", "isTaxInclusive", "boolean"),
        ),
    ),
    ImportEntity(
        "usage_bucket",
        "catalogue",
        "Usage/Bucket",
        "LogiSense_Usage_Bucket__c",
        (
            NAME,
            _c("Usage_Bucket_Base_Id__c", "usageBucketBaseId", "double"),
            _c("Prorate__c", "prorate", "boolean"),
            _c("Is_Infinite_Last_Tier__c", "isInfiniteLastTier", "boolean"),
            _c("Refill_Frequency__c", "refillFrequency", "double"),
            _c("Refill_Frequency_Type_Id__c", "refillFrequencyTypeId", "double"),
            _c("Expire_After_Frequency__c", "expireAfterFrequency", "double"),
        ),
        (Relation("serviceId", "service", "Service__c"),),
    ),
    ImportEntity(
        "rate_plan",
        "catalogue",
        "Usage/Rate/Plan",
        "LogiSense_Rate_Plan__c",
        (NAME, _c("Display_Name__c", "displayName"), _c("Amount_Precision__c", "amountPrecision", "double")),
    ),
    ImportEntity(
        "rate_group",
        "catalogue",
        "Usage/Rate/Group",
        "LogiSense_Rate_Group__c",
        (
            NAME,
            _c("Display_Name__c", "displayName"),
            *CURRENCY,
            _c("Start__c", "start", "datetime"),
            _c("Priority__c", "priority", "double"),
            _c("Is_Aggregated__c", "isAggregated", "boolean"),
            _c("Is_Pass_Through__c", "isPassThrough", "boolean"),
        ),
        (Relation("usageRatePlanId", "rate_plan", "Rate_Plan__c"),),
    ),
    ImportEntity(
        "rate",
        "catalogue",
        "Usage/Rate",
        "LogiSense_Rate__c",
        (
            _c("Name", "displayName"),
            _c("Amount__c", "amount", "double"),
            _c("Usage_Class_Id__c", "usageClassId", "double"),
        ),
        (
            Relation("usageRateGroupId", "rate_group", "Rate_Group__c"),
            Relation("usageRatePlanId", "rate_plan", "Rate_Plan__c"),
        ),
        # A rate knows only its group; the deep search over rate plans gives it its plan too.
        deep=Deep("RatePlan", ("usageRateGroups", "rates"), {0: "usageRatePlanId"}),
    ),
    ImportEntity(
        # The rate plan connected to each of a package's services.
        "package_service",
        "catalogue",
        "Package/Service",
        "LogiSense_Package_Service__c",
        (_c("Name", "serviceName"), _c("Rate_Plan_Name__c", "usageRatePlanName")),
        (
            Relation("packageId", "package", "Package__c"),
            Relation("serviceId", "service", "Service__c"),
            Relation("usageRatePlanId", "rate_plan", "Rate_Plan__c"),
        ),
        label="Package Service (rate plan connection)",
    ),
    ImportEntity(
        "pricing_rule",
        "catalogue",
        "PricingRule",
        "LogiSense_Pricing_Rule__c",
        (
            _c("Name", "serviceName"),
            _c("Charge_Type__c", "chargeType"),
            _c("Amount__c", "amount", "double"),
            *CURRENCY,
            _c("Service_Status_Type_Id__c", "serviceStatusTypeId", "double"),
            _c("Tiers__c", "tiers", "textarea"),
        ),
        (
            Relation("packageFrequencyId", "package_frequency", "Product__c"),
            Relation("serviceId", "service", "Service__c"),
        ),
    ),
    ImportEntity(
        "share_level",
        "catalogue",
        "Usage/Bucket/ShareLevel",
        "LogiSense_Share_Level__c",
        (NAME, DESCRIPTION),
    ),
    ImportEntity(
        "share_plan",
        "catalogue",
        "Usage/Bucket/SharePlan",
        "LogiSense_Share_Plan__c",
        (
            NAME,
            DESCRIPTION,
            _c("Participating_Amount__c", "participatingAmount", "double"),
            _c("Contributing_Amount__c", "contributingAmount", "double"),
        ),
        (
            Relation("usageBucketId", "usage_bucket", "Usage_Bucket__c"),
            Relation("usageBucketShareLevelId", "share_level", "Share_Level__c"),
        ),
    ),
)

_DATA: tuple[ImportEntity, ...] = (
    ImportEntity(
        "account_status_type",
        "data",
        "Account/StatusType",
        "LogiSense_Account_Status_Type__c",
        (
            NAME,
            IS_DEFAULT,
            _c("Prevent_Changes__c", "preventChanges", "boolean"),
            _c("Base_Billing_Status_Type_Id__c", "baseBillingStatusTypeId", "double"),
        ),
    ),
    ImportEntity("account_type", "data", "AccountType", "LogiSense_Account_Type__c", (NAME, IS_DEFAULT)),
    ImportEntity(
        "contact_type",
        "data",
        "ContactType",
        "LogiSense_Contact_Type__c",
        (
            NAME,
            DESCRIPTION,
            _c("Contact_Type_Type_Id__c", "contactTypeTypeId", "double"),
            _c("Is_Required__c", "isRequired", "boolean"),
            _c("Show_On_New_Account__c", "showOnNewAccount", "boolean"),
        ),
    ),
    ImportEntity(
        "contact_point_type",
        "data",
        "ContactPointType",
        "LogiSense_Contact_Point_Type__c",
        (
            NAME,
            _c("Data_Type_Id__c", "dataTypeId", "double"),
            _c("Is_Required__c", "isRequired", "boolean"),
            _c("Allow_Multiple__c", "allowMultiple", "boolean"),
        ),
        (Relation("contactTypeId", "contact_type", "Contact_Type__c"),),
    ),
    ImportEntity(
        "country",
        "data",
        "Country",
        "LogiSense_Country__c",
        (
            NAME,
            _c("Country_Code__c", "countryCode"),
            _c("Sort_Order__c", "sortOrder", "double"),
            _c("Is_Visible__c", "isVisible", "boolean"),
        ),
    ),
    ImportEntity(
        "state",
        "data",
        "State",
        "LogiSense_State__c",
        (
            NAME,
            _c("Code__c", "code"),
            _c("Sort_Order__c", "sortOrder", "double"),
            _c("Is_Visible__c", "isVisible", "boolean"),
        ),
        (Relation("countryId", "country", "Country__c"),),
    ),
    ImportEntity("owner", "data", "Owner", "LogiSense_Owner__c", (NAME,)),
    ImportEntity(
        "currency",
        "data",
        "Currency",
        "LogiSense_Currency__c",
        (NAME, _c("Code__c", "code"), _c("Symbol__c", "symbol"), IS_DEFAULT),
    ),
    ImportEntity(
        "owner_currency",
        "data",
        "Owner/Currency",
        "LogiSense_Owner_Currency__c",
        (_c("Name", "currencyName"),),
        (Relation("ownerId", "owner", "Owner__c"), Relation("currencyId", "currency", "Currency__c")),
    ),
    ImportEntity(
        "bill_group",
        "data",
        "BillGroup",
        "LogiSense_Bill_Group__c",
        (
            NAME,
            _c("Bill_Day__c", "billDay", "double"),
            _c("Usage_Bill_Day__c", "usageBillDay", "double"),
            IS_DEFAULT,
        ),
    ),
    ImportEntity(
        "ar_term",
        "data",
        "AccountsReceivable/Terms",
        "LogiSense_AR_Term__c",
        (NAME, _c("Payment_Term_Id__c", "paymentTermId", "double"), IS_DEFAULT),
        label="AR Term",
    ),
)

# The invoice's columns come from `mappings.invoice_columns` (see invoice_entity); these are the
# ones it always has. The Account lookup is set from the LogiSense account's link field (sfdcid).
INVOICE = ImportEntity(
    "invoice",
    "invoices",
    "Invoice",
    "LogiSense_Invoice__c",
    (NAME, _c("LogiSense_Account_Id__c", "accountId", "double")),
)
INVOICE_ACCOUNT_FIELD = "Account__c"
DEFAULT_INVOICE_COLUMNS = ("name", "date", "due", "balance")
INVOICE_COLUMN_TYPES: dict[str, SfType] = {
    "date": "datetime",
    "due": "datetime",
    "sent": "datetime",
    "lastChecked": "datetime",
    "balance": "double",
    "previousBalance": "double",
    "invoiceStatusTypeId": "double",
    "processed": "boolean",
    "currencyId": "double",
}

ENTITIES: tuple[ImportEntity, ...] = _DATA + _CATALOGUE + (INVOICE,)
BY_NAME: dict[str, ImportEntity] = {e.name: e for e in ENTITIES}
GROUPS: dict[str, tuple[str, ...]] = {
    "data": tuple(e.name for e in _DATA),
    "catalogue": tuple(e.name for e in _CATALOGUE),
    "invoices": (INVOICE.name,),
}


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
    standard = {"Account", "Contact", "Product2", "User"}
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
    }


_STANDARD_FIELDS = {"Product2": ("Name", "ProductCode", "IsActive", "Family", "Description", "LogiSense_Id__c")}
