"""The Salesforce side of a push: opportunities, their lines and the LogiSense price book read, the results written.

Two queries per chunk of opportunities (parent fields, no child subquery): the opportunities by
`Id IN (...)`, then their lines by `OpportunityId IN (...)` with their product and price book entry, so
the syncer reads a batch's opportunities in as many calls as one. Writes go through sObject Collections
(one call for a push's line names, one for its result on the opportunity and the lines), tagged like
every SalesforceRest call with `Sforce-Call-Options: client=<salesforce.client_tag>`, so the listener can
tell these writes from a person's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simple_salesforce.format import format_soql

from services.opportunity.refusals import PushRefusedError, Reason
from shared.errors import ConfigError, PermanentError
from shared.mapping import CURRENCY_FIELD, org_currencies
from shared.salesforce import SalesforceRest
from shared.settings import Settings

_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
PUSHED_CODES = "LogiSense_Product_Codes__c"  # the LogiSense product code ids the last push left, comma-separated
WRITE_BACK = (
    "LogiSense_Price_Plan_Id__c",
    "LogiSense_Push_Status__c",
    "LogiSense_Pushed_At__c",
    "LogiSense_Push_Reason__c",
    "LogiSense_Push_Hash__c",
    PUSHED_CODES,
)
LINE_WRITE_BACK = ("Account_Product_Code_Name__c", "LogiSense_Product_Code_Id__c")
CHUNK = 200  # opportunities per query (keeps the URI short)
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

    @property
    def pushed_codes(self) -> tuple[int, ...]:
        """The product code ids the last push left (`LogiSense_Product_Codes__c`)."""
        text = str(self.written.get(PUSHED_CODES) or "")
        return tuple(int(part) for part in re.split(r"[,\s]+", text) if part.isdigit())

    @property
    def status(self) -> str:
        return str(self.written.get("LogiSense_Push_Status__c") or "")


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


def check_fields(rest: SalesforceRest) -> list[str]:
    """The Opportunity fields to select; a ConfigError naming the write-back fields the org lacks."""
    opportunity = {f["name"] for f in rest.describe("Opportunity")["fields"]}
    line = {f["name"] for f in rest.describe("OpportunityLineItem")["fields"]}
    missing = [f"Opportunity.{name}" for name in WRITE_BACK if name not in opportunity]
    missing += [f"OpportunityLineItem.{name}" for name in LINE_WRITE_BACK if name not in line]
    if missing:
        raise ConfigError(
            f"Salesforce has no field {', '.join(missing)}: deploy the fields `sfls import schema` lists "
            "(see the README's quote to cash)"
        )
    currency = [CURRENCY_FIELD] if org_currencies(rest.describe("Opportunity")) is not None else []
    return [*OPPORTUNITY_FIELDS, *currency, *WRITE_BACK]


def read_opportunities(
    rest: SalesforceRest, opportunity_ids: Sequence[str], single_currency: str | None = None
) -> dict[str, Opportunity]:
    """The opportunities that exist (by 15-character id) with their lines, ordered by Id, so product code
    numbers follow the order lines were added. `single_currency` is their currency when the org has no
    CurrencyIsoCode (single-currency)."""
    ids = list(dict.fromkeys(check_id(i) for i in opportunity_ids))
    if not ids:
        return {}
    fields = check_fields(rest)
    found: dict[str, Opportunity] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows = list(rest.query_by_ids("Opportunity", fields, chunk, chunk_size=CHUNK))
        if not rows:
            continue
        soql = f"SELECT {', '.join(LINE_FIELDS)}, OpportunityId FROM OpportunityLineItem WHERE OpportunityId IN {{}}"  # noqa: S608
        lines: dict[str, list[Line]] = {}
        for row in rest.query_all(format_soql(soql, [str(r["Id"]) for r in rows])):
            lines.setdefault(str(row["OpportunityId"])[:15], []).append(_line(row))
        for row in rows:
            opportunity_id = str(row["Id"])
            found[opportunity_id[:15]] = Opportunity(
                id=opportunity_id,
                name=str(row.get("Name") or ""),
                account_id=str(row.get("AccountId") or ""),
                is_won=bool(row.get("IsWon")),
                stage=str(row.get("StageName") or ""),
                close_date=row.get("CloseDate"),
                book_id=row.get("Pricebook2Id"),
                currency=row.get(CURRENCY_FIELD) if CURRENCY_FIELD in fields else single_currency,
                written={name: row.get(name) for name in WRITE_BACK},
                lines=tuple(sorted(lines.get(opportunity_id[:15], []), key=lambda line: line.id)),
            )
    return found


def read_opportunity(rest: SalesforceRest, opportunity_id: str, single_currency: str | None = None) -> Opportunity:
    """One opportunity and its lines (read_opportunities); a PermanentError when it does not exist."""
    found = read_opportunities(rest, [opportunity_id], single_currency).get(opportunity_id[:15])
    if found is None:
        raise PermanentError(f"no Opportunity {opportunity_id} in Salesforce: check the Id")
    return found


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
    if not opportunity.lines:
        raise PushRefusedError(Reason.NO_LINES, f"{opportunity.id} has no products")
    for line in opportunity.lines:
        if line.frequency_id is None or line.book_id != book_id:
            raise PushRefusedError(
                Reason.PRODUCT_NOT_FROM_LOGISENSE,
                f"line {line.id} ({line.product_name or line.product_code}) "
                f"is not a LogiSense product of {book_name!r}",
            )


def _record(sobject: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"attributes": {"type": sobject}, "Id": record_id, **fields}


def write_code_names(rest: SalesforceRest, names: dict[str, str]) -> None:
    """Line id -> the product code name chosen for it, in one call (before any code is created)."""
    if names:
        rest.update_collection(
            _record("OpportunityLineItem", line_id, {"Account_Product_Code_Name__c": name})
            for line_id, name in names.items()
        )


def write_pushed(
    rest: SalesforceRest,
    opportunity_id: str,
    plan_id: int,
    push_hash: str,
    *,
    codes: dict[str, int],
    kept: Sequence[int] = (),
    reason: str | None = None,
) -> None:
    """The push's result in one call: the lines' code ids (line id -> code id), and on the opportunity the plan,
    Pushed, the time, the hash and the codes it leaves (`kept`: removed lines' codes LogiSense still uses)."""
    left = sorted({*codes.values(), *kept})
    fields = {
        "LogiSense_Price_Plan_Id__c": str(plan_id),
        "LogiSense_Push_Status__c": "Pushed",
        "LogiSense_Pushed_At__c": datetime.now(UTC).isoformat(timespec="seconds"),
        "LogiSense_Push_Hash__c": push_hash,
        "LogiSense_Push_Reason__c": reason,
        PUSHED_CODES: ",".join(map(str, left)) or None,
    }
    records = [
        _record("OpportunityLineItem", line, {"LogiSense_Product_Code_Id__c": str(c)}) for line, c in codes.items()
    ]
    rest.update_collection([*records, _record("Opportunity", opportunity_id, fields)])


def write_status(rest: SalesforceRest, opportunity_id: str, status: str | None, reason: str | None) -> None:
    rest.update("Opportunity", opportunity_id, {"LogiSense_Push_Status__c": status, "LogiSense_Push_Reason__c": reason})


def refused_status(opportunity: Opportunity, error: PushRefusedError) -> str:
    """Failed; Withdrawn when it was pushed and is no longer won (nothing in LogiSense is deleted)."""
    pushed = bool(opportunity.written.get("LogiSense_Price_Plan_Id__c"))
    return "Withdrawn" if pushed and error.reason is Reason.NOT_WON else "Failed"


def write_refused(rest: SalesforceRest, opportunity: Opportunity, error: PushRefusedError) -> None:
    write_status(rest, opportunity.id, refused_status(opportunity, error), str(error))


def write_unpushed(
    rest: SalesforceRest, opportunity: Opportunity, removed: Sequence[int], kept: Sequence[int], reason: str
) -> None:
    """After `unpush`: lines whose code was removed lose it, the opportunity is Withdrawn and keeps only `kept`."""
    gone = {str(code) for code in removed}
    records = [
        _record("OpportunityLineItem", line.id, dict.fromkeys(LINE_WRITE_BACK))
        for line in opportunity.lines
        if line.code_id in gone
    ]
    fields = {
        "LogiSense_Push_Status__c": "Withdrawn",
        "LogiSense_Push_Reason__c": reason,
        "LogiSense_Push_Hash__c": None,
        PUSHED_CODES: ",".join(map(str, sorted(kept))) or None,
    }
    if not kept:
        fields["LogiSense_Price_Plan_Id__c"] = None
    rest.update_collection([*records, _record("Opportunity", opportunity.id, fields)])
