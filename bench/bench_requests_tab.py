"""Requests tab benchmark: what the billing admin's view costs in Salesforce API calls and data storage.

The Requests tab writer: 10,000 account-sync request records of 10,000 Accounts (2 % Failed, each failure with
one dead letter naming its request) go to `<prefix>.requests` and `<prefix>.changes.dlt` while one
`sfls requests-tab run` process runs; it lands them, once with `SFLS_REQUESTS_TAB__MODE=failures` (the default)
and once with `all` (the row names the mode), default settings otherwise. Reported per mode: the Salesforce API
calls of the landing (emulator counters, counted from when the writer's start-up calls settled) against the floor
of one sObject Collections call per 200 records landed, and the records landed against what the mode lands; the
data storage of `failures` at Salesforce's 2 KB per record against `all`'s, and the wall time until every record
of `all` is committed against `failures`'s.

The Account link: 10,000 accounts synced by one `sfls syncer` process with the schema deployed (the link on, by
default) against the same run with `SFLS_SYNC__ACCOUNT_LINK=false`: the Salesforce API calls the link adds, against
its floor of one collections update per 200 accounts.

    python -m bench requests_tab
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench.bench_syncer import Stack, _admin, emulator_stack, seed, stack_env, sync_accounts
from bench.common import Stopwatch, row
from devstack.process import ServiceProcess
from services.requests_tab.app import topics_read
from shared import kafka
from shared.deadletter import Failure, Origin, dead_letter_headers
from shared.events import RequestRecord, RequestStatus
from shared.kafka_reader import committed_records
from shared.salesforce_view import ACCOUNT_SYNC_STATUS, VIEW_SCHEMA
from shared.settings import KafkaSettings, Settings

BENCH = "requests_tab"
RECORDS = 10_000
FAILED_SHARE = 50  # one request in fifty fails: 2 %
ACCOUNTS = 10_000
RECORD_KB = 2  # Salesforce counts most records as 2 KB of data storage
COLLECTION = 200


def _records(
    prefix: str, accounts: list[str]
) -> tuple[list[RequestRecord], list[tuple[bytes, bytes, list[tuple[str, bytes]]]]]:
    """One account sync per account (its Account lookup set), every FAILED_SHAREth Failed with one dead letter."""
    now = datetime.now(UTC)
    records: list[RequestRecord] = []
    letters: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
    for i, key in enumerate(accounts):
        failed = i % FAILED_SHARE == 0
        record = RequestRecord(
            request_id=uuid.uuid4().hex,
            service="syncer",
            kind="account_sync",
            status=RequestStatus.FAILED if failed else RequestStatus.SUCCESS,
            key=key,
            started_at=now,
            duration_seconds=0.3,
            reason="LogiSense refused notes: too long" if failed else "",
            counts={"events": 1},
        )
        records.append(record)
        if failed:
            failure = Failure(
                error_class="RejectedError",
                message="notes: too long",
                http_status=400,
                first_failure=now,
                last_failure=now,
                request_id=record.request_id,
            )
            headers = dead_letter_headers(failure, service="syncer", origin=Origin(f"{prefix}.changes", 0, i))
            letters.append((key.encode(), b"{}", headers))
    return records, letters


def _committed(settings: KafkaSettings) -> int:
    group = kafka.requests_tab_group(settings.topic_prefix)
    return sum(committed_records(settings, group, t) for t in topics_read(Settings(kafka=settings)))


def _settled(stack: Stack, quiet_seconds: float = 1.5) -> int:
    """The emulator's call count once it has not moved for `quiet_seconds` (at most 30 s)."""
    watch, last, since = Stopwatch(), _sf_calls(stack), time.monotonic()
    while watch.seconds < 30:
        time.sleep(0.25)
        now = _sf_calls(stack)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            break
    return last


def _sf_calls(stack: Stack) -> int:
    return int(_admin(stack.http, stack.sf_url, "GET", "counters")["total"])


def _landed(stack: Stack, sobject: str) -> int:
    return len(_admin(stack.http, stack.sf_url, "GET", f"records/{sobject}")["records"])


def _tab(stack: Stack, mode: str) -> dict[str, float]:
    _admin(stack.http, stack.sf_url, "POST", "reset", {})
    _admin(stack.http, stack.sf_url, "POST", "schema", VIEW_SCHEMA)
    accounts = seed(stack.http, stack.sf_url, "Account", [{"Name": f"Tab {i:05d}"} for i in range(RECORDS)])
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(bootstrap_servers=stack.bootstrap, topic_prefix=prefix)
    topics = kafka.Topics(prefix)
    wanted = topics_read(Settings(kafka=settings))
    kafka.ensure_topics(settings, [s for s in topics.specs(settings) if s.name in wanted])
    records, letters = _records(prefix, accounts)
    env = stack_env(stack, prefix, SFLS_REQUESTS_TAB__MODE=mode)
    total = len(records) + len(letters)
    with ServiceProcess.sfls("requests-tab", "run", env=env, log=stack.state / f"tab-{mode}.log") as writer:
        writer.wait_ready(60)
        before = _settled(stack)  # its start-up calls (login, /limits, describes, the purge's read) left out
        producer = kafka.producer(settings)
        watch = Stopwatch()
        kafka.produce_and_flush(producer, topics.requests, ((r.key.encode(), r.to_bytes(), []) for r in records))
        kafka.produce_and_flush(producer, topics.changes_dlt, ((k, v, list(h)) for k, v, h in letters))
        while _committed(settings) < total:
            writer.check_alive()
            if watch.seconds > 600:
                raise RuntimeError(f"the writer did not commit {total} records within 10 minutes; see {writer.log}")
            time.sleep(0.2)
        seconds = watch.seconds
    calls = _sf_calls(stack) - before
    requests, errors = _landed(stack, "LogiSense_Request__c"), _landed(stack, "LogiSense_Request_Error__c")
    figures = {
        "calls": calls,
        "floor": math.ceil(requests / COLLECTION) + math.ceil(errors / COLLECTION),
        "requests": requests,
        "errors": errors,
        "seconds": seconds,
    }
    print(f"   mode {mode}: {figures}", flush=True)
    return figures


def _link(stack: Stack, link: bool) -> dict[str, float]:
    """SF calls of one syncer run over ACCOUNTS accounts, with the link on (schema deployed) or off."""
    _admin(stack.http, stack.sf_url, "POST", "reset", {})
    _admin(stack.http, stack.ls_url, "POST", "reset", {"seed": 1, "catalogue_size": 50})
    _admin(stack.http, stack.sf_url, "POST", "schema", VIEW_SCHEMA)
    accounts = seed(stack.http, stack.sf_url, "Account", [{"Name": f"Link {i:05d}"} for i in range(ACCOUNTS)])
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = stack_env(stack, prefix, **({} if link else {"SFLS_SYNC__ACCOUNT_LINK": "false"}))
    before = _sf_calls(stack)
    sync_accounts(stack, accounts, prefix, env, origin="bench-link", log=f"syncer-link-{link}.log")
    rows = _admin(stack.http, stack.sf_url, "GET", "records/Account")["records"]
    figures: dict[str, float] = {
        "calls": _sf_calls(stack) - before,
        "linked": sum(1 for a in rows if a.get(ACCOUNT_SYNC_STATUS)),
    }
    print(f"   account link {'on' if link else 'off'}: {figures}", flush=True)
    return figures


def run() -> list[dict[str, Any]]:
    with emulator_stack("sfls-bench-requests-tab-") as stack:
        failures, every = _tab(stack, "failures"), _tab(stack, "all")
        on, off = _link(stack, True), _link(stack, False)
    per = 10_000 / RECORDS
    storage = {
        m: (f["requests"] + f["errors"]) * per * RECORD_KB / 1024 for m, f in (("failures", failures), ("all", every))
    }
    rows = []
    for mode, figures, wanted in (
        ("failures", failures, 2 * (RECORDS // FAILED_SHARE)),
        ("all", every, RECORDS + RECORDS // FAILED_SHARE),
    ):
        rows += [
            row(
                BENCH,
                f"Salesforce API calls to land 10,000 request records, SFLS_REQUESTS_TAB__MODE={mode}",
                figures["calls"] * per,
                "calls",
                baseline="floor: one collections call per 200 records landed",
                baseline_value=figures["floor"] * per,
                higher_is_better=False,
            ),
            row(
                BENCH,
                f"records landed from 10,000 request records ({100 // FAILED_SHARE} % failed), mode={mode}",
                (figures["requests"] + figures["errors"]) * per,
                "records",
                baseline="requests the mode lands, and one error log per dead letter",
                baseline_value=wanted * per,
            ),
        ]
    rows += [
        row(
            BENCH,
            "data storage per 10,000 request records, mode=failures (2 KB per record)",
            storage["failures"],
            "MB",
            baseline="mode=all, same run",
            baseline_value=storage["all"],
            higher_is_better=False,
        ),
        row(
            BENCH,
            f"wall time to land 10,000 request records, mode=all ({RECORDS / max(every['seconds'], 1e-9):,.0f}/s)",
            every["seconds"] * per,
            "s",
            baseline="mode=failures, same run",
            baseline_value=failures["seconds"] * per,
            higher_is_better=False,
        ),
    ]
    added = on["calls"] - off["calls"]
    rows.append(
        row(
            BENCH,
            "Salesforce API calls the Account link adds per 10,000 account syncs "
            f"(link on, the default, against SFLS_SYNC__ACCOUNT_LINK=false: {off['calls']:,.0f})",
            added * 10_000 / ACCOUNTS,
            "calls",
            baseline="floor: one collections update per 200 accounts",
            baseline_value=math.ceil(ACCOUNTS / COLLECTION) * 10_000 / ACCOUNTS,
            higher_is_better=False,
        )
    )
    return rows


if __name__ == "__main__":
    for item in run():
        print(item)
