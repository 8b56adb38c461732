"""The rules of the sales objects: price books, their entries, opportunity stages, opportunities and their lines.

store.py calls these while it plans DML (`check_create`, `check_update`, `check_delete`: they refuse with
Salesforce's error codes or fill in the derived fields of the save) and when a transaction commits
(`finalize`: roll-ups that follow from the changes the transaction applied). What they do:

- Pricebook2: one standard book per org, seeded (`seed`); its Name cannot change and it cannot be
  deleted; custom books can be created, updated and deleted (their entries go with them).
- PricebookEntry: one per (book, product, currency); an entry in a custom book needs a standard-book
  entry for the product (and currency) first (STANDARD_PRICE_NOT_DEFINED); UnitPrice is required
  unless UseStandardPrice, and with UseStandardPrice the entry mirrors the standard price, also when
  that price changes later. Name and ProductCode are copies of the product's.
- OpportunityStage: seeded, read-only through the API; an opportunity's StageName must name an active
  stage, which sets IsClosed, IsWon, ForecastCategory(Name) and, unless the save gives them, Probability.
- Opportunity: Amount is the sum of its lines' TotalPrice once lines exist (writes to it are then
  ignored); Pricebook2Id and CurrencyIsoCode cannot change while lines exist.
- OpportunityLineItem: the entry must be active, in the opportunity's book (the first line sets the
  book when the opportunity has none, if that book is active) and in its currency; UnitPrice or
  TotalPrice, not both; Subtotal = Quantity x UnitPrice, TotalPrice = Subtotal x (1 - Discount/100).
  Adding, changing or deleting lines updates the opportunity in the same transaction, so that update
  is also a change event (an emulator choice: Salesforce does not document whether it emits one).

Reference fields (the book, product, entry and opportunity of a save) are checked where every reference is,
in references.py (`check_target`: INVALID_CROSS_REFERENCE_KEY, ENTITY_IS_DELETED, FIELD_INTEGRITY_EXCEPTION);
the rules here read the records they name through `_referenced`.

Errors that Salesforce is known to return keep its code and text; where the exact code or text is
not known, the comment next to it says that it is an emulator choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devstack.salesforce import references
from devstack.salesforce.base import ApiError, to18

if TYPE_CHECKING:
    from devstack.salesforce.schema import ObjectDef
    from devstack.salesforce.store import Change, Store, Transaction

STANDARD_BOOK_ID = to18("01s000000000001")
STANDARD_BOOK_NAME = "Standard Price Book"
READ_ONLY_OBJECTS = {"OpportunityStage"}


@dataclass(frozen=True)
class Stage:
    label: str
    active: bool
    closed: bool
    won: bool
    probability: float
    forecast: str  # ForecastCategory (API value)
    forecast_name: str  # ForecastCategoryName (label)


# Salesforce's default sales process stages.
STAGES = (
    Stage("Prospecting", True, False, False, 10, "Pipeline", "Pipeline"),
    Stage("Qualification", True, False, False, 10, "Pipeline", "Pipeline"),
    Stage("Needs Analysis", True, False, False, 20, "Pipeline", "Pipeline"),
    Stage("Value Proposition", True, False, False, 50, "Pipeline", "Pipeline"),
    Stage("Id. Decision Makers", True, False, False, 60, "Pipeline", "Pipeline"),
    Stage("Perception Analysis", True, False, False, 70, "Pipeline", "Pipeline"),
    Stage("Proposal/Price Quote", True, False, False, 75, "Pipeline", "Pipeline"),
    Stage("Negotiation/Review", True, False, False, 90, "Pipeline", "Pipeline"),
    Stage("Closed Won", True, True, True, 100, "Closed", "Closed"),
    Stage("Closed Lost", True, True, False, 0, "Omitted", "Omitted"),
)


def seed(store: Store) -> None:
    """The standard price book and the opportunity stages every org starts with (no change events)."""
    store.admin_put(
        store.object("Pricebook2"),
        {"Id": STANDARD_BOOK_ID, "Name": STANDARD_BOOK_NAME, "IsActive": True, "IsStandard": True},
    )
    stages = store.object("OpportunityStage")
    stage_name = store.object("Opportunity").fields["StageName"]
    stage_name.picklist_values = tuple(stage.label for stage in STAGES if stage.active)
    for number, stage in enumerate(STAGES, start=1):
        store.admin_put(
            stages,
            {
                "Id": to18(f"01J{number:012d}"),
                "MasterLabel": stage.label,
                "ApiName": stage.label,
                "IsActive": stage.active,
                "IsClosed": stage.closed,
                "IsWon": stage.won,
                "DefaultProbability": float(stage.probability),
                "ForecastCategory": stage.forecast,
                "ForecastCategoryName": stage.forecast_name,
                "SortOrder": number,
            },
        )


def field_integrity(detail: str, field_name: str) -> ApiError:
    return ApiError(
        400, "FIELD_INTEGRITY_EXCEPTION", f"field integrity exception: {field_name} ({detail})", [field_name]
    )


def _live(store: Store, name: str) -> list[dict[str, Any]]:
    return [r for r in store.records.get(name, {}).values() if not r["IsDeleted"]]


def _record(store: Store, name: str, record_id: Any) -> dict[str, Any] | None:
    return store.get(store.object(name), record_id) if isinstance(record_id, str) else None


def _referenced(store: Store, owner: str, field_name: str, value: Any) -> dict[str, Any]:
    """The live record that the reference `owner.field_name` of a save names (references.check_target refuses
    any other id, with Salesforce's error for it)."""
    references.check_target(store, store.object(owner).fields[field_name], value)
    found = store.find(value)
    assert found is not None  # check_target passed: a live record
    return found[1]


def _lines_of(store: Store, opportunity_id: str) -> list[dict[str, Any]]:
    return [r for r in _live(store, "OpportunityLineItem") if r["OpportunityId"] == opportunity_id]


def _money(value: float) -> float:
    return round(value + 0.0, 2)


# ---- planning ------------------------------------------------------------------------------------
def check_create(tx: Transaction, obj: ObjectDef, record_id: str, values: dict[str, Any]) -> None:
    """Refuse a create Salesforce would refuse, or add the fields the save derives."""
    if obj.name in READ_ONLY_OBJECTS:
        raise _not_writable(obj, "create")
    store = tx.store
    if store.multi_currency and obj.field("CurrencyIsoCode") is not None and obj.name != "OpportunityLineItem":
        values.setdefault("CurrencyIsoCode", None)
        if values["CurrencyIsoCode"] is None:
            values["CurrencyIsoCode"] = store.currencies[0]
    if obj.name == "PricebookEntry":
        _entry_create(tx, record_id, values)
    elif obj.name == "Opportunity":
        _stage(tx, None, values)
        if values.get("Pricebook2Id") is not None:
            _check_book_active(store, "Opportunity", values["Pricebook2Id"])
    elif obj.name == "OpportunityLineItem":
        _line_create(tx, values)


def check_update(tx: Transaction, obj: ObjectDef, record: dict[str, Any], values: dict[str, Any]) -> None:
    """Refuse an update Salesforce would refuse, drop what it ignores, add what the save derives."""
    if obj.name in READ_ONLY_OBJECTS:
        raise _not_writable(obj, "update")
    if obj.name == "Pricebook2" and record["IsStandard"] and values.get("Name", record["Name"]) != record["Name"]:
        # The standard book's Name is read-only; refused as any read-only field is.
        raise ApiError(
            400,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            "Unable to create/update fields: Name. Please check the security settings of this field and verify "
            "that it is read/write for your profile or permission set.",
            ["Name"],
        )
    if obj.name == "PricebookEntry":
        _entry_update(tx, record, values)
    elif obj.name == "Opportunity":
        _opportunity_update(tx, record, values)
    elif obj.name == "OpportunityLineItem":
        _line_prices(record, values)


def check_delete(tx: Transaction, obj: ObjectDef, record: dict[str, Any]) -> None:
    """Refuse deleting the standard book, stages, and price book entries that opportunity lines use."""
    if obj.name in READ_ONLY_OBJECTS:
        raise _not_writable(obj, "delete")
    store = tx.store
    if obj.name == "Pricebook2" and record["IsStandard"]:
        # An emulator choice: DELETE_FAILED with this text (Salesforce's exact answer is not documented).
        raise ApiError(400, "DELETE_FAILED", "You can't delete the standard price book.")
    entries: set[str] = set()
    if obj.name == "PricebookEntry":
        entries = {record["Id"]}
    elif obj.name in {"Pricebook2", "Product2"}:
        key = "Pricebook2Id" if obj.name == "Pricebook2" else "Product2Id"
        entries = {e["Id"] for e in _live(store, "PricebookEntry") if e[key] == record["Id"]}
    if entries and any(line["PricebookEntryId"] in entries for line in _live(store, "OpportunityLineItem")):
        # An emulator choice: DELETE_FAILED with this text, for an entry (or its book or product) in use.
        raise ApiError(400, "DELETE_FAILED", "This price book entry is in use by an opportunity product.")


def _not_writable(obj: ObjectDef, operation: str) -> ApiError:
    # An emulator choice: stages are setup data in Salesforce; this code and text are not documented for it.
    return ApiError(400, "INVALID_TYPE_FOR_OPERATION", f"entity type {obj.name} does not support {operation}")


def _check_book_active(store: Store, owner: str, book_id: str) -> dict[str, Any]:
    field_name = "Pricebook2Id"
    book = _referenced(store, owner, field_name, book_id)
    if not book["IsActive"]:
        # An emulator choice: the text of this FIELD_INTEGRITY_EXCEPTION is not documented.
        raise field_integrity("price book is not active", field_name)
    return book


# ---- price book entries ----------------------------------------------------------------------------
def _entry_key(book: Any, product: Any, currency: Any) -> tuple[str, str, str | None]:
    return (str(book), str(product), currency)


def find_entry(tx: Transaction, book: str, product: str, currency: str | None) -> dict[str, Any] | None:
    """The live entry of (book, product, currency), also one planned earlier in this transaction."""
    key = _entry_key(book, product, currency)
    for entry in _live(tx.store, "PricebookEntry"):
        if _entry_key(entry["Pricebook2Id"], entry["Product2Id"], entry.get("CurrencyIsoCode")) == key:
            return entry
    return tx.pending_entries.get(key)


def _entry_create(tx: Transaction, record_id: str, values: dict[str, Any]) -> None:
    store = tx.store
    book = _referenced(store, "PricebookEntry", "Pricebook2Id", values["Pricebook2Id"])
    product = _referenced(store, "PricebookEntry", "Product2Id", values["Product2Id"])
    currency = values.get("CurrencyIsoCode") if store.multi_currency else None
    use_standard = bool(values.get("UseStandardPrice"))
    if use_standard and book["IsStandard"]:
        # An emulator choice: the code and text for UseStandardPrice on a standard entry are not documented.
        raise field_integrity("a standard price entry cannot use the standard price", "UseStandardPrice")
    if use_standard and values.get("UnitPrice") is not None:
        # An emulator choice: UnitPrice is settable only without UseStandardPrice; this text is not documented.
        raise field_integrity("UnitPrice cannot be set when UseStandardPrice is true", "UnitPrice")
    if not use_standard and values.get("UnitPrice") is None:
        raise ApiError(400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [UnitPrice]", ["UnitPrice"])
    if not book["IsStandard"]:
        standard = find_entry(tx, STANDARD_BOOK_ID, product["Id"], currency)
        if standard is None:
            raise ApiError(
                400, "STANDARD_PRICE_NOT_DEFINED", "Before creating a custom price, create a standard price."
            )
        if use_standard:
            values["UnitPrice"] = standard["UnitPrice"]
    if find_entry(tx, book["Id"], product["Id"], currency) is not None:
        # An emulator choice: Salesforce refuses the duplicate; its exact code is not documented.
        raise ApiError(
            400, "DUPLICATE_VALUE", "This price definition already exists in this price book", ["Product2Id"]
        )
    values["Name"] = product["Name"]
    values["ProductCode"] = product["ProductCode"]
    tx.pending_entries[_entry_key(book["Id"], product["Id"], currency)] = {**values, "Id": record_id}


def _entry_update(tx: Transaction, record: dict[str, Any], values: dict[str, Any]) -> None:
    use_standard = values.get("UseStandardPrice", record["UseStandardPrice"])
    if not use_standard:
        if "UnitPrice" in values and values["UnitPrice"] is None:
            raise ApiError(400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [UnitPrice]", ["UnitPrice"])
        return
    if record["Pricebook2Id"] == STANDARD_BOOK_ID:
        raise field_integrity("a standard price entry cannot use the standard price", "UseStandardPrice")
    if "UnitPrice" in values:
        raise field_integrity("UnitPrice cannot be set when UseStandardPrice is true", "UnitPrice")
    standard = find_entry(tx, STANDARD_BOOK_ID, record["Product2Id"], record.get("CurrencyIsoCode"))
    if standard is not None:
        values["UnitPrice"] = standard["UnitPrice"]


# ---- opportunities ------------------------------------------------------------------------------------
def stage_named(store: Store, name: Any) -> dict[str, Any] | None:
    """The active stage whose ApiName is `name` (case-insensitive, like picklist values)."""
    if not isinstance(name, str):
        return None
    return next(
        (s for s in _live(store, "OpportunityStage") if s["IsActive"] and s["ApiName"].lower() == name.lower()),
        None,
    )


def _stage(tx: Transaction, record: dict[str, Any] | None, values: dict[str, Any]) -> None:
    """StageName's derived fields, when the save sets the stage (on create it always does)."""
    if "StageName" not in values:
        return
    stage = stage_named(tx.store, values["StageName"])
    if stage is None:
        raise ApiError(
            400,
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"Stage: bad value for restricted picklist field: {values['StageName']}",
            ["StageName"],
        )
    values["StageName"] = stage["ApiName"]
    if record is not None and record["StageName"] == stage["ApiName"]:
        return
    values["IsClosed"] = stage["IsClosed"]
    values["IsWon"] = stage["IsWon"]
    values["ForecastCategory"] = stage["ForecastCategory"]
    values.setdefault("ForecastCategoryName", stage["ForecastCategoryName"])
    if values.get("Probability") is None:
        values["Probability"] = stage["DefaultProbability"]
    if record is not None:
        values["LastStageChangeDate"] = tx.stamp


def _opportunity_update(tx: Transaction, record: dict[str, Any], values: dict[str, Any]) -> None:
    _stage(tx, record, values)
    lines = _lines_of(tx.store, record["Id"])
    if not lines:
        if values.get("Pricebook2Id") not in (None, record["Pricebook2Id"]):
            _check_book_active(tx.store, "Opportunity", values["Pricebook2Id"])
        return
    values.pop("Amount", None)  # the sum of the lines; Salesforce ignores writes to it
    if "Pricebook2Id" in values and values["Pricebook2Id"] != record["Pricebook2Id"]:
        # FIELD_INTEGRITY_EXCEPTION is the code; the text is an emulator choice.
        raise field_integrity("cannot change the price book of an opportunity with products", "Pricebook2Id")
    if "CurrencyIsoCode" in values and values["CurrencyIsoCode"] != record.get("CurrencyIsoCode"):
        # FIELD_INTEGRITY_EXCEPTION is the code; the text is an emulator choice.
        raise field_integrity("cannot change the currency of an opportunity with products", "CurrencyIsoCode")


# ---- opportunity lines ---------------------------------------------------------------------------------
def _line_create(tx: Transaction, values: dict[str, Any]) -> None:
    store = tx.store
    opportunity = _referenced(store, "OpportunityLineItem", "OpportunityId", values["OpportunityId"])
    entry = _referenced(store, "OpportunityLineItem", "PricebookEntryId", values["PricebookEntryId"])
    if not entry["IsActive"]:
        raise field_integrity("pricebook entry is inactive", "PricebookEntryId")
    book_id = opportunity["Pricebook2Id"] or tx.pending_books.get(opportunity["Id"])
    if book_id is None:
        book = _record(store, "Pricebook2", entry["Pricebook2Id"])
        if book is None or not book["IsActive"]:
            # An emulator choice: the text for a first line whose book is inactive is not documented.
            raise field_integrity("pricebook entry is in an inactive pricebook", "PricebookEntryId")
        tx.pending_books[opportunity["Id"]] = entry["Pricebook2Id"]
    elif entry["Pricebook2Id"] != book_id:
        raise field_integrity(
            "pricebook entry is in a different pricebook than the one assigned to the opportunity",
            "PricebookEntryId",
        )
    if store.multi_currency:
        if entry.get("CurrencyIsoCode") != opportunity.get("CurrencyIsoCode"):
            # An emulator choice: the text of this FIELD_INTEGRITY_EXCEPTION is not documented.
            raise field_integrity(
                "pricebook entry currency code does not match opportunity currency code", "PricebookEntryId"
            )
        values["CurrencyIsoCode"] = opportunity.get("CurrencyIsoCode")
    values["Product2Id"] = entry["Product2Id"]
    values["ProductCode"] = entry["ProductCode"]
    values["ListPrice"] = entry["UnitPrice"]
    values["Name"] = f"{opportunity['Name']} {entry['Name']}"
    _line_prices(None, values)


def _line_prices(record: dict[str, Any] | None, values: dict[str, Any]) -> None:
    """UnitPrice or TotalPrice (not both), then Subtotal and TotalPrice from Quantity and Discount."""
    if values.get("UnitPrice") is not None and values.get("TotalPrice") is not None:
        raise field_integrity("only one of unit price or total price may be specified", "TotalPrice")
    if record is None and values.get("UnitPrice") is None and values.get("TotalPrice") is None:
        # An emulator choice: the text when neither price is given is not documented.
        raise field_integrity("total price must be specified", "TotalPrice")
    touched = {"UnitPrice", "TotalPrice", "Quantity", "Discount"} & set(values)
    if record is not None and not touched:
        return
    current = record or {}
    quantity = values.get("Quantity", current.get("Quantity"))
    if not quantity:
        raise field_integrity("quantity must be nonzero", "Quantity")
    discount = values.get("Discount", current.get("Discount")) or 0.0
    factor = 1 - discount / 100
    if values.get("TotalPrice") is not None:
        if factor == 0:
            raise field_integrity("a 100% discount needs a unit price", "TotalPrice")
        unit = values["TotalPrice"] / (quantity * factor)
        values["UnitPrice"] = _money(unit)
        values["Subtotal"] = _money(quantity * unit)
        return
    unit = values.get("UnitPrice", current.get("UnitPrice"))
    if unit is None:
        raise field_integrity("total price must be specified", "TotalPrice")
    values.pop("TotalPrice", None)
    values["Subtotal"] = _money(quantity * unit)
    values["TotalPrice"] = _money(quantity * unit * factor)


# ---- commit -------------------------------------------------------------------------------------------------
def finalize(tx: Transaction) -> None:
    """Follow-on updates of the transaction's applied changes, each also a change of this transaction."""
    store = tx.store
    changes: list[Change] = list(tx.changes)
    opportunities: dict[str, None] = {}  # in the order the transaction touched them
    for change in changes:
        record = change.new or {}
        if change.entity == "OpportunityLineItem" and record.get("OpportunityId"):
            opportunities[record["OpportunityId"]] = None
        elif change.entity == "PricebookEntry" and change.change_type == "UPDATE":
            _mirror_standard_price(tx, change)
        elif change.entity == "Product2" and change.change_type == "UPDATE":
            _refresh_product_copies(store, change)
    for opportunity_id in opportunities:
        opportunity = _record(store, "Opportunity", opportunity_id)
        if opportunity is None:
            continue
        lines = _lines_of(store, opportunity_id)
        values: dict[str, Any] = {"HasOpportunityLineItem": bool(lines)}
        # An emulator choice: with no lines left, Amount is 0 (the sum of no lines).
        values["Amount"] = _money(sum(line["TotalPrice"] or 0.0 for line in lines))
        first = _record(store, "PricebookEntry", lines[0]["PricebookEntryId"]) if lines else None
        if first is not None and opportunity["Pricebook2Id"] is None:
            values["Pricebook2Id"] = first["Pricebook2Id"]  # the first line sets the opportunity's book
        if any(opportunity.get(k) != v for k, v in values.items()):
            tx.internal_update(store.object("Opportunity"), opportunity_id, values)


def _mirror_standard_price(tx: Transaction, change: Change) -> None:
    old, new = change.old or {}, change.new or {}
    if new.get("Pricebook2Id") != STANDARD_BOOK_ID or old.get("UnitPrice") == new.get("UnitPrice"):
        return
    for entry in _live(tx.store, "PricebookEntry"):
        if (
            entry["UseStandardPrice"]
            and entry["Product2Id"] == new["Product2Id"]
            and entry.get("CurrencyIsoCode") == new.get("CurrencyIsoCode")
            and entry["UnitPrice"] != new["UnitPrice"]
        ):
            tx.internal_update(tx.store.object("PricebookEntry"), entry["Id"], {"UnitPrice": new["UnitPrice"]})


def _refresh_product_copies(store: Store, change: Change) -> None:
    """PricebookEntry.Name/ProductCode and OpportunityLineItem.ProductCode follow the product (no event)."""
    product = change.new or {}
    for entry in _live(store, "PricebookEntry"):
        if entry["Product2Id"] == product.get("Id"):
            entry["Name"] = product.get("Name")
            entry["ProductCode"] = product.get("ProductCode")
    for line in _live(store, "OpportunityLineItem"):
        if line["Product2Id"] == product.get("Id"):
            line["ProductCode"] = product.get("ProductCode")
