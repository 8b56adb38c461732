"""The Bulk API 2.0 path of shared.salesforce: one ingest job per upsert, its CSV in and its results out.

`SalesforceRest.bulk_upsert` runs `upsert_job` through its own `call`, on the same session as every
REST call (simple-salesforce's `bulk2` client), so logging in again and mapping errors onto
shared.errors happen there. Here: how records become the job's CSV (null as `#N/A`), and how the
job's successful and failed records become results in the sObject Collections shape.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from simple_salesforce.api import Salesforce

from shared.errors import RejectedError

T = TypeVar("T")
BULK_NULL = "#N/A"


class Call(Protocol):
    """`SalesforceRest.call`: one simple-salesforce call, re-authenticated once and its errors mapped."""

    def __call__(self, fn: Callable[[Salesforce], T], *, kind: str = ..., what: str = ...) -> T: ...


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
