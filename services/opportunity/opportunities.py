"""The Salesforce side of a push: the opportunity, its lines and the LogiSense price book read, the results written.

Two queries (parent fields, no child subquery): the opportunity, then its lines with their product and
price book entry. Every write goes through SalesforceRest, whose session tags each call with
`Sforce-Call-Options: client=<salesforce.client_tag>`, so the listener can tell these writes from a person's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simple_salesforce.format import format_soql

from services.opportunity.refusals import PushRefusedError, Reason
from shared.errors import ConfigError, PermanentError
from shared.salesforce import SalesforceRest
from shared.settings import Settings

_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
WRITE_BACK = (
    "LogiSense_Price_Plan_Id__c",
    "LogiSense_Push_Status__c",
    "LogiSense_Pushed_At__c",
    "LogiSense_Push_Reason__c",
    "LogiSense_Push_Hash__c",
)
OPPORTUNITY_FIELDS = ("Id", "Name", "AccountId", "IsWon", "IsClosed", "StageName", "CloseDate", "Pricebook2Id")
LINE_FIELDS = (
    "Id",
    "Quantity",
    "UnitPrice",
    "ListPrice",
    "PricebookEntryId",
    "PricebookEntry.Pricebook2Id",
    "Product2Id",
    "Product2.Name",
    "Product2.ProductCode",
    "Product2.LogiSense_Id__c",
    "Account_Product_Code_Name__c",
    "LogiSense_Product_Code_Id__c",
)


@dataclass(frozen=True)
class Line:
    """One opportunity product, as the push prices it."""

    id: str
    quantity: float
    unit_price: float
    list_price: float
    book_id: str | None
    product_name: str
    product_code: str
    frequency_id: int | None  # Product2.LogiSense_Id__c: the LogiSense package frequency
    code_name: str | None  # Account_Product_Code_Name__c
    code_id: str | None  # LogiSense_Product_Code_Id__c

    @property
    def factor(self) -> float:
        """Sales price over list price: what the catalogue amounts are multiplied by (1 with no list price)."""
        return self.unit_price / self.list_price if self.list_price else 1.0


@dataclass(frozen=True)
class Opportunity:
    id: str
    name: str
    account_id: str
    is_won: bool
    stage: str
    close_date: str | None
    book_id: str | None
    currency: str | None  # CurrencyIsoCode, or the org currency in a single-currency org (None: not known)
    written: dict[str, Any]  # the write-back fields as they are now
    lines: tuple[Line, ...]


def check_id(value: str) -> str:
    if not _ID.match(value):
        raise PermanentError(f"{value!r} is not a Salesforce Opportunity Id (15 or 18 letters and digits)")
    return value


def price_book_name(settings: Settings) -> str:
    """The Pricebook2 the importer lands LogiSense's prices in."""
    return settings.importer.price_book_name


def org_currency(settings: Settings) -> str | None:
    """A single-currency org's currency (importer.org_currency); None where the importer does not define one."""
    value = getattr(settings.importer, "org_currency", None)
    return str(value) if value else None


def _frequency_id(value: Any) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _line(row: dict[str, Any]) -> Line:
    product = row.get("Product2") or {}
    entry = row.get("PricebookEntry") or {}
    return Line(
        id=str(row["Id"]),
        quantity=float(row.get("Quantity") or 0),
        unit_price=float(row.get("UnitPrice") or 0),
        list_price=float(row.get("ListPrice") or 0),
        book_id=entry.get("Pricebook2Id"),
        product_name=str(product.get("Name") or ""),
        product_code=str(product.get("ProductCode") or ""),
        frequency_id=_frequency_id(product.get("LogiSense_Id__c")),
        code_name=row.get("Account_Product_Code_Name__c") or None,
        code_id=row.get("LogiSense_Product_Code_Id__c") or None,
    )


def read_opportunity(rest: SalesforceRest, opportunity_id: str, single_currency: str | None = None) -> Opportunity:
    """The opportunity and its lines (ordered by Id, so product code numbers follow the order they were added).

    `single_currency` is the opportunity's currency when the org has no CurrencyIsoCode (single-currency).
    """
    check_id(opportunity_id)
    fields = {f["name"] for f in rest.describe("Opportunity")["fields"]}
    missing = [name for name in WRITE_BACK if name not in fields]
    if missing:
        raise ConfigError(
            f"Opportunity has no field {', '.join(missing)}: deploy them (see the README's quote to cash)"
        )
    currency = ["CurrencyIsoCode"] if "CurrencyIsoCode" in fields else []
    names = ", ".join((*OPPORTUNITY_FIELDS, *currency, *WRITE_BACK))
    rows = rest.query_all(format_soql(f"SELECT {names} FROM Opportunity WHERE Id = {{}}", opportunity_id))  # noqa: S608
    if not rows:
        raise PermanentError(f"no Opportunity {opportunity_id} in Salesforce: check the Id")
    row = rows[0]
    soql = f"SELECT {', '.join(LINE_FIELDS)} FROM OpportunityLineItem WHERE OpportunityId = {{}}"  # noqa: S608
    lines = sorted((_line(r) for r in rest.query_all(format_soql(soql, str(row["Id"])))), key=lambda line: line.id)
    return Opportunity(
        id=str(row["Id"]),
        name=str(row.get("Name") or ""),
        account_id=str(row.get("AccountId") or ""),
        is_won=bool(row.get("IsWon")),
        stage=str(row.get("StageName") or ""),
        close_date=row.get("CloseDate"),
        book_id=row.get("Pricebook2Id"),
        currency=row.get("CurrencyIsoCode") if currency else single_currency,
        written={name: row.get(name) for name in WRITE_BACK},
        lines=tuple(lines),
    )


def find_price_book(rest: SalesforceRest, name: str) -> str | None:
    soql = format_soql("SELECT Id FROM Pricebook2 WHERE Name = {} AND IsStandard = false", name)
    rows = rest.query_all(soql)
    return str(rows[0]["Id"]) if rows else None


def check_qualifies(opportunity: Opportunity, book_id: str | None, book_name: str) -> None:
    """Won and on the LogiSense price book, or a refusal."""
    if not opportunity.is_won:
        raise PushRefusedError(Reason.NOT_WON, f"{opportunity.id} is at stage {opportunity.stage!r}, not a won stage")
    if book_id is None or opportunity.book_id != book_id:
        raise PushRefusedError(
            Reason.NOT_LOGISENSE_PRICE_BOOK, f"{opportunity.id} is not on the price book {book_name!r}"
        )
    for line in opportunity.lines:
        if line.frequency_id is None or line.book_id != book_id:
            raise PushRefusedError(
                Reason.PRODUCT_NOT_FROM_LOGISENSE,
                f"line {line.id} ({line.product_name or line.product_code}) "
                f"is not a LogiSense product of {book_name!r}",
            )


def write_code_name(rest: SalesforceRest, line_id: str, name: str) -> None:
    rest.update("OpportunityLineItem", line_id, {"Account_Product_Code_Name__c": name})


def write_code_id(rest: SalesforceRest, line_id: str, code_id: int) -> None:
    rest.update("OpportunityLineItem", line_id, {"LogiSense_Product_Code_Id__c": str(code_id)})


def write_pushed(rest: SalesforceRest, opportunity_id: str, plan_id: int, push_hash: str) -> None:
    fields = {
        "LogiSense_Price_Plan_Id__c": str(plan_id),
        "LogiSense_Push_Status__c": "Pushed",
        "LogiSense_Pushed_At__c": datetime.now(UTC).isoformat(timespec="seconds"),
        "LogiSense_Push_Hash__c": push_hash,
        "LogiSense_Push_Reason__c": None,
    }
    rest.update("Opportunity", opportunity_id, fields)


def write_refused(rest: SalesforceRest, opportunity: Opportunity, error: PushRefusedError) -> None:
    """Failed with the reason; Withdrawn when it was pushed and is no longer won (nothing in LogiSense is deleted)."""
    pushed = bool(opportunity.written.get("LogiSense_Price_Plan_Id__c"))
    status = "Withdrawn" if pushed and error.reason is Reason.NOT_WON else "Failed"
    rest.update(
        "Opportunity", opportunity.id, {"LogiSense_Push_Status__c": status, "LogiSense_Push_Reason__c": str(error)}
    )
