"""The emulated resources: routes, fields, references, and what each verb may do.

Field names follow LogiSense Billing's REST API as documented; where the documentation leaves a name
open we use the one a client would most plausibly meet (marked as a design choice where it matters).
Every `xxxId` reference gets a read-only `xxxName` partner on read. Custom fields (Column Names) are
top-level properties on the resources marked `extensible`; the allowed names are part of the emulator's
state, not of this table.

Account price plans (`Account/PricePlan`, one per account), their entries (`Package/Service/PricePlan`)
and account product codes (`Account/ProductCode`) follow LogiSense's documented fields. The charges of
an entry are a design choice of the emulator, as LogiSense's own charge rows are not documented: two
lists on the entry, `recurringCharges: [{"amount", "serviceStatusTypeId" (optional)}]` and
`oneTimeCharges: [{"amount"}]`, amounts >= 0. `Account/Package` keeps only what sfls reads (account,
package, frequency, product code): a product code that an account package or an entry uses cannot be
deleted (409, like every restricting reference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

FieldType = Literal["int", "str", "bool", "float", "date", "list"]
OnDelete = Literal["cascade", "detach", "restrict"]

ALL_VERBS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
READ_ONLY_VERBS = frozenset({"GET"})
COMMON_READ_ONLY = ("identity", "ownerId", "created", "updated")


@dataclass(frozen=True)
class FieldSpec:
    """One property: its type, whether it is required, writable, bounded, or a reference."""

    name: str
    type: FieldType = "str"
    required: bool = False
    read_only: bool = False
    ref: str | None = None  # the referenced resource route
    on_delete: OnDelete = "restrict"  # what deleting the referenced record does to this one
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = 255
    choices: tuple[str, ...] | None = None
    indexed: bool = False

    @property
    def name_partner(self) -> str | None:
        """The read-only `xxxName` that goes with a reference `xxxId`."""
        if self.ref is None or not self.name.endswith("Id"):
            return None
        return self.name[:-2] + "Name"


@dataclass(frozen=True)
class ResourceSpec:
    """One route under /ResourceServer/api/{v}/ and its fields."""

    route: str
    fields: tuple[FieldSpec, ...]
    verbs: frozenset[str] = ALL_VERBS
    extensible: bool = False  # carries custom fields (top-level, keyed by Column Name)
    unique: tuple[str, ...] = ()  # a duplicate value answers 409
    searchable: bool = True
    patch_children: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (child route, fk field)

    @property
    def dto_type_key(self) -> str:
        parts = self.route.split("/")
        joined = "".join(part[:1].upper() + part[1:] for part in parts)
        return joined[:1].lower() + joined[1:]

    def field(self, name: str) -> FieldSpec | None:
        return _FIELD_INDEX[self.route].get(name)

    @property
    def writable(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if not f.read_only)

    @property
    def references(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.ref is not None)


def _f(name: str, type_: FieldType = "str", **kwargs: object) -> FieldSpec:
    return FieldSpec(name, type_, **kwargs)  # type: ignore[arg-type]


def _ref(name: str, target: str, *, required: bool = False, on_delete: OnDelete = "restrict") -> FieldSpec:
    return FieldSpec(name, "int", required=required, ref=target, on_delete=on_delete, indexed=True)


def _common() -> tuple[FieldSpec, ...]:
    return (
        _f("identity", "int", read_only=True),
        FieldSpec("ownerId", "int", read_only=True, ref="Owner"),
        _f("created", "date", read_only=True),
        _f("updated", "date", read_only=True),
    )


def _named(*rest: FieldSpec, name_required: bool = True) -> tuple[FieldSpec, ...]:
    return (*_common(), _f("name", required=name_required, indexed=True), *rest)


RESOURCES: dict[str, ResourceSpec] = {}


def _add(spec: ResourceSpec) -> None:
    RESOURCES[spec.route] = spec


_add(ResourceSpec("Owner", (_f("identity", "int", read_only=True), _f("name")), verbs=READ_ONLY_VERBS))
_add(
    ResourceSpec(
        "Owner/Currency",
        (_f("identity", "int", read_only=True), _ref("ownerId", "Owner"), _ref("currencyId", "Currency")),
        verbs=READ_ONLY_VERBS,
    )
)
_add(
    ResourceSpec(
        "Currency",
        _named(_f("code", required=True, max_length=3, indexed=True), _f("symbol"), _f("isDefault", "bool")),
        unique=("code",),
    )
)
_add(ResourceSpec("AccountType", _named(_f("isDefault", "bool")), unique=("name",)))
_add(
    ResourceSpec(
        "Account/StatusType",
        _named(
            _f("isDefault", "bool"),
            _f("preventChanges", "bool"),
            _f("baseBillingStatusTypeId", "int", minimum=1, maximum=3),
        ),
    )
)
_add(
    ResourceSpec(
        "BillGroup",
        _named(
            _f("billDay", "int", minimum=1, maximum=31),
            _f("usageBillDay", "int", minimum=1, maximum=31),
            _f("invoiceDateProcessTypeId", "int"),
            _f("invoiceDueDateTypeId", "int"),
            _f("advanceInvoiceDays", "int", read_only=True),
            _f("isDefault", "bool"),
        ),
    )
)
_add(
    ResourceSpec(
        "AccountsReceivable/Terms",
        _named(
            _f("paymentTermId", "int"),
            _f("paymentDunningRuleId", "int"),
            _f("paymentRetryRuleId", "int"),
            _f("isDefault", "bool"),
        ),
    )
)
_add(
    ResourceSpec(
        "Country",
        _named(
            _f("countryCode", required=True, max_length=3, indexed=True),
            _f("countryAddressFormatId", "int"),
            _f("sortOrder", "int"),
            _f("isVisible", "bool"),
        ),
    )
)
_add(
    ResourceSpec(
        "State",
        _named(
            _ref("countryId", "Country", required=True, on_delete="cascade"),
            _f("code", max_length=10),
            _f("sortOrder", "int"),
            _f("isVisible", "bool"),
        ),
    )
)
_add(
    ResourceSpec(
        "ContactType",
        _named(
            _f("contactTypeTypeId", "int"),
            _f("description"),
            _f("isRequired", "bool"),
            _f("sendEmail", "bool"),
            _f("showOnOverview", "bool"),
            _f("showOnNewAccount", "bool"),
        ),
    )
)
_add(
    ResourceSpec(
        "ContactPointType",
        _named(
            _f("dataTypeId", "int", minimum=1, maximum=4),
            _ref("contactTypeId", "ContactType", required=True, on_delete="cascade"),
            _f("isRequired", "bool"),
            _f("allowMultiple", "bool"),
            _f("isCore", "bool"),
        ),
    )
)
_add(
    ResourceSpec(
        "Account",
        _named(
            _ref("accountTypeId", "AccountType"),
            _ref("accountStatusTypeId", "Account/StatusType"),
            _ref("billGroupId", "BillGroup"),
            _ref("accountsReceivableTermsId", "AccountsReceivable/Terms"),
            _ref("currencyId", "Currency"),
            _ref("parentAccountId", "Account", on_delete="detach"),
            _ref("invoicerAccountId", "Account", on_delete="detach"),
            _ref("usageInvoicerAccountId", "Account", on_delete="detach"),
            _f("billDay", "int", minimum=1, maximum=31),
            _f("effectiveCancel", "date"),
            _f("actingOwnerId", "int", read_only=True),
        ),
        extensible=True,
        patch_children={"contacts": ("Contact", "accountId")},
    )
)
_add(
    ResourceSpec(
        "Contact",
        (
            *_common(),
            _ref("accountId", "Account", required=True, on_delete="cascade"),
            _ref("contactTypeId", "ContactType", required=True),
            _f("title"),
            _f("firstName"),
            _f("lastName"),
            _f("name", read_only=True),
            _f("isUsedForTax", "bool"),
        ),
        patch_children={"contactPoints": ("Contact/Point", "contactId")},
    )
)
_add(
    ResourceSpec(
        "Contact/Point",
        (
            *_common(),
            _ref("contactId", "Contact", required=True, on_delete="cascade"),
            _ref("contactPointTypeId", "ContactPointType", required=True),
            _f("value", max_length=4000, indexed=True),
            _f("address1"),
            _f("address2"),
            _f("city"),
            _ref("stateId", "State"),
            _ref("countryId", "Country"),
            _f("zipCode", max_length=20),
        ),
    )
)
_add(
    ResourceSpec(
        "Package",
        _named(
            _f("description"),
            _f("start", "date"),
            _f("expiry", "date"),
            _f("postPaid", "bool"),
            _f("fullPeriod", "bool"),
            _f("invoiceDetail", "bool"),
            _f("billOnAccountBillDay", "bool"),
            _f("defaultAccountPackageStatusTypeId", "int"),
            _f("packageCategoryId", "int"),
            _f("isActive", "bool"),
        ),
        extensible=True,
        patch_children={
            "frequencies": ("Package/Frequency", "packageId"),
            "currencies": ("Package/Currency", "packageId"),
            "services": ("Package/Service", "packageId"),
        },
    )
)
_add(
    ResourceSpec(
        "Package/Frequency",
        _named(
            _ref("packageId", "Package", required=True, on_delete="cascade"),
            _f("frequency", "int", minimum=0),
            _f("frequencyTypeId", "int", minimum=1, maximum=5),
            _f("termId", "int"),
            _f("sku", indexed=True),
            _f("isActive", "bool"),
            _f("isUsageBucketSharePlanPackageFrequency", "bool"),
        ),
        extensible=True,
    )
)
_add(
    ResourceSpec(
        "Package/Currency",
        (
            *_common(),
            _ref("packageId", "Package", required=True, on_delete="cascade"),
            _ref("currencyId", "Currency", required=True),
        ),
    )
)
_add(
    ResourceSpec(
        "Service",
        _named(
            _f("description"),
            _f("serviceTypeId", "int", minimum=1, maximum=4),
            _f("serviceBaseTypeId", "int", minimum=1, maximum=3),
            _f("serviceCategoryId", "int"),
            _f("defaultServiceStatusTypeId", "int"),
            _f("usageFrequency", "int", minimum=0),
            _f("usageFrequencyTypeId", "int"),
            _f("isActive", "bool"),
            _f("isTaxExempt", "bool"),
            _f("isTaxInclusive", "bool"),
        ),
    )
)
_add(
    ResourceSpec(
        "Usage/Rate/Plan",
        _named(_f("displayName"), _f("amountPrecision", "int", minimum=0, maximum=11)),
    )
)
_add(
    ResourceSpec(
        # An emulator choice: a package's service and the rate plan connected to it ("rate plan connections").
        "Package/Service",
        (
            *_common(),
            _ref("packageId", "Package", required=True, on_delete="cascade"),
            _ref("serviceId", "Service", required=True, on_delete="cascade"),
            _ref("usageRatePlanId", "Usage/Rate/Plan", on_delete="detach"),
        ),
    )
)
_add(
    ResourceSpec(
        # An emulator choice: no LogiSense resource of this name is documented.
        "PricingRule",
        (
            *_common(),
            _ref("packageFrequencyId", "Package/Frequency", required=True, on_delete="cascade"),
            _ref("serviceId", "Service", required=True, on_delete="cascade"),
            _ref("currencyId", "Currency", required=True),
            _f("serviceStatusTypeId", "int"),
            _f("amount", "float", minimum=0),
            _f("chargeType", required=True, choices=("recurring", "oneTime", "transition")),
            _f("tiers", "list"),
        ),
    )
)
_add(
    ResourceSpec(
        # One per account (a second answers 400). `lastUsedForBilling` is set by billing only, and as bill
        # runs do not price from plans, it stays null. `name` is required: an emulator choice.
        "Account/PricePlan",
        _named(
            _ref("accountId", "Account", required=True, on_delete="cascade"),
            _f("description", max_length=4000),
            _f("start", "date"),
            _f("end", "date"),
            _f("isConsolidatedByInvoicer", "bool"),
            _f("includeChildAccounts", "bool"),
            _f("lastUsedForBilling", "date", read_only=True),
        ),
        patch_children={"packageServicePricePlan": ("Package/Service/PricePlan", "accountPricePlanId")},
    )
)
_add(
    ResourceSpec(
        # `name` is the user-defined code, unique within the owner (a reuse answers 400).
        "Account/ProductCode",
        (
            *_common(),
            _f("name", required=True, indexed=True),
            _ref("accountId", "Account", required=True, on_delete="cascade"),
        ),
    )
)
_add(
    ResourceSpec(
        # An account's order of a package (the emulator keeps only what sfls reads): an account package
        # priced by an account product code holds that code, which then cannot be deleted (409).
        "Account/Package",
        (
            *_common(),
            _ref("accountId", "Account", required=True, on_delete="cascade"),
            _ref("packageId", "Package", required=True),
            _ref("packageFrequencyId", "Package/Frequency"),
            _ref("accountProductCodeId", "Account/ProductCode"),
            _f("quantity", "int", minimum=0),
            _f("start", "date"),
        ),
    )
)
_add(
    ResourceSpec(
        # Pricing of a package's service: catalogue pricing without `accountPricePlanId`, account pricing
        # with it. The charge rows are an emulator choice (LogiSense's own shape is not documented):
        # `recurringCharges: [{"amount": 10.0, "serviceStatusTypeId": 1}]` (the status is optional) and
        # `oneTimeCharges: [{"amount": 5.0}]`, amounts >= 0. `priceBookId` and `generalLedgerId` are plain
        # numbers: the emulator has no PriceBook or GeneralLedger resource to check them against.
        # Deleting a product code a price plan entry uses answers 409 (restrict): an emulator choice.
        "Package/Service/PricePlan",
        (
            *_common(),
            _ref("packageServiceId", "Package/Service", required=True, on_delete="cascade"),
            _ref("packageFrequencyId", "Package/Frequency", required=True, on_delete="cascade"),
            _ref("packageCurrencyId", "Package/Currency", required=True, on_delete="cascade"),
            _ref("accountPricePlanId", "Account/PricePlan", on_delete="cascade"),
            _ref("accountProductCodeId", "Account/ProductCode"),
            _f("priceBookId", "int", indexed=True),
            _f("generalLedgerId", "int"),
            _f("pricePlanTypeId", "int"),
            _f("priceChangeTrackingId", "int"),
            _f("effective", "date"),
            _f("recurringCharges", "list"),
            _f("oneTimeCharges", "list"),
        ),
    )
)
_add(
    ResourceSpec(
        "Usage/Bucket",
        _named(
            _ref("serviceId", "Service", on_delete="cascade"),
            _f("usageBucketBaseId", "int"),
            _f("prorate", "bool"),
            _f("isInfiniteLastTier", "bool"),
            _f("refillFrequency", "int", minimum=0),
            _f("refillFrequencyTypeId", "int"),
            _f("expireAfterFrequency", "int", minimum=0),
        ),
    )
)
_add(
    ResourceSpec(
        "Usage/Rate/Group",
        _named(
            _ref("usageRatePlanId", "Usage/Rate/Plan", required=True, on_delete="cascade"),
            _f("displayName"),
            _ref("currencyId", "Currency"),
            _f("start", "date"),
            _f("end", "date", read_only=True),
            _f("priority", "int", minimum=0),
            _f("isAggregated", "bool"),
            _f("isPassThrough", "bool"),
        ),
    )
)
_add(
    ResourceSpec(
        "Usage/Rate",
        (
            *_common(),
            _ref("usageRateGroupId", "Usage/Rate/Group", required=True, on_delete="cascade"),
            _f("usageClassId", "int"),
            _f("amount", "float"),
            _f("displayName"),
            _f("retired", "bool", read_only=True),
        ),
    )
)
_add(ResourceSpec("Usage/Bucket/ShareLevel", _named(_f("description")), verbs=READ_ONLY_VERBS))
_add(
    ResourceSpec(
        "Usage/Bucket/SharePlan",
        _named(
            _f("description"),
            _ref("usageBucketId", "Usage/Bucket", on_delete="cascade"),
            _ref("usageBucketShareLevelId", "Usage/Bucket/ShareLevel"),
            _f("participatingAmount", "float", minimum=0),
            _f("contributingAmount", "float", minimum=0),
        ),
    )
)
_add(
    ResourceSpec(
        "Account/SharePlan",
        (
            *_common(),
            _ref("usageBucketSharePlanId", "Usage/Bucket/SharePlan", required=True, on_delete="cascade"),
            _ref("usageBucketShareLevelId", "Usage/Bucket/ShareLevel", required=True),
            _ref("accountId", "Account", required=True, on_delete="cascade"),
            _f("accountServiceId", "int"),
            _f("isAvailable", "bool", read_only=True),
        ),
    )
)
_add(
    ResourceSpec(
        "Account/SharePlan/Contribution",
        (
            *_common(),
            _ref("accountSharePlanParticipationId", "Account/SharePlan", required=True, on_delete="cascade"),
            _f("accountServiceUsageBucketId", "int"),
            _f("isContributing", "bool", read_only=True),
            _f("contributingAmount", "float", read_only=True),
            _f("contributingUsageUnitId", "int"),
        ),
        verbs=READ_ONLY_VERBS,
    )
)
_add(
    ResourceSpec(
        # Produced by bill runs (the admin API's bill-run), never created through the REST API.
        "Invoice",
        _named(
            _ref("accountId", "Account", required=True, on_delete="cascade"),
            _f("date", "date"),
            _f("due", "date"),
            _f("sent", "date"),
            _f("lastChecked", "date"),
            _f("invoiceStatusTypeId", "int"),
            _f("processed", "bool"),
            _f("previousBalance", "float"),
            _f("balance", "float"),
            _ref("currencyId", "Currency"),
        ),
        verbs=READ_ONLY_VERBS,
    )
)

# Invoice children exist only inside deep search (not as REST routes of their own).
_INVOICE_CHILD_ROUTES = ("Invoice/Item", "Invoice/TaxSummary", "Invoice/History")
for _route, _fields in zip(
    _INVOICE_CHILD_ROUTES,
    (
        (
            _f("invoiceAmount", "float"),
            _f("periodStart", "date"),
            _f("periodEnd", "date"),
            _f("invoiceItemTypeId", "int"),
            _f("description"),
        ),
        (_f("taxRateName"), _f("invoiceAmount", "float")),
        (_f("date", "date"), _f("action"), _f("amount", "float")),
    ),
    strict=True,
):
    _add(
        ResourceSpec(
            _route,
            (_f("identity", "int", read_only=True), _ref("invoiceId", "Invoice", on_delete="cascade"), *_fields),
            verbs=frozenset(),
        )
    )

_FIELD_INDEX: dict[str, dict[str, FieldSpec]] = {r: {f.name: f for f in s.fields} for r, s in RESOURCES.items()}

# Routes longest first, so `Account/StatusType/5` resolves to Account/StatusType and not Account.
ROUTES_LONGEST_FIRST = sorted(RESOURCES, key=lambda r: -r.count("/"))
COLUMN_NAME = re.compile(r"^[a-z][A-Za-z0-9_]*$")


def reverse_references() -> dict[str, list[tuple[str, FieldSpec]]]:
    """For each resource, the (resource, field) pairs that reference it."""
    result: dict[str, list[tuple[str, FieldSpec]]] = {route: [] for route in RESOURCES}
    for route, spec in RESOURCES.items():
        for ref_field in spec.references:
            if ref_field.ref in result and ref_field.name != "ownerId":
                result[ref_field.ref].append((route, ref_field))
    return result


REVERSE_REFERENCES = reverse_references()
