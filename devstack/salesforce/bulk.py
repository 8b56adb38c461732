"""Bulk API 2.0 ingest jobs under /services/data/vNN.N/jobs/ingest, as simple-salesforce's bulk2 drives them.

A job's life, as in Salesforce: `POST jobs/ingest` creates it (Open); `PUT jobs/ingest/<id>/batches`
uploads CSV (201, no body; uploads append while the job is Open); `PATCH {"state": "UploadComplete"}`
closes it and processing starts in the background (InProgress, then JobComplete, or Failed when the
CSV itself is unusable); `GET jobs/ingest/<id>` reports the state and counts; `successfulResults/`,
`failedResults/` and `unprocessedrecords/` return CSV. `PATCH {"state": "Aborted"}` stops an open or
running job (rows not reached are unprocessed); `DELETE` removes a job that is no longer running.

Processing follows Salesforce: rows in chunks of 200, each chunk one transaction (one CDC commit per
chunk, changeOrigin `com/salesforce/api/bulkapi/NN.N` plus the creator's `client=` tag), and a row that
fails does not stop its chunk. CSV values: an empty value leaves the field as it is, `#N/A` sets it to
null, and a column `Relationship__r.External_Id__c` sets a lookup by the parent's external id (references.py,
as for REST bodies). Operation `delete` (and `hardDelete`, the same here) takes a CSV with an `Id` column and
deletes as REST does, cascading to children (references.py). A header
naming an unknown field fails the whole job with "InvalidBatch : Field name not found : X".
The tunable `bulk_chunk_delay_ms` slows processing down so a test can watch or abort a running job.
Closing a job spends DailyBulkApiBatches (limits.py: 1 per 10,000 rows, at least 1); creating one while that
allocation has nothing remaining is refused with 403 REQUEST_LIMIT_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiohttp import web

from devstack.salesforce.base import ApiError, format_datetime, new_id, not_found, now_ms
from devstack.salesforce.limits import BULK_BATCHES, RECORDS_PER_BATCH, request_limit_exceeded
from devstack.salesforce.references import external_parent_id
from devstack.salesforce.rest import BASE, add_route, emulator, json_response, origin, read_object, version_of
from devstack.salesforce.schema import ObjectDef
from devstack.salesforce.state import Emulator
from devstack.salesforce.store import Plan, Transaction

LOG = logging.getLogger("devstack.salesforce")
OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
CHUNK_ROWS = 200
NULL_VALUE = "#N/A"
JOB_KEY_PREFIX = "750"
RUNNING = ("UploadComplete", "InProgress")
FINISHED = ("JobComplete", "Failed", "Aborted")


class BulkJob:
    """What ingest and query jobs share: a state with its modstamp, and the background task that runs them."""

    id: str
    state: str
    modstamp: str
    error_message: str
    task: asyncio.Task[None] | None

    def touch(self, state: str | None = None) -> None:
        if state is not None:
            self.state = state
        self.modstamp = format_datetime(now_ms())

    def fail(self, message: str) -> None:
        self.error_message = message
        self.touch("Failed")

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background; an unexpected error fails the job (logged here) instead of leaving it
        InProgress: the client polls the job, so it must end, with the stack in our log, never in the answer."""

        async def guarded() -> None:
            try:
                await work
            except Exception:
                LOG.exception("bulk job %s failed unexpectedly", self.id)
                self.fail("UNKNOWN_EXCEPTION: An unexpected error occurred; see the emulator log")

        self.task = asyncio.get_running_loop().create_task(guarded())

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


def csv_format(body: dict[str, Any]) -> tuple[str, str]:
    """The CSV column delimiter and line ending a job creation asks for (an INVALIDJOB error when unknown)."""
    if body.get("contentType", "CSV") != "CSV":
        raise _invalid_job("contentType: only CSV is supported")
    delimiter, ending = body.get("columnDelimiter", "COMMA"), body.get("lineEnding", "LF")
    if delimiter not in DELIMITERS:
        raise _invalid_job(f"columnDelimiter: use one of {', '.join(DELIMITERS)}")
    if ending not in LINE_ENDINGS:
        raise _invalid_job(f"lineEnding: use one of {', '.join(LINE_ENDINGS)}")
    return str(delimiter), str(ending)


@dataclass
class IngestJob(BulkJob):
    """One ingest job: its definition, the uploaded rows, and per-row results once processed."""

    id: str
    operation: str
    obj: ObjectDef
    external_id_field: str | None
    column_delimiter: str
    line_ending: str
    version: str
    origin: str
    created_by: str
    created: str
    state: str = "Open"
    modstamp: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    successful: list[list[str]] = field(default_factory=list)  # sf__Id, sf__Created, then the row
    failed: list[list[str]] = field(default_factory=list)  # sf__Id, sf__Error, then the row
    reached: int = 0  # rows processed so far (succeeded or failed)
    error_message: str = ""
    processing_ms: int = 0
    task: asyncio.Task[None] | None = None

    def info(self, *, detail: bool) -> dict[str, Any]:
        """Job info as Salesforce returns it: the short form on create and state changes, the long one on GET."""
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.obj.name,
            "createdById": self.created_by,
            "createdDate": self.created,
            "systemModstamp": self.modstamp,
            "state": self.state,
        }
        if self.external_id_field:
            out["externalIdFieldName"] = self.external_id_field
        out.update(concurrencyMode="Parallel", contentType="CSV", apiVersion=float(self.version))
        if self.state == "Open":
            out["contentUrl"] = f"services/data/v{self.version}/jobs/ingest/{self.id}/batches"
        out.update(lineEnding=self.line_ending, columnDelimiter=self.column_delimiter)
        if detail:
            out.update(
                jobType="V2Ingest",
                numberRecordsProcessed=self.reached,
                numberRecordsFailed=len(self.failed),
                retries=0,
                totalProcessingTime=self.processing_ms,
                apiActiveProcessingTime=self.processing_ms,
                apexProcessingTime=0,
            )
            if self.error_message:
                out["errorMessage"] = self.error_message
        return out

    def csv_text(self, rows: list[list[str]]) -> str:
        buffer = io.StringIO()
        writer = csv.writer(
            buffer, delimiter=DELIMITERS[self.column_delimiter], lineterminator=LINE_ENDINGS[self.line_ending]
        )
        writer.writerows(rows)
        return buffer.getvalue()


def _invalid_job(message: str) -> ApiError:
    return ApiError(400, "INVALIDJOB", message)


def _job(state: Emulator, job_id: str) -> IngestJob:
    job = state.jobs.get(job_id)
    if job is None:
        raise not_found()
    return job


def _bulk_call(request: web.Request) -> Emulator:
    state = emulator(request)
    state.counters.total += 1
    state.counters.bulk += 1
    return state


# ---- CSV rows -> plans ----------------------------------------------------------------------------------
def header_problem(job: IngestJob) -> str:
    """Why the header cannot be processed (the job then fails as a whole), or ''."""
    if not job.header:
        return "InvalidBatch : no data was uploaded for this job"
    for column in job.header:
        relationship, _, parent_field = column.partition(".")
        if not parent_field:
            if job.obj.field(column) is None:
                return f"InvalidBatch : Field name not found : {column}"
            continue
        lookup = job.obj.relationship(relationship)
        if lookup is None or not lookup.reference_to:
            return f"InvalidBatch : Field name not found : {column}"
    return ""


def row_values(state: Emulator, job: IngestJob, row: list[str]) -> dict[str, Any]:
    """The row as a record body: empty values left out, #N/A as null, relationship columns resolved."""
    if len(row) != len(job.header):
        raise ApiError(400, "INVALID_FIELD", f"the row has {len(row)} values and the header {len(job.header)}")
    values: dict[str, Any] = {}
    for column, value in zip(job.header, row, strict=True):
        if value == "":
            continue
        relationship, _, parent_field = column.partition(".")
        if parent_field:
            lookup = job.obj.relationship(relationship)
            if lookup is not None:
                values[lookup.name] = (
                    None if value == NULL_VALUE else external_parent_id(state.store, lookup, parent_field, value)
                )
            continue
        values[column] = None if value == NULL_VALUE else value
    return values


def _value(values: dict[str, Any], name: str) -> Any:
    return next((v for k, v in values.items() if k.lower() == name.lower()), None)


def plan_row(state: Emulator, job: IngestJob, transaction: Transaction, row: list[str]) -> Plan:
    """Validate one row into a plan for the job's operation (raises ApiError for the row's failure)."""
    obj = job.obj
    state.counters.sobject_write[obj.name] += 1
    values = row_values(state, job, row)
    record_id = _value(values, "Id")
    rest = {k: v for k, v in values.items() if k.lower() != "id"}
    if job.operation == "insert":
        if record_id:
            raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
        plan = transaction.plan_create(obj, rest)
    elif job.operation == "upsert":
        external = job.external_id_field or "Id"
        key = _value(values, external)
        if key is None:
            raise ApiError(400, "MISSING_ARGUMENT", f"{external} not specified", [external])
        plan = transaction.plan_upsert(obj, external, str(key), values)
    elif record_id is None:
        raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
    elif job.operation == "update":
        plan = transaction.plan_update(obj, record_id, rest)
    else:
        plan = transaction.plan_delete(obj, record_id)
    return plan


def error_text(error: ApiError) -> str:
    """sf__Error as Salesforce writes it: `CODE:message:fields --`."""
    return f"{error.code}:{error.message}:{','.join(error.fields)} --"


async def _process(state: Emulator, job: IngestJob) -> None:
    """Run a closed job in chunks of 200 rows, one transaction per chunk, until done or aborted."""
    started = time.perf_counter()
    job.touch("InProgress")
    problem = header_problem(job)
    if problem:
        job.fail(problem)
        return
    lowered = [column.lower() for column in job.header]
    id_column = lowered.index("id") if "id" in lowered else None
    for start in range(job.reached, len(job.rows), CHUNK_ROWS):
        if job.state != "InProgress":
            return
        chunk = job.rows[start : start + CHUNK_ROWS]
        transaction = state.store.transaction(job.origin)
        makers: list[Callable[[], Plan]] = [partial(plan_row, state, job, transaction, row) for row in chunk]
        outcomes = transaction.run(makers, all_or_none=False)
        transaction.commit()
        for row, outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, ApiError):
                given = row[id_column] if id_column is not None and id_column < len(row) else ""
                job.failed.append([given, error_text(outcome), *row])
            else:
                job.successful.append([outcome.record_id, "true" if outcome.created else "false", *row])
        job.reached += len(chunk)
        job.processing_ms = int((time.perf_counter() - started) * 1000)
        await asyncio.sleep(state.tunables.bulk_chunk_delay_ms / 1000)
    if job.state == "InProgress":
        job.touch("JobComplete")


# ---- handlers --------------------------------------------------------------------------------------------
async def create_job(request: web.Request) -> web.Response:
    state = _bulk_call(request)
    version = version_of(request)
    body = await read_object(request)
    operation = body.get("operation")
    if operation not in OPERATIONS:
        raise _invalid_job(f"Invalid operation: {operation!r}; use one of {', '.join(OPERATIONS)}")
    obj = state.store.schema.get(str(body.get("object", "")))
    if obj is None:
        raise _invalid_job(f"Entity '{body.get('object')}' is not supported by the Bulk API.")
    delimiter, ending = csv_format(body)
    external = body.get("externalIdFieldName")
    if operation == "upsert":
        definition = obj.field(str(external or ""))
        if definition is None or not (definition.external_id or definition.name == "Id"):
            raise _invalid_job(f"externalIdFieldName: {external!r} is not an external id field of {obj.name}")
        external = definition.name
    else:
        external = None
    if state.limits.remaining(BULK_BATCHES) <= 0:
        state.limits.refuse(BULK_BATCHES)
        raise request_limit_exceeded(BULK_BATCHES)
    stamp = format_datetime(now_ms())
    job = IngestJob(
        id=new_id(JOB_KEY_PREFIX),
        operation=operation,
        obj=obj,
        external_id_field=external,
        column_delimiter=delimiter,
        line_ending=ending,
        version=version,
        origin=origin(request, api="bulkapi"),
        created_by=state.store.user_id,
        created=stamp,
        modstamp=stamp,
    )
    state.jobs[job.id] = job
    return json_response(job.info(detail=False))


async def upload(request: web.Request) -> web.Response:
    state = _bulk_call(request)
    version_of(request)
    job = _job(state, request.match_info["job"])
    if job.state != "Open":
        raise ApiError(409, "INVALIDJOBSTATE", f"Job {job.id} is not open for uploads (state {job.state})")
    text = await request.text()
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[job.column_delimiter])
    rows = [row for row in reader if row]
    if not rows:
        raise ApiError(400, "INVALIDJOB", "the uploaded CSV is empty")
    header, data = rows[0], rows[1:]
    if job.header and header != job.header:
        raise ApiError(400, "INVALIDJOB", "every upload of a job must have the same header")
    job.header = header
    job.rows.extend(data)
    job.touch()
    return web.Response(status=201)


async def job_info(request: web.Request) -> web.Response:
    """GET the job's info, PATCH its state (UploadComplete or Aborted), DELETE a job that is not running."""
    state = _bulk_call(request)
    version_of(request)
    job = _job(state, request.match_info["job"])
    if request.method == "GET":
        return json_response(job.info(detail=True))
    if request.method == "DELETE":
        if job.state in ("Open", *RUNNING):
            raise ApiError(400, "INVALIDJOBSTATE", f"Job {job.id} cannot be deleted while it is {job.state}")
        del state.jobs[job.id]
        return web.Response(status=204)
    wanted = (await read_object(request)).get("state")
    if wanted == "UploadComplete":
        if job.state != "Open":
            raise ApiError(400, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}, not Open")
        job.touch("UploadComplete")
        state.limits.consume(BULK_BATCHES, max(1, -(-len(job.rows) // RECORDS_PER_BATCH)))
        job.start(_process(state, job))
    elif wanted == "Aborted":
        if job.state in FINISHED:
            raise ApiError(400, "INVALIDJOBSTATE", f"Job {job.id} is already {job.state}")
        job.touch("Aborted")
    else:
        raise ApiError(400, "INVALIDJOBSTATE", f"state: use UploadComplete or Aborted, not {wanted!r}")
    return json_response(job.info(detail=False))


async def results(request: web.Request) -> web.Response:
    """successfulResults, failedResults, unprocessedrecords: CSV with the original columns."""
    state = _bulk_call(request)
    version_of(request)
    job = _job(state, request.match_info["job"])
    kind = request.match_info["kind"].lower()
    if kind == "successfulresults":
        rows = [["sf__Id", "sf__Created", *job.header], *job.successful]
    elif kind == "failedresults":
        rows = [["sf__Id", "sf__Error", *job.header], *job.failed]
    elif kind == "unprocessedrecords":
        rows = [job.header, *job.rows[job.reached :]] if job.header else []
    else:
        raise not_found()
    return web.Response(text=job.csv_text(rows), content_type="text/csv", charset="utf-8")


async def all_jobs(request: web.Request) -> web.Response:
    state = _bulk_call(request)
    version_of(request)
    return json_response(
        {"done": True, "records": [job.info(detail=False) for job in state.jobs.values()], "nextRecordsUrl": None}
    )


def routes(app: web.Application) -> None:
    jobs = BASE + "/jobs/ingest"
    add_route(app, "POST", jobs, create_job)
    add_route(app, "GET", jobs, all_jobs)
    add_route(app, "PUT", jobs + "/{job}/batches", upload)
    for method in ("GET", "PATCH", "DELETE"):
        add_route(app, method, jobs + "/{job}", job_info)
    add_route(app, "GET", jobs + "/{job}/{kind}", results)
