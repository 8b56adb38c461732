"""The Account link: after each batch, the synced accounts' LogiSense account id, sync status and reason, and the
time of the last successful sync, on the Salesforce Account (shared/salesforce_view.py LINK_FIELDS).

One sObject Collections update per 200 accounts (allOrNone false: an account deleted meanwhile fails alone),
through the syncer's client, so every write carries the client tag and the listener drops its echo; the fields
are never trigger fields either, so even an untagged write is no change to sync. A synced account gets all four
fields; a failed one its status and reason only (its LogiSense id and last sync stay what they were). An account
deleted in Salesforce gets nothing. The link never fails a batch: a refused or failed write is logged and
counted (`sfls_syncer_account_link_total`), and the next sync of the account writes it again.

`sync.account_link` turns it off; an org without the fields (the schema not deployed) gets a warning at start-up
and no writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Counter

from shared.errors import SflsError
from shared.salesforce import SalesforceRest
from shared.salesforce_errors import result_error
from shared.salesforce_view import (
    ACCOUNT_LAST_SYNC,
    ACCOUNT_LOGISENSE_ID,
    ACCOUNT_SYNC_REASON,
    ACCOUNT_SYNC_STATUS,
    FAILED,
    LINK_FIELDS,
    REASON_LENGTH,
    SYNCED,
)

log = structlog.get_logger(__name__)
LINKS = Counter(
    "sfls_syncer_account_link_total", "Account link writes by outcome (written, refused, failed).", ["outcome"]
)


def link_records(synced: Mapping[str, int], failed: Mapping[str, str], now: datetime) -> list[dict[str, Any]]:
    """The Account updates: Salesforce id -> LogiSense id for the synced, -> reason for the failed."""
    stamp = now.isoformat(timespec="milliseconds")
    records = [
        {
            "attributes": {"type": "Account"},
            "Id": account_id,
            ACCOUNT_LOGISENSE_ID: str(logisense_id),
            ACCOUNT_SYNC_STATUS: SYNCED,
            ACCOUNT_SYNC_REASON: None,
            ACCOUNT_LAST_SYNC: stamp,
        }
        for account_id, logisense_id in synced.items()
    ]
    records += [
        {
            "attributes": {"type": "Account"},
            "Id": account_id,
            ACCOUNT_SYNC_STATUS: FAILED,
            ACCOUNT_SYNC_REASON: reason[:REASON_LENGTH],
        }
        for account_id, reason in failed.items()
    ]
    return records


def missing_link_fields(account_describe: dict[str, Any]) -> list[str]:
    """The link fields the Account describe lacks (none: the link can be written)."""
    names = {str(f.get("name", "")).lower() for f in account_describe.get("fields", [])}
    return [name for name in LINK_FIELDS if name.lower() not in names]


class AccountLink:
    """Writes the link of a batch's accounts (see the module docstring)."""

    def __init__(self, rest: SalesforceRest) -> None:
        self._rest = rest

    async def write(self, synced: Mapping[str, int], failed: Mapping[str, str]) -> int:
        """Write the link; the number of accounts Salesforce took."""
        records = link_records(synced, failed, datetime.now(UTC))
        if not records:
            return 0
        try:
            results = await asyncio.to_thread(self._rest.update_collection, records, all_or_none=False)
        except SflsError as exc:
            LINKS.labels(outcome="failed").inc(len(records))
            log.warning("account_link_failed", accounts=len(records), error=str(exc))
            return 0
        written = 0
        for record, result in zip(records, results, strict=False):
            if result.get("success"):
                written += 1
                continue
            code, message, _fields = result_error(result)
            log.warning("account_link_refused", account_id=record["Id"], code=code, message=message)
        LINKS.labels(outcome="written").inc(written)
        LINKS.labels(outcome="refused").inc(len(records) - written)
        return written
