"""Landing one batch of the Requests tab writer: request records, then dead letters as their error logs.

Per batch (services/requests_tab/app.py collects it; the loop commits it only after this returns):
1. The request records of the batch that `requests_tab.mode` wants (services/requests_tab/records.py), the
   last of each request id, upserted by `Request_Id__c` in sObject Collections of 200 (allOrNone false). A
   record whose Account lookup Salesforce refuses (the Account was deleted) is upserted again without it.
2. Every dead letter of the batch as an error log, upserted by `Dead_Letter_Id__c` (its topic:partition:offset)
   under its request (`Request__r` by `Request_Id__c`). Those whose request is not in Salesforce get a request
   made from the dead letter, created (never upserted, so a real record is never overwritten), and are upserted
   again.

Upserts by external id make a batch that is redone (a crash before the commit, a rebalance) land the same
records again: nothing is duplicated. A call that fails as a whole (Salesforce unreachable) fails the batch,
which the loop retries. A record Salesforce refuses for its content is counted and logged, never retried: it
would be refused again, and holding the batch back for it would hold back every other request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError as PydanticValidationError

from services.requests_tab import metrics
from services.requests_tab.records import (
    Mode,
    error_fields,
    latest,
    letter_id,
    letter_request,
    lookup_refused,
    parent_missing,
    request_fields,
    wanted,
)
from services.syncer.batch import Received
from services.syncer.hooks import BatchResult
from shared.deadletter import DeadLetter, dead_letter_of
from shared.events import RequestRecord
from shared.salesforce import SalesforceRest
from shared.salesforce_errors import result_error
from shared.salesforce_view import ERROR_ID, ERROR_OBJECT, REQUEST_ID, REQUEST_OBJECT

log = structlog.get_logger(__name__)


@dataclass
class RequestsBatch:
    """The records one landing answers for: request records and dead letters, in the order read."""

    records: list[Received]

    @property
    def size(self) -> int:
        return len(self.records)

    def summary(self) -> dict[str, int]:
        return {"records": self.size}


@dataclass
class Split:
    requests: list[RequestRecord] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    malformed: int = 0


def split(batch: RequestsBatch, requests_topic: str) -> Split:
    """The batch's request records and dead letters; a request record that does not parse is counted."""
    out = Split()
    now = datetime.now(UTC)
    for record in batch.records:
        if record.topic == requests_topic:
            try:
                out.requests.append(RequestRecord.from_bytes(record.value or b""))
            except PydanticValidationError:
                out.malformed += 1
        else:
            out.letters.append(
                dead_letter_of(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=record.value,
                    headers=record.original_headers,
                    timestamp=now,
                )
            )
    return out


class Lander:
    """Lands a batch (see the module docstring); `None` as Salesforce with mode `off`."""

    def __init__(
        self, rest: SalesforceRest | None, *, mode: Mode, requests_topic: str, syncer_dead_letters: str
    ) -> None:
        self._rest = rest
        self._mode = mode
        self._requests_topic = requests_topic
        self._syncer_dead_letters = syncer_dead_letters

    async def __call__(self, batch: RequestsBatch) -> BatchResult:
        return await asyncio.to_thread(self.land, batch)

    def land(self, batch: RequestsBatch) -> BatchResult:
        started = time.monotonic()
        parts = split(batch, self._requests_topic)
        if parts.malformed:
            metrics.RECORDS.labels(object=REQUEST_OBJECT, outcome="malformed").inc(parts.malformed)
            log.warning("request_records_malformed", records=parts.malformed)
        chosen = latest([r for r in parts.requests if wanted(r, self._mode)])
        skipped = len(parts.requests) - len(chosen)
        letters = parts.letters if self._mode != "off" else []
        metrics.RECORDS.labels(object=REQUEST_OBJECT, outcome="skipped").inc(skipped)
        metrics.RECORDS.labels(object=ERROR_OBJECT, outcome="skipped").inc(len(parts.letters) - len(letters))
        if self._rest is not None and (chosen or letters):
            self._requests([request_fields(r) for r in chosen])
            self._errors(letters)
            metrics.LANDING_SECONDS.observe(time.monotonic() - started)
        metrics.LAST_LANDING.set_to_current_time()
        return BatchResult(stats={"requests": len(chosen), "error_logs": len(letters), "skipped": skipped})

    @property
    def rest(self) -> SalesforceRest:
        assert self._rest is not None  # only called with something to land, which `off` never has
        return self._rest

    def _upsert(self, sobject: str, external: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Upsert; count created and updated; return the refused records' (record, result) pairs."""
        results = self.rest.upsert_collection(sobject, external, records) if records else []
        refused: list[dict[str, Any]] = []
        for record, result in zip(records, results, strict=False):
            if result.get("success"):
                metrics.RECORDS.labels(object=sobject, outcome="created" if result.get("created") else "updated").inc()
            else:
                refused.append({"record": record, "result": result})
        return refused

    def _requests(self, records: list[dict[str, Any]]) -> None:
        refused = self._without_lookup(records, lambda part: self._upsert(REQUEST_OBJECT, REQUEST_ID, part))
        self._rejected(REQUEST_OBJECT, refused)

    @staticmethod
    def _without_lookup(
        records: list[dict[str, Any]], write: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Write; those refused for their Account lookup (the Account is gone) again without it; what stays
        refused, as {"record", "result"} pairs."""
        refused = write(records)
        retry = [{**r["record"], "Account__c": None} for r in refused if lookup_refused(r["result"])]
        if not retry:
            return refused
        log.info("request_account_lookup_dropped", requests=len(retry), why="the Account is not in Salesforce")
        return [r for r in refused if not lookup_refused(r["result"])] + write(retry)

    def _errors(self, letters: list[DeadLetter]) -> None:
        by_id = {letter_id(letter): letter for letter in letters}
        own = [letter for letter in by_id.values() if not letter.request_id]
        if own:  # the listener's and the importer's dead letters name no request: each gets its own
            self._create_parents(own)
        records = [error_fields(letter, self._syncer_dead_letters) for letter in by_id.values()]
        refused = self._upsert(ERROR_OBJECT, ERROR_ID, records)
        orphans = [r for r in refused if parent_missing(r["result"])]
        if orphans:
            letters_of = [by_id[str(r["record"][ERROR_ID])] for r in orphans]
            self._create_parents(letters_of)
            refused = [r for r in refused if not parent_missing(r["result"])]
            refused += self._upsert(ERROR_OBJECT, ERROR_ID, [r["record"] for r in orphans])
        self._rejected(ERROR_OBJECT, refused)

    def _create_parents(self, letters: Iterable[DeadLetter]) -> None:
        parents = list({p[REQUEST_ID]: p for p in map(letter_request, letters)}.values())
        created = 0

        def create(part: list[dict[str, Any]]) -> list[dict[str, Any]]:
            nonlocal created
            results = self.rest.create_collection(part) if part else []
            created += sum(1 for r in results if r.get("success"))
            return [{"record": p, "result": r} for p, r in zip(part, results, strict=False) if not r.get("success")]

        refused = self._without_lookup(parents, create)
        metrics.RECORDS.labels(object=REQUEST_OBJECT, outcome="created_from_dead_letter").inc(created)
        for item in refused:
            code, message, _ = result_error(item["result"])
            if code != "DUPLICATE_VALUE":  # a duplicate: the request landed meanwhile, which is all that is needed
                log.warning(
                    "dead_letter_request_refused", request_id=item["record"][REQUEST_ID], code=code, message=message
                )

    def _rejected(self, sobject: str, refused: list[dict[str, Any]]) -> None:
        for item in refused:
            code, message, fields = result_error(item["result"])
            metrics.RECORDS.labels(object=sobject, outcome="rejected").inc()
            metrics.REJECTED.labels(object=sobject, code=code or "unknown").inc()
            key = REQUEST_ID if sobject == REQUEST_OBJECT else ERROR_ID
            record_id = item["record"].get(key)
            log.error(
                "requests_tab_record_refused", object=sobject, id=record_id, code=code, message=message, fields=fields
            )
