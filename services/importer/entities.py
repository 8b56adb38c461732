"""What the importer imports: one row per entity, from LogiSense resource to Salesforce object.

A relation lands as a lookup set by the parent's external id (`Package__r: {LogiSense_Id__c: "12"}`),
so parents must land before children: ENTITIES is in that order. Target objects and fields are
defaults; `importer.targets.<entity>` in the config overrides them (services/importer/targets.py).
What a row holds is services/importer/model.py.
"""

from __future__ import annotations

from services.importer.model import Column, Deep, ImportEntity, Relation, SfType


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

# The invoice's columns come from `mappings.invoice_columns` (see `resolve` in services/importer/targets.py);
# these are the ones it always has. The Account lookup is set from the LogiSense account's link field (sfdcid).
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

# Not rows of the table: derived from the catalogue once it landed (services/importer/price_book.py).
PRICE_BOOK_NAMES = ("price_book", "price_book_entry")

ENTITIES: tuple[ImportEntity, ...] = _DATA + _CATALOGUE + (INVOICE,)
BY_NAME: dict[str, ImportEntity] = {e.name: e for e in ENTITIES}
GROUPS: dict[str, tuple[str, ...]] = {
    "data": tuple(e.name for e in _DATA),
    "catalogue": (*(e.name for e in _CATALOGUE), *PRICE_BOOK_NAMES),
    "invoices": (INVOICE.name,),
}
