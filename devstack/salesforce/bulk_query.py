"""Bulk API 2.0 query jobs under /services/data/vNN.N/jobs/query, as simple-salesforce's bulk2 drives them.

A job's life, as in Salesforce (API 47.0 and later): `POST jobs/query` with `{"operation": "query" |
"queryAll", "query": "<SOQL>"}` parses the SOQL with the emulator's engine (soql.py) and creates the job in
state UploadComplete; it runs in the background (InProgress, then JobComplete, or Failed), the tunable
`bulk_query_delay_ms` holding it InProgress so a test can watch or abort it. The query runs once, when the
job completes: its rows are kept rendered as CSV lines, and `GET jobs/query/<id>/results?maxRecords=&locator=`
pages through them without running it again (headers `Sforce-Locator`, the literal `null` on the last page,
and `Sforce-NumberOfRecords`). `queryAll` includes deleted rows. `PATCH {"state": "Aborted"}` aborts a job
that has not finished, `DELETE` removes one that is not running, `GET jobs/query` lists the jobs.

The CSV: a header with the select list as written in the SOQL (`Account.Name` for a relationship field),
every value quoted, a null as an empty unquoted value, booleans `true`/`false`, datetimes as the REST API
gives them. Locators are the base64 of the page's first row offset, like Salesforce's (`MTAwMA` is 1000).

Errors: a SOQL the engine refuses, and what Bulk API 2.0 does not support (COUNT(), OFFSET), answer 400
`INVALIDJOB` "Failed to process query: <CODE>: <message>" at creation; results of a job that is not
JobComplete answer 412 `JOB_NOT_COMPLETE` (Salesforce's documented answer); selecting a compound field fails
the job ("FUNCTIONALITY_NOT_ENABLED: Selecting compound data not supported in Bulk Query"), as Salesforce
does. Calls count as `bulk_query` in the counters. Creating a job spends one DailyBulkV2QueryJobs (limits.py); with
none remaining the creation is refused with 403 REQUEST_LIMIT_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devstack.salesforce import soql
from devstack.salesforce.base import ApiError, format_datetime, new_id, not_found, now_ms
from devstack.salesforce.bulk import DELIMITERS, JOB_KEY_PREFIX, LINE_ENDINGS, BulkJob, csv_format
from devstack.salesforce.limits import BULK_QUERY_JOBS, request_limit_exceeded
from devstack.salesforce.rest import BASE, add_route, emulator, json_response, read_object, version_of
from devstack.salesforce.state import Emulator

OPERATIONS = ("query", "queryAll")
MIN_VERSION = 47.0
RUNNING = ("UploadComplete", "InProgress")
FINISHED = ("JobComplete", "Failed", "Aborted")
COMPOUND_TYPES = {"address", "location"}
NOT_COMPLETE = "can only download query results of successfully completed bulk job with status: JOB_COMPLETE."


@dataclass
class QueryJob(BulkJob):
    """One query job: its SOQL, parsed once, and the result rows rendered once as CSV lines."""

    id: str
    operation: str
    query: soql.Query
    columns: list[str]  # the select list as written in the SOQL
    column_delimiter: str
    line_ending: str
    version: str
    created_by: str
    created: str
    state: str = "UploadComplete"
    modstamp: str = ""
    lines: list[str] = field(default_factory=list)  # one rendered CSV line per result row
    error_message: str = ""
    processing_ms: int = 0
    task: asyncio.Task[None] | None = None

    def info(self, *, detail: bool = False, listing: bool = False) -> dict[str, Any]:
        """Job info as Salesforce returns it: short on create and abort, with jobType in lists, full on GET."""
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.query.obj.name,
            "createdById": self.created_by,
            "createdDate": self.created,
            "systemModstamp": self.modstamp,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.version),
        }
        if detail or listing:
            out["jobType"] = "V2Query"
        out.update(lineEnding=self.line_ending, columnDelimiter=self.column_delimiter)
        if detail:
            out.update(
                numberRecordsProcessed=len(self.lines),
                retries=0,
                totalProcessingTime=self.processing_ms,
                isPkChunkingSupported=True,
            )
            if self.error_message:
                out["errorMessage"] = self.error_message
        return out

    def line(self, values: list[str | None]) -> str:
        """One CSV line: every value quoted, a null as an empty unquoted value."""
        cells = ("" if v is None else '"' + v.replace('"', '""') + '"' for v in values)
        return DELIMITERS[self.column_delimiter].join(cells) + LINE_ENDINGS[self.line_ending]


def _cell(value: Any) -> str | None:
    """A value as Salesforce writes it in query CSV: booleans true/false, numbers as in JSON, text as is."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _flatten(query: soql.Query, record: dict[str, Any]) -> list[str | None]:
    """The projected record's values in select-list order, following relationship paths."""
    values: list[str | None] = []
    for path in query.paths or []:
        current: Any = record
        for hop in path.hops:
            current = current.get(hop.relationship_name or hop.name) if isinstance(current, dict) else None
        values.append(_cell(current.get(path.field.name) if isinstance(current, dict) else None))
    return values


def _select_list(text: str, state: Emulator) -> list[str]:
    """The select list's names as written (the tokens between SELECT and FROM of an accepted query)."""
    tokens = soql._Parser(text, state.store).tokens
    upto = next(i for i, t in enumerate(tokens) if t.upper == "FROM")
    return [t.text for t in tokens[1:upto] if t.kind == "ident"]


def _invalid_query(error: ApiError) -> ApiError:
    return ApiError(400, "INVALIDJOB", f"Failed to process query: {error.code}: {error.message}")


def _parse(text: Any, state: Emulator) -> tuple[soql.Query, list[str]]:
    """The parsed query and its column names, or the creation's 400 for what Bulk API 2.0 refuses."""
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "INVALIDJOB", "query: a SOQL query is required")
    try:
        query = soql.parse(text, state.store)
    except ApiError as error:
        raise _invalid_query(error) from None
    if query.paths is None:
        raise _invalid_query(ApiError(400, "MALFORMED_QUERY", "Aggregate queries are not supported: COUNT()"))
    if query.offset:
        raise _invalid_query(ApiError(400, "MALFORMED_QUERY", "OFFSET is not supported by Bulk API 2.0 query"))
    return query, _select_list(text, state)


def _job(state: Emulator, job_id: str) -> QueryJob:
    job = state.query_jobs.get(job_id)
    if job is None:
        raise not_found()
    return job


def _query_call(request: web.Request) -> Emulator:
    """Count the call and check the version (Bulk API 2.0 query exists from 47.0 on)."""
    state = emulator(request)
    state.counters.total += 1
    state.counters.bulk_query += 1
    if float(version_of(request)) < MIN_VERSION:
        raise not_found()
    return state


# ---- running a job ---------------------------------------------------------------------------------------
async def _process(state: Emulator, job: QueryJob) -> None:
    if job.state != "UploadComplete":
        return
    started = time.perf_counter()
    job.touch("InProgress")
    await asyncio.sleep(state.tunables.bulk_query_delay_ms / 1000)
    if job.state != "InProgress":  # aborted meanwhile
        return
    if any(path.field.type in COMPOUND_TYPES for path in job.query.paths or []):
        job.fail("FUNCTIONALITY_NOT_ENABLED: Selecting compound data not supported in Bulk Query")
        return
    include_deleted = job.operation == "queryAll"
    _, records = soql.execute(state.store, job.query, include_deleted=include_deleted, version=job.version)
    job.lines = [job.line(_flatten(job.query, record)) for record in records]
    job.processing_ms = int((time.perf_counter() - started) * 1000)
    job.touch("JobComplete")


# ---- handlers --------------------------------------------------------------------------------------------
async def create_job(request: web.Request) -> web.Response:
    state = _query_call(request)
    version = version_of(request)
    body = await read_object(request)
    operation = body.get("operation")
    if operation not in OPERATIONS:
        raise ApiError(400, "INVALIDJOB", f"Invalid operation: {operation!r}; use one of {', '.join(OPERATIONS)}")
    delimiter, ending = csv_format(body)
    query, columns = _parse(body.get("query"), state)
    if not state.limits.spend(BULK_QUERY_JOBS):
        raise request_limit_exceeded(BULK_QUERY_JOBS)
    stamp = format_datetime(now_ms())
    job = QueryJob(
        id=new_id(JOB_KEY_PREFIX),
        operation=operation,
        query=query,
        columns=columns,
        column_delimiter=delimiter,
        line_ending=ending,
        version=version,
        created_by=state.store.user_id,
        created=stamp,
        modstamp=stamp,
    )
    state.query_jobs[job.id] = job
    job.start(_process(state, job))
    return json_response(job.info())


async def job_info(request: web.Request) -> web.Response:
    """GET the job's info, PATCH it to Aborted, DELETE a job that is not running."""
    state = _query_call(request)
    job = _job(state, request.match_info["job"])
    if request.method == "GET":
        return json_response(job.info(detail=True))
    if request.method == "DELETE":
        if job.state in RUNNING:
            raise ApiError(400, "INVALIDJOBSTATE", f"Job {job.id} cannot be deleted while it is {job.state}")
        job.cancel()
        del state.query_jobs[job.id]
        return web.Response(status=204)
    wanted = (await read_object(request)).get("state")
    if wanted != "Aborted":
        raise ApiError(400, "INVALIDJOBSTATE", f"state: a query job can only be set to Aborted, not {wanted!r}")
    if job.state in FINISHED:
        raise ApiError(400, "INVALIDJOBSTATE", f"Job {job.id} is already {job.state}")
    job.touch("Aborted")
    job.cancel()
    return json_response(job.info())


def _locator(value: str | None) -> int:
    """The first row a locator names (0 when absent); 400 for one this emulator did not hand out."""
    if value is None or value in ("", "null"):
        return 0
    try:
        text = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    if not text.isdigit():
        raise ApiError(400, "INVALIDLOCATOR", f"Invalid locator: {value}")
    return int(text)


def _max_records(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ApiError(400, "API_ERROR", f"maxRecords: expected a positive integer, not {value!r}")
    return int(value)


async def results(request: web.Request) -> web.Response:
    """One page of the results: at most maxRecords rows from the locator's offset, then the next locator."""
    state = _query_call(request)
    job = _job(state, request.match_info["job"])
    if job.state != "JobComplete":
        status = {"UploadComplete": "UPLOAD_COMPLETE", "InProgress": "IN_PROGRESS"}.get(job.state, job.state.upper())
        raise ApiError(412, "JOB_NOT_COMPLETE", f"{NOT_COMPLETE} Current status: {status}")
    start = _locator(request.query.get("locator"))
    if start > len(job.lines):
        raise ApiError(400, "INVALIDLOCATOR", f"Invalid locator: {request.query.get('locator')}")
    size = _max_records(request.query.get("maxRecords"), state.tunables.bulk_query_page_size)
    page = job.lines[start : start + size]
    end = start + len(page)
    locator = base64.b64encode(str(end).encode()).decode().rstrip("=") if end < len(job.lines) else "null"
    body = job.line(list(job.columns)) + "".join(page)
    response = web.Response(text=body, content_type="text/csv", charset="utf-8")
    response.headers["Sforce-Locator"] = locator
    response.headers["Sforce-NumberOfRecords"] = str(len(page))
    return response


async def all_jobs(request: web.Request) -> web.Response:
    state = _query_call(request)
    records = [job.info(listing=True) for job in state.query_jobs.values()]
    return json_response({"done": True, "records": records, "nextRecordsUrl": None})


def routes(app: web.Application) -> None:
    jobs = BASE + "/jobs/query"
    add_route(app, "POST", jobs, create_job)
    add_route(app, "GET", jobs, all_jobs)
    for method in ("GET", "PATCH", "DELETE"):
        add_route(app, method, jobs + "/{job}", job_info)
    add_route(app, "GET", jobs + "/{job}/results", results)
