"""The Bulk API 2.0 path of shared.salesforce: one ingest job per upsert or delete, its CSV in and its results out.

`BulkJobs` gives `SalesforceRest` `bulk_upsert`, `bulk_delete` and `bulk_query`, gated by its budget (each job
spends its allocation). `bulk_upsert` runs `upsert_job` through the client's own `call`, on the same session as every
REST call (simple-salesforce's `bulk2` client), so logging in again and mapping errors onto
shared.errors happen there. Here: how records become the job's CSV (null as `#N/A`), and how the
job's successful and failed records become results in the sObject Collections shape. And one query job
(`query_job`, `SalesforceRest.bulk_query`): its result pages downloaded to a temporary file, its rows typed
like a REST query's (`typed`).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from simple_salesforce.api import Salesforce

from shared.budget import API_REQUESTS, BULK_BATCHES, BULK_QUERY_JOBS, Budget
from shared.errors import RejectedError
from shared.salesforce_errors import check_ids, check_name
from shared.settings import SalesforceSettings

T = TypeVar("T")
BULK_NULL = "#N/A"


class Call(Protocol):
    """`SalesforceRest.call`: one simple-salesforce call, re-authenticated once and its errors mapped."""

    def __call__(self, fn: Callable[[Salesforce], T], *, kind: str = ..., what: str = ...) -> T: ...


class _Client(Protocol):
    """What BulkJobs needs of shared.salesforce.SalesforceRest."""

    settings: SalesforceSettings
    budget: Budget

    def call(self, fn: Callable[[Salesforce], T], *, kind: str = ..., what: str = ...) -> T: ...

    def describe(self, sobject: str) -> dict[str, Any]: ...


class BulkJobs:
    """The Bulk API 2.0 calls of SalesforceRest (a mixin: `self` is the client)."""

    def bulk_upsert(
        self: _Client, sobject: str, external_field: str, records: Iterable[dict[str, Any]]
    ) -> dict[str, Any]:
        """Upsert by external id through one Bulk API 2.0 ingest job; external id -> result (`upsert_job`
        says what a record may hold, which records get no result, and what a failed job or expired session does)."""
        check_name(sobject)
        check_name(external_field)
        self.budget.admit((API_REQUESTS, BULK_BATCHES))
        results = upsert_job(self.call, sobject, external_field, records, poll_seconds=self.settings.bulk_poll_seconds)
        self.budget.spent(BULK_BATCHES, max(1, -(-len(results) // 10_000)))
        return results

    def bulk_delete(self: _Client, sobject: str, ids: Iterable[str]) -> tuple[int, list[str]]:
        """Delete records by id through one Bulk API 2.0 ingest job (`operation: delete`, children cascade as
        in any delete); (deleted, the errors of the records Salesforce refused). An expired session repeats the
        job after logging in again: deleting a deleted record is refused, not repeated."""
        check_name(sobject)
        unique = check_ids(ids)
        if not unique:
            return 0, []
        self.budget.admit((API_REQUESTS, BULK_BATCHES))
        with tempfile.NamedTemporaryFile("w", suffix=".csv", encoding="utf-8", newline="") as handle:
            handle.write("Id\n" + "".join(f"{record_id}\n" for record_id in unique))
            handle.flush()
            poll = self.settings.bulk_poll_seconds
            jobs = self.call(
                lambda sf: getattr(sf.bulk2, sobject).delete(csv_file=handle.name, wait=poll),
                kind="bulk",
                what=f"bulk delete {sobject}",
            )
        self.budget.spent(BULK_BATCHES, max(1, -(-len(unique) // 10_000)))
        failed = sum(int(job.get("numberRecordsFailed", 0)) for job in jobs)
        deleted = sum(int(job.get("numberRecordsProcessed", 0)) for job in jobs) - failed  # processed counts both
        errors: list[str] = []
        if failed:
            for job in jobs:
                text = _job_results(self.call, sobject, str(job["job_id"]), "failed")
                errors += [row.get("sf__Error", "") for row in csv.DictReader(io.StringIO(text))]
        return deleted, errors

    def bulk_query(
        self: _Client, sobject: str, soql: str, *, include_deleted: bool = False, page_size: int = 50_000
    ) -> Iterator[dict[str, Any]]:
        """Every row of a SOQL query through one Bulk API 2.0 query job, typed like a REST query's rows (the
        object's describe says which columns are booleans and numbers); `query_job`."""
        check_name(sobject)
        types = {str(f["name"]): str(f["type"]) for f in self.describe(sobject).get("fields", [])}
        self.budget.admit((API_REQUESTS, BULK_QUERY_JOBS))
        rows = query_job(
            self.call,
            sobject,
            soql,
            include_deleted=include_deleted,
            poll_seconds=self.settings.bulk_poll_seconds,
            page_size=page_size,
        )
        self.budget.spent(BULK_QUERY_JOBS)
        return (typed(row, types) for row in rows)


def bulk_csv_value(value: Any) -> str:
    """A record value as Bulk API CSV text: null (and empty text, which Salesforce stores as null) is `#N/A`,
    because an empty CSV value would leave the field unchanged."""
    if value is None or value == "":
        return BULK_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def bulk_result(row: dict[str, str]) -> dict[str, Any]:
    """A successfulResults/failedResults row in the sObject Collections result shape."""
    if "sf__Error" not in row:
        return {"success": True, "created": row.get("sf__Created") == "true", "id": row.get("sf__Id"), "errors": []}
    code, _, rest = row["sf__Error"].partition(":")
    rest = rest.removesuffix("--").rstrip()
    message, colon, fields = rest.rpartition(":")
    if not colon:  # no fields part: the whole rest is the message
        message, fields = rest, ""
    error = {"statusCode": code, "message": message, "fields": [f for f in fields.split(",") if f]}
    return {"success": False, "id": row.get("sf__Id") or None, "errors": [error]}


def upsert_job(
    call: Call, sobject: str, external_field: str, records: Iterable[dict[str, Any]], *, poll_seconds: float
) -> dict[str, Any]:
    """Upsert by external id through one Bulk API 2.0 ingest job; external id -> result.

    The records stream into a temporary CSV file, so the caller need not hold them in memory.
    The first record's keys are the CSV header: a later record may lack one (that field is left
    as it is) but not add one (RejectedError). The results have the sObject Collections shape
    (`success`, `created`, `id`, `errors`), so callers treat both paths alike; a record without
    a result was not processed. A job Salesforce fails as a whole raises PermanentError with the
    job's errorMessage. A session that expires mid-job repeats the whole job after logging in
    again, which is safe: an upsert by external id is idempotent.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".csv", encoding="utf-8", newline="") as handle:
        writer: csv.DictWriter[str] | None = None
        for record in records:
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(record), restval="", lineterminator="\n")
                writer.writeheader()
            extra = [name for name in record if name not in writer.fieldnames]
            if extra:
                raise RejectedError(
                    f"bulk upsert {sobject}: every record needs the fields of the first; found {', '.join(extra)}"
                )
            writer.writerow({name: bulk_csv_value(value) for name, value in record.items()})
        if writer is None:
            return {}
        handle.flush()
        jobs = call(
            lambda sf: getattr(sf.bulk2, sobject).upsert(
                csv_file=handle.name, external_id_field=external_field, wait=poll_seconds
            ),
            kind="bulk",
            what=f"bulk upsert {sobject}",
        )
    results: dict[str, Any] = {}
    for job in jobs:
        for kind in ("successful", "failed"):
            for row in csv.DictReader(io.StringIO(_job_results(call, sobject, str(job["job_id"]), kind))):
                results[row.get(external_field, "")] = bulk_result(row)
    return results


def _job_results(call: Call, sobject: str, job_id: str, kind: str) -> str:
    """The CSV of a job's successful or failed records."""

    def read(sf: Salesforce) -> str:
        bulk = getattr(sf.bulk2, sobject)
        return str(bulk.get_successful_records(job_id) if kind == "successful" else bulk.get_failed_records(job_id))

    return call(read, kind="bulk", what=f"bulk {kind} results of {sobject}")


def query_job(
    call: Call, sobject: str, soql: str, *, include_deleted: bool, poll_seconds: float, page_size: int
) -> Iterator[dict[str, str]]:
    """The rows of one Bulk API 2.0 query job (`queryAll` when `include_deleted`), as CSV text by column.

    The job's result pages (`page_size` rows, `Sforce-Locator` paging) are written to a temporary file inside
    one call, so a session that expires mid-job repeats the whole job after logging in again; the rows are then
    read back one at a time, so memory holds one page while downloading and one row after. Values are CSV text,
    an empty one for null: `typed` turns them into what a REST query returns.
    """
    handle = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115 - closed below

    def download(sf: Salesforce) -> int:
        handle.seek(0)
        handle.truncate()
        bulk = getattr(sf.bulk2, sobject)
        pages = bulk.query_all if include_deleted else bulk.query
        header_written = False
        for page in pages(soql, max_records=page_size, wait=poll_seconds):
            text = str(page)
            if header_written:  # every page repeats the header line
                text = text.split("\n", 1)[1] if "\n" in text else ""
            handle.write(text if text.endswith("\n") or not text else text + "\n")
            header_written = True
        return handle.tell()

    try:
        call(download, kind="bulk", what=f"bulk query {sobject}")
        handle.seek(0)
        yield from csv.DictReader(handle)
    finally:
        handle.close()


_NUMBERS = {"double": float, "currency": float, "percent": float, "int": int, "long": int}


def typed(row: dict[str, str], types: dict[str, str]) -> dict[str, Any]:
    """A Bulk API query row with the values a REST query returns: null for empty, booleans and numbers by the
    describe's field `types` (name -> type), text for everything else."""
    out: dict[str, Any] = {}
    for name, text in row.items():
        kind = types.get(name, "string")
        if text == "":
            out[name] = False if kind == "boolean" else None
        elif kind == "boolean":
            out[name] = text.lower() == "true"
        elif kind in _NUMBERS:
            out[name] = _NUMBERS[kind](text)
        else:
            out[name] = text
    return out
