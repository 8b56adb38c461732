"""The LogiSense Price Book in Salesforce, landed by `sfls import catalogue` after the catalogue's entities.

Two entities of the run summary, metrics and request log:
- `price_book`: one custom Pricebook2 named `importer.price_book_name`, IsActive; found by Name and
  IsStandard = false, created if missing (re-activated if an admin switched it off).
- `price_book_entry`: per package frequency (its Product2, by LogiSense_Id__c) and package currency
  (ISO code from LogiSense's Currency), a standard-book entry keyed `std:<pfId>:<ISO>` and a custom-book
  entry keyed `<pfId>:<ISO>` in the External ID `LogiSense_Key__c`. Every standard entry lands before
  any custom one (Salesforce wants the standard price first; a rejected standard entry makes its custom
  twin fail with STANDARD_PRICE_NOT_DEFINED, and both are dead-lettered with Salesforce's reason).

Prices and state: `UnitPrice` = the sum of the frequency's pricing rules with chargeType "recurring"
in that currency (one-time charges stay on the pricing-rule records), 0 without any; UseStandardPrice
false; IsActive unless the frequency is inactive or its package inactive, expired or not yet started.
An entry under one of our keys that the catalogue no longer has (currency or frequency removed) is set
IsActive = false, never deleted (opportunity lines may use it). A key-less entry an admin made for the
same book, product and currency is adopted: our key is stamped on it (an upsert by Id), then it lands
like the others, so nothing is duplicated.

Currencies: a multi-currency org (describe shows CurrencyIsoCode on PricebookEntry) gets the entries
of every currency its CurrencyIsoCode picklist offers; a single-currency org only those of
`importer.org_currency` (such an org has no field saying its currency). The others are counted
`skipped` in the summary and not sent.

Landing is land.py's Lander keyed by LogiSense_Key__c: the hash in LogiSense_Hash__c skips unchanged
entries (a second identical run writes nothing), composite calls below `importer.bulk_threshold` and
Bulk API 2.0 above it. The body of an existing entry leaves out Pricebook2Id, Product2Id and
CurrencyIsoCode, which Salesforce does not let an update set.

Memory: the catalogue's package states, package currencies and per-(frequency, currency) price sums,
the Product2 ids and the entries of both books are held for the run (some hundred bytes per entry).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any, Protocol

import structlog

from services.importer.entities import PRICE_BOOK_NAMES
from services.importer.fetch import LogisenseReader
from services.importer.land import Landed, Lander, Rejection, SalesforceWriter, describe_errors, soql_in
from services.importer.model import ImportEntity
from services.importer.transform import Key, Prepared, content_hash
from shared.errors import ConfigError, SflsError
from shared.logisense_wire import package_not_on_sale
from shared.mapping import CURRENCY_FIELD, org_currencies
from shared.settings import Settings

log = structlog.get_logger(__name__)

KEY_FIELD = "LogiSense_Key__c"
IMMUTABLE = ("Pricebook2Id", "Product2Id", CURRENCY_FIELD)  # set on create, refused on update
BOOK = ImportEntity(PRICE_BOOK_NAMES[0], "catalogue", "", "Pricebook2", (), label="Price Book")
ENTRY = ImportEntity(PRICE_BOOK_NAMES[1], "catalogue", "", "PricebookEntry", (), label="Price Book Entry")


class PriceBookWriter(SalesforceWriter, Protocol):
    """The part of shared.salesforce.SalesforceRest the price book needs besides the lander's."""

    def describe(self, sobject: str) -> dict[str, Any]: ...

    def create(self, sobject: str, fields: dict[str, Any]) -> str: ...

    def update(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Entry:
    """One (package frequency, currency) of the catalogue: its list price and whether it is on sale."""

    frequency: int
    currency: str  # ISO code
    price: float
    active: bool


async def catalogue_entries(client: LogisenseReader, *, page_size: int, now: datetime | None = None) -> list[Entry]:
    """Every (package frequency, package currency) of the catalogue, priced from its recurring pricing rules."""
    now = now or datetime.now(UTC)
    selling = {
        int(p["identity"]): not package_not_on_sale(p, now) async for p in client.paged("Package", page_size=page_size)
    }
    codes = {int(c["identity"]): str(c["code"]) async for c in client.paged("Currency", page_size=page_size)}
    sold: dict[int, dict[int, None]] = defaultdict(dict)  # package -> its currency ids, in LogiSense order
    async for row in client.paged("Package/Currency", page_size=page_size):
        if row.get("packageId") is not None and row.get("currencyId") is not None:
            sold[int(row["packageId"])][int(row["currencyId"])] = None
    prices: dict[tuple[int, int], float] = defaultdict(float)
    async for rule in client.paged("PricingRule", page_size=page_size):
        if rule.get("chargeType") == "recurring" and rule.get("packageFrequencyId") and rule.get("currencyId"):
            prices[int(rule["packageFrequencyId"]), int(rule["currencyId"])] += float(rule.get("amount") or 0)
    entries = []
    async for frequency in client.paged("Package/Frequency", page_size=page_size):
        identity, package = int(frequency["identity"]), int(frequency.get("packageId") or 0)
        active = bool(frequency.get("isActive")) and selling.get(package, False)
        for currency in sold.get(package, {}):
            if currency in codes:
                price = round(prices.get((identity, currency), 0.0), 2)
                entries.append(Entry(identity, codes[currency], price, active))
    return entries


@dataclass
class Plan:
    """What the entries' landing sends: standard-book records, then custom-book records."""

    standard: list[Prepared] = field(default_factory=list)
    custom: list[Prepared] = field(default_factory=list)
    adopt: list[dict[str, Any]] = field(default_factory=list)  # {Id, LogiSense_Key__c} of admin-made entries
    missing: list[Rejection] = field(default_factory=list)  # entries whose Product2 is not in Salesforce
    skipped: dict[str, int] = field(default_factory=dict)  # currency the org lacks -> entries not sent

    @property
    def planned(self) -> int:
        return len(self.standard) + len(self.custom) + len(self.missing)


class EntryLander(Lander):
    """The Lander for price book entries: an existing entry's body leaves out what cannot be updated."""

    def with_lookups(self, changed: Sequence[Prepared], outcome: Landed) -> dict[Key, dict[str, Any]]:
        records = super().with_lookups(changed, outcome)
        for identity, record in records.items():
            if identity not in self._new:
                for name in IMMUTABLE:
                    record.pop(name, None)
        return records

    def _bulk_records(self) -> Iterator[dict[str, Any]]:
        # The first record's fields are the CSV header: creates (every field) first, then full updates,
        # then deactivations (key, IsActive, hash); a later row leaves a missing column as it is.
        def rank(record: dict[str, Any]) -> int:
            return 0 if "Product2Id" in record else 1 if "UnitPrice" in record else 2

        return chain.from_iterable((r for _, r in self._waiting if rank(r) == n) for n in range(3))


class PriceBook:
    """Finds or creates the book, plans its entries against what Salesforce holds, and lands them."""

    def __init__(self, settings: Settings, salesforce: PriceBookWriter, *, dry_run: bool = False) -> None:
        self._settings = settings
        self._cfg = settings.importer
        self._sf = salesforce
        self._dry_run = dry_run
        self._book_id: str | None = None
        self._book_landed: Landed | None = None

    # ---- the book ----------------------------------------------------------------------------
    @property
    def book_id(self) -> str | None:
        """The custom book's Id once `land_book` found (or created) it; None before, or in a dry run that found none."""
        return self._book_id

    def land_book(self) -> Landed:
        """Find the custom book by Name and IsStandard = false; create it if missing, activate it if inactive."""
        if self._book_landed is not None:
            return Landed(unchanged=1)
        name = self._cfg.price_book_name
        where = f"Name = {soql_in([name])} AND IsStandard = false"
        rows = list(self._sf.query_all_iter(f"SELECT Id, IsActive FROM Pricebook2 WHERE {where}"))  # noqa: S608
        landed = Landed()
        if rows:
            self._book_id = str(rows[0]["Id"])
            if rows[0].get("IsActive"):
                landed.unchanged = 1
            else:
                if not self._dry_run:
                    self._sf.update("Pricebook2", self._book_id, {"IsActive": True})
                landed.updated = 1
        else:
            if not self._dry_run:
                self._book_id = self._sf.create("Pricebook2", {"Name": name, "IsActive": True})
            landed.created = 1
        self._book_landed = landed
        return landed

    def _standard_book(self) -> str:
        rows = list(self._sf.query_all_iter("SELECT Id FROM Pricebook2 WHERE IsStandard = true"))
        if not rows:
            raise ConfigError("Salesforce has no standard price book (Pricebook2 with IsStandard = true)")
        return str(rows[0]["Id"])

    def currencies(self) -> tuple[bool, set[str]]:
        """(multi-currency org?, the ISO codes its price book entries may have)."""
        codes = org_currencies(self._sf.describe("PricebookEntry"))
        if codes is None:
            return False, {self._cfg.org_currency}
        return True, set(codes)

    # ---- the entries -------------------------------------------------------------------------
    def plan(self, entries: Iterable[Entry]) -> Plan:
        """The records to land for these catalogue entries, adoptions, and deactivations of vanished keys."""
        ext, hash_field = self._cfg.external_id_field, self._cfg.hash_field
        if self._book_landed is None:
            self.land_book()
        standard, book = self._standard_book(), self._book_id or ""
        multi, allowed = self.currencies()
        products = {
            str(row[ext]): str(row["Id"])
            for row in self._sf.query_all_iter(f"SELECT Id, {ext} FROM Product2 WHERE {ext} != null")  # noqa: S608
        }
        columns = f"Id, Pricebook2Id, Product2Id, IsActive, {KEY_FIELD}" + (f", {CURRENCY_FIELD}" if multi else "")
        books = soql_in([b for b in (standard, book) if b])
        soql = f"SELECT {columns} FROM PricebookEntry WHERE Pricebook2Id IN ({books})"  # noqa: S608
        keyed: dict[str, dict[str, Any]] = {}
        keyless: dict[tuple[str, str, str | None], str] = {}  # (book, product, currency) -> Id of an admin's entry
        for row in self._sf.query_all_iter(soql):
            if row.get(KEY_FIELD):
                keyed[str(row[KEY_FIELD])] = row
            else:
                keyless[str(row["Pricebook2Id"]), str(row["Product2Id"]), row.get(CURRENCY_FIELD)] = str(row["Id"])

        plan = Plan()
        known: set[str] = set()

        def add(target: list[Prepared], key: str, record: dict[str, Any]) -> None:
            record[hash_field] = digest = content_hash("PricebookEntry", record)
            target.append(Prepared(key, record, digest))

        for entry in entries:
            pair = f"{entry.frequency}:{entry.currency}"
            keys = ((f"std:{pair}", standard), (pair, book))
            known.update(key for key, _ in keys)
            if entry.currency not in allowed:
                plan.skipped[entry.currency] = plan.skipped.get(entry.currency, 0) + 2
                continue
            product = products.get(str(entry.frequency))
            for (key, book_id), target in zip(keys, (plan.standard, plan.custom), strict=True):
                record: dict[str, Any] = {
                    KEY_FIELD: key,
                    "Pricebook2Id": book_id,
                    "Product2Id": product,
                    "UnitPrice": entry.price,
                    "UseStandardPrice": False,
                    "IsActive": entry.active,
                    **({CURRENCY_FIELD: entry.currency} if multi else {}),
                }
                if product is None and not self._dry_run:  # a dry run did not land the Product2: it would be there
                    reason = f"Product2Id: package_frequency {entry.frequency} is not in Salesforce (import it first)"
                    plan.missing.append(Rejection(key, record, reason, ""))
                    continue
                adopted = keyless.get((book_id, str(product), entry.currency if multi else None))
                if key not in keyed and adopted is not None:
                    plan.adopt.append({"Id": adopted, KEY_FIELD: key})
                add(target, key, record)
        for key, row in keyed.items():
            if key not in known and row.get("IsActive"):
                add(plan.standard if key.startswith("std:") else plan.custom, key, {KEY_FIELD: key, "IsActive": False})
        return plan

    def adopt(self, records: Sequence[dict[str, Any]]) -> Landed:
        """Stamp our keys on admin-made entries (upsert by Id), so the landing updates them instead of duplicating."""
        outcome = Landed()
        if not records or self._dry_run:
            return outcome
        try:
            results = self._sf.upsert_collection("PricebookEntry", "Id", records, all_or_none=False)
        except SflsError as exc:
            outcome.rejections = [Rejection(r[KEY_FIELD], r, f"adopting the entry failed: {exc}", "") for r in records]
            return outcome
        for record, result in zip(records, results, strict=True):
            if not result.get("success"):
                errors = result.get("errors")
                outcome.rejections.append(Rejection(record[KEY_FIELD], record, describe_errors(errors), str(errors)))
        log.info("price_book_entries_adopted", adopted=len(records) - outcome.failed, failed=outcome.failed)
        return outcome

    def land_entries(self, plan: Plan) -> list[Landed]:
        """Adopt, then land every standard-book record, then every custom-book one (batches of batch_size)."""
        landed = [Landed(rejections=list(plan.missing)), self.adopt(plan.adopt)]
        for records in (plan.standard, plan.custom):
            lander = EntryLander(
                self._sf,
                ENTRY,
                external_id_field=KEY_FIELD,
                hash_field=self._cfg.hash_field,
                dry_run=self._dry_run,
                bulk_threshold=self._cfg.bulk_threshold,
            )
            size = self._cfg.batch_size
            landed.extend(lander.land(records[i : i + size]) for i in range(0, len(records), size))
            landed.append(lander.finish())
        return landed
