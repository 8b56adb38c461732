"""The built-in objects of the emulated org, and the multi-currency field they gain.

Account, Contact, Product2 and User with the fields sfls reads and writes (including the LogiSense
trigger fields named by `SalesforceFields`), and the sales objects: Pricebook2, PricebookEntry,
OpportunityStage (read-only through the API), Opportunity and OpportunityLineItem (their rules live in
sales.py). A multi-currency org adds `CurrencyIsoCode` to Account, Opportunity, Product2, PricebookEntry
and OpportunityLineItem (`add_currency()`). The references whose children go with a deleted parent
(an Account's Contacts and Opportunities, an Opportunity's lines, a price book's or product's entries)
have delete constraint Cascade and their child relationship names, as Salesforce describes them.
"""

from __future__ import annotations

from typing import Any

from devstack.salesforce.schema import ADDRESS_PARTS, FieldDef, ObjectDef, system_fields


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
    system_fields(account, owner=True)
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
    system_fields(contact, owner=True)
    contact.add(_ref("AccountId", "Account", "Account", child_relationship="Contacts", delete_constraint="Cascade"))
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
    system_fields(product, owner=False)
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
    system_fields(user, owner=False)
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
    system_fields(book, owner=False)
    book.add(FieldDef("Name", "string", "Price Book Name", nillable=False, required=True))
    book.add(FieldDef("IsActive", "boolean", "Active", nillable=False))
    book.add(FieldDef("Description", "textarea", "Description"))
    book.add(_read_only("IsStandard", "boolean", "Is Standard Price Book", nillable=False))
    book.add(_read_only("IsArchived", "boolean", "Is Archived", nillable=False))

    entry = ObjectDef("PricebookEntry", "01u", "Price Book Entry")
    cascade: dict[str, Any] = {
        "child_relationship": "PricebookEntries",
        "delete_constraint": "Cascade",
        "nillable": False,
        "required": True,
        "updateable": False,
    }
    system_fields(entry, owner=False)
    entry.add(_ref("Pricebook2Id", "Pricebook2", "Pricebook2", **cascade))
    entry.add(_ref("Product2Id", "Product2", "Product2", **cascade))
    entry.add(FieldDef("UnitPrice", "currency", "List Price"))
    entry.add(FieldDef("UseStandardPrice", "boolean", "Use Standard Price", nillable=False))
    entry.add(FieldDef("IsActive", "boolean", "Active", nillable=False))
    entry.add(_read_only("Name", "string", "Product Name"))
    entry.add(_read_only("ProductCode", "string", "Product Code"))
    entry.add(_read_only("IsArchived", "boolean", "Is Archived", nillable=False))
    entry.add(FieldDef("LogiSense_Key__c", "string", "LogiSense Key", external_id=True, unique=True, custom=True))

    stage = ObjectDef("OpportunityStage", "01J", "Opportunity Stage", api_writable=False)
    system_fields(stage, owner=False)
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
    system_fields(opportunity, owner=True)
    opportunity.add(FieldDef("Name", "string", "Name", length=120, nillable=False, required=True))
    opportunity.add(
        _ref("AccountId", "Account", "Account", child_relationship="Opportunities", delete_constraint="Cascade")
    )
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
    system_fields(line, owner=False)
    line.add(
        _ref(
            "OpportunityId",
            "Opportunity",
            "Opportunity",
            nillable=False,
            required=True,
            updateable=False,
            child_relationship="OpportunityLineItems",
            delete_constraint="Cascade",
        )
    )
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
