"""Why a push is refused: the one list of reasons, each with the fix a person makes.

A refusal writes nothing to LogiSense; the command exits 1 with one line (`<reason>: <message>`), and,
unless it is a dry run, the opportunity gets `LogiSense_Push_Status__c = Failed` and the line as its
reason (or `Withdrawn` when an opportunity already pushed is no longer won: nothing is deleted).
"""

from __future__ import annotations

from enum import StrEnum

from shared.errors import PermanentError


class Reason(StrEnum):
    NOT_WON = "not_won"
    NOT_LOGISENSE_PRICE_BOOK = "not_logisense_price_book"
    NO_LINES = "no_lines"
    ACCOUNT_NOT_SYNCED = "account_not_synced"
    CURRENCY_MISMATCH = "currency_mismatch"
    PRODUCT_NOT_FROM_LOGISENSE = "product_not_from_logisense"
    PACKAGE_NOT_ACTIVE = "package_not_active"
    PACKAGE_CURRENCY_MISSING = "package_currency_missing"
    PRODUCT_CODE_CONFLICT = "product_code_conflict"
    LOGISENSE_REJECTED = "logisense_rejected"


# What to do about each reason, appended to the message.
FIXES: dict[Reason, str] = {
    Reason.NOT_WON: "move the opportunity to a won stage first",
    Reason.NOT_LOGISENSE_PRICE_BOOK: "use the LogiSense price book (importer.price_book_name) on the opportunity",
    Reason.NO_LINES: "add products from the LogiSense price book to the opportunity",
    Reason.ACCOUNT_NOT_SYNCED: "sync the account to LogiSense first (sfls backfill --where \"Id = '...'\")",
    Reason.CURRENCY_MISMATCH: "use the LogiSense account's currency on the opportunity",
    Reason.PRODUCT_NOT_FROM_LOGISENSE: "use products imported from LogiSense (sfls import catalogue)",
    Reason.PACKAGE_NOT_ACTIVE: "activate the package in LogiSense or remove the line",
    Reason.PACKAGE_CURRENCY_MISSING: "add the account's currency to the package in LogiSense or remove the line",
    Reason.PRODUCT_CODE_CONFLICT: "clear Account_Product_Code_Name__c on the line so a free name is chosen",
    Reason.LOGISENSE_REJECTED: "fix what LogiSense names, then push again",
}


class PushRefusedError(PermanentError):
    """The opportunity cannot be pushed; `reason` is one of Reason, the message says what and how to fix it."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}; {FIXES[reason]}")
        self.reason = reason
