"""Syncer throughput: change events over accounts through one `sfls syncer` process, against its floors.

Default scale: 100,000 change events over 10,000 accounts (10 changes each, shuffled), produced to
`sfls.changes` (12 partitions, the default) before the syncer starts; the LogiSense emulator adds 20 ms
to every request. The syncer runs as its own process (`sfls syncer`) with default settings except one:
SFLS_SYNC_INTERVAL_MINUTES=0.1, since a batch closes `interval` after its first event unless it fills up
(sync.max_batch_events, default 50,000) first, and the default 15 minutes would hold the last partial
batch that long. The clock stops when its consumer group has committed every event.

Reported: wall time, events/s, LogiSense calls and account writes per distinct account (goal 1.0: one
create each; the searches are amortised over chunks of 100), Salesforce SOQL queries and all API calls
per 10,000 changes (emulator counters), batches, the syncer's CPU seconds (user + system from
/proc/<pid>/stat, read just before it is stopped) per 10,000 events and its peak RSS.

Floors, same run, same emulators:
- Bare LogiSense writer (the wall time's baseline): the LogiSense emulator's counters after the syncer
  run give its calls per (resource, operation); the emulator is reset, the same latency re-applied, and
  a separate process makes as many calls of each kind with plain httpx (password-grant login, no sfls
  code) at the syncer's concurrency (16): the reference-table lists, the `in` searches of SEARCH_CHUNK
  values, then the Account creates, then any Account updates. A kind it cannot replay is an error, so
  the floor never does less.
- Bare Kafka consume: a plain confluent-kafka consumer, in a separate process, reading every record of
  the change topic once (all partitions assigned from the beginning, until the high watermarks).
- Naive syncer (events/s and calls per account): one search plus one write per event (no batching, no
  coalescing), run on a sample with the same concurrency and latency.
- Salesforce calls: the lower bound ceil(accounts/200) + ceil(contacts/200) (sync.soql_chunk_size ids per
  query); the bench's accounts have no contacts.

Smaller runs: `SFLS_BENCH_SYNCER_EVENTS=10000 python -m bench.bench_syncer` (accounts = events / 10).
Kafka: KAFKA_BOOTSTRAP_SERVERS when set, otherwise a broker started for the run; the emulators run
in this process (threads), the syncer and the floors in their own.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    CACHE_DIR,
    LOGISENSE_API,
    Stopwatch,
    cpu_seconds,
    in_own_process,
    logisense_http,
    peak_rss_mib,
    row,
)
from devstack.kafka import LocalBroker, fetch_jars, free_port
from devstack.logisense.app import Emulator, EmulatorConfig, EmulatorServer
from devstack.process import ServiceProcess
from devstack.salesforce.app import BackgroundEmulator
from devstack.salesforce.config import Config
from devstack.tls import LocalCA, ensure_ca
from services.syncer.lookups import SEARCH_CHUNK, SEARCH_TOP
from shared import kafka
from shared.events import ChangeEvent, ChangeType, Entity, make_event_id
from shared.kafka_reader import committed_records
from shared.logisense import LogisenseClient
from shared.retry import RetryPolicy
from shared.settings import KafkaSettings, LogisenseSettings, SyncSettings

NAME = "syncer"
GROWTH = "syncer growth (default settings, 20 ms LogiSense latency)"
# Sizes beside the main one (accounts = events / 10): wall time per event and peak RSS as the total grows.
GROWTH_SIZES = tuple(int(n) for n in os.environ.get("SFLS_BENCH_SYNCER_GROWTH", "10000,1000000").split(",") if n)
LATENCY_MS = 20
CONCURRENCY = SyncSettings().concurrency  # the default, which the syncer runs with
SF: dict[str, Any] = {
    "client_id": "bench-key",
    "client_secret": "bench-secret",
    "username": "bench@sfls",
    "password": "bench-pw",
}
LS: dict[str, Any] = {
    "client_id": "044b8ad6006845c29446b2f18e5b5909",
    "username": "bench",
    "password": "bench-password",
}
POINTS = {"email": "Email", "phone": "Phone", "address": "MailingAddress", "sfdcid": "Id"}
LOGIN_RESOURCE = "Access/Login"  # the emulator's counter label of the token endpoint
DEFAULT_MAX_BATCH = SyncSettings().max_batch_events
SOQL_CHUNK = SyncSettings().soql_chunk_size  # Salesforce ids per SOQL query (the default)
# The one non-default setting: a batch closes `interval` after its first event unless it is full first, and
# the default (15 minutes) would hold the last, partial batch that long.
INTERVAL_MINUTES = 0.1
SETTINGS_NOTE = (
    f"default settings but SFLS_SYNC_INTERVAL_MINUTES={INTERVAL_MINUTES:g}: a batch not full at "
    f"{DEFAULT_MAX_BATCH:,} events closes {INTERVAL_MINUTES * 60:g} s after its first, not 15 min"
)
# What the bare writer can replay: a list (GET R, the reference tables) of any resource, searches by the field the
# syncer searches that resource by, Account creates and updates.
SEARCH_FIELDS = {"Account": "sfdcid", "Contact": "accountId", "Contact/Point": "contactId"}
REPLAYABLE = {(resource, "search") for resource in SEARCH_FIELDS} | {("Account", "create"), ("Account", "update")}
ACCOUNT_BODY = {"accountTypeId": 1, "accountStatusTypeId": 1, "billGroupId": 1, "currencyId": 1}  # minimal valid


class _LogisenseThread:
    def __init__(self, ca: LocalCA) -> None:
        config = EmulatorConfig(catalogue_size=50, **LS)
        self.server = EmulatorServer(Emulator(config), "127.0.0.1", 0, ca.server_context())
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.server.start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> str:
        self._thread.start()
        self._ready.wait(30)
        return f"https://localhost:{self.server.port}"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


@contextmanager
def _broker(state: Path) -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    broker = LocalBroker(
        state_dir=state / "kafka", lib_dir=fetch_jars(CACHE_DIR), port=free_port(), controller_port=free_port()
    )
    broker.start(timeout=120)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@dataclass(frozen=True)
class Stack:
    """Both emulators in this process, a broker, and an HTTPS client trusting the run's CA."""

    state: Path
    ca: LocalCA
    sf_url: str
    ls_url: str
    bootstrap: str
    http: httpx.Client


@contextmanager
def emulator_stack(prefix: str) -> Iterator[Stack]:
    """The stack the syncer-driven benchmarks run against (this one and bench_opportunity.py), stopped after."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    ca = ensure_ca(state / "ca")
    sf_server = BackgroundEmulator(Config(**SF), ca.server_context())
    sf_server.start()
    ls_thread = _LogisenseThread(ca)
    ls_url = ls_thread.start()
    http = httpx.Client(verify=ca.client_context(), trust_env=False)
    try:
        with _broker(state) as bootstrap:
            yield Stack(state, ca, sf_server.url, ls_url, bootstrap, http)
    finally:
        http.close()
        ls_thread.stop()
        sf_server.stop()


def _admin(http: httpx.Client, base: str, method: str, path: str, body: Any = None) -> Any:
    response = http.request(method, f"{base}/__admin/{path}", json=body, timeout=120)
    response.raise_for_status()
    return response.json()


def seed(http: httpx.Client, sf_url: str, sobject: str, records: list[dict[str, Any]]) -> list[str]:
    """Records into the Salesforce emulator through its admin API (no change events), in parts: their ids."""
    ids: list[str] = []
    for start in range(0, len(records), 50_000):  # the admin API takes the records in parts
        ids += _admin(
            http, sf_url, "POST", "records", {"sobject": sobject, "records": records[start : start + 50_000]}
        )["ids"]
    return ids


async def _naive(settings: LogisenseSettings, events: list[ChangeEvent], names: dict[str, str]) -> float:
    """One search and one write per event, CONCURRENCY at a time; returns events/s."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    async with LogisenseClient(settings, retry=RetryPolicy(max_attempts=5, base_seconds=0.05)) as client:
        await client.login()

        async def one(event: ChangeEvent) -> None:
            async with semaphore:
                found = await client.search(
                    "Account", [{"name": "sfdcid", "operator": "eq", "value": event.account_id}]
                )
                body = {"name": names[event.account_id], "sfdcid": event.account_id}
                if found:
                    await client.update("Account", found[0]["identity"], body)
                else:
                    await client.create("Account", body)

        # Events of one account go in order (as one partition would); accounts run concurrently.
        by_account: dict[str, list[ChangeEvent]] = {}
        for event in events:
            by_account.setdefault(event.account_id, []).append(event)

        async def account(chain: list[ChangeEvent]) -> None:
            for event in chain:
                await one(event)

        watch = Stopwatch()
        await asyncio.gather(*(account(chain) for chain in by_account.values()))
        return len(events) / watch.seconds


def run() -> list[dict[str, Any]]:
    total_events = int(os.environ.get("SFLS_BENCH_SYNCER_EVENTS", "100000"))
    accounts_n = max(1, total_events // 10)
    with emulator_stack("sfls-bench-syncer-") as stack:

        def measure(size: int, where: Path, *, growth_only: bool = False) -> list[dict[str, Any]]:
            return _measure(
                total_events=size,
                accounts_n=max(1, size // 10),
                state=where,
                ca=stack.ca,
                sf_url=stack.sf_url,
                ls_url=stack.ls_url,
                bootstrap=stack.bootstrap,
                http=stack.http,
                growth_only=growth_only,
            )

        rows = measure(total_events, stack.state)
        main = next(r for r in rows if r["metric"].startswith("wall time"))
        grown = [
            row(
                GROWTH,
                f"wall time per 10,000 events at {total_events:,} events / {accounts_n:,} accounts",
                main["value"] * 10_000 / total_events,
                "s",
            ),
            row(
                GROWTH,
                f"syncer peak RSS at {total_events:,} events "
                f"({next(r['value'] for r in rows if r['metric'].startswith('batches')):.0f} batches)",
                next(r["value"] for r in rows if r["metric"] == "syncer peak RSS"),
                "MiB",
            ),
        ]
        for size in GROWTH_SIZES:
            (stack.state / str(size)).mkdir()
            grown += measure(size, stack.state / str(size), growth_only=True)
        return rows + sorted(grown, key=_size_of)


def _size_of(item: dict[str, Any]) -> tuple[int, str]:
    """Growth rows in order of size (RSS before wall time)."""
    size = int(item["metric"].split(" at ")[1].split(" ")[0].replace(",", ""))
    return size, item["metric"]


def _measure(
    *,
    total_events: int,
    accounts_n: int,
    state: Path,
    ca: LocalCA,
    sf_url: str,
    ls_url: str,
    bootstrap: str,
    http: httpx.Client,
    growth_only: bool = False,
) -> list[dict[str, Any]]:
    rng = random.Random(1)
    records = [
        {
            "Name": f"Bench Account {i:06d}",
            "Type": "Customer",
            "LogiSense_Status__c": "Active",
            "LogiSense_Bill_Group__c": "Bill Group 1st",
            "LogiSense_AR_Term__c": "Net 30",
        }
        for i in range(accounts_n)
    ]
    ids = seed(http, sf_url, "Account", records)
    names = {i: r["Name"] for i, r in zip(ids, records, strict=True)}
    order = list(range(total_events))
    rng.shuffle(order)

    def event(n: int) -> ChangeEvent:
        return ChangeEvent(
            event_id=make_event_id(f"bench:{n}", ids[n % accounts_n]),
            entity=Entity.ACCOUNT,
            change_type=ChangeType.UPDATE,
            record_id=ids[n % accounts_n],
            account_id=ids[n % accounts_n],
            changed_fields=("Name",),
            commit_timestamp=datetime.now(UTC),
        )

    naive_rate = 0.0
    naive_calls_per_account = 2 * total_events / accounts_n  # one search + one write per event
    ls_settings = LogisenseSettings(base_url=ls_url, ca_file=str(ca.ca_file), timeout_seconds=60, **LS)
    if not growth_only:
        # Baseline: naive one-request-per-event on a sample, same latency and concurrency.
        _admin(http, ls_url, "POST", "faults", {"latency_ms": LATENCY_MS})
        sampled = max(1, accounts_n // 20)
        sample = [event(n) for n in order if n % accounts_n < sampled]
        naive_rate = asyncio.run(_naive(ls_settings, sample, names))
    _admin(http, ls_url, "POST", "reset", {"seed": 1, "catalogue_size": 50})
    _admin(http, ls_url, "POST", "faults", {"latency_ms": LATENCY_MS})
    _admin(http, ls_url, "DELETE", "counters")

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    kafka_settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)  # default partitions (12)
    topics = kafka.Topics(prefix)
    kafka.ensure_topics(
        kafka_settings,
        [s for s in topics.specs(kafka_settings) if s.name in {topics.changes, topics.changes_dlt, topics.requests}],
    )
    tuning: dict[str, Any] = {"linger.ms": 50, "batch.size": 1_000_000}
    producer = kafka.producer(kafka_settings, **tuning)
    made = (event(n) for n in order)
    kafka.produce_and_flush(
        producer, topics.changes, ((e.key, e.to_bytes(), list(e.headers())) for e in made), timeout=600
    )
    sf_before = _sf_counters(http, sf_url)

    watch = Stopwatch()
    group = f"{prefix}.syncer"
    rss = 0.0
    env = syncer_env(state=state, ca=ca, sf_url=sf_url, ls_url=ls_url, bootstrap=bootstrap, prefix=prefix)
    with ServiceProcess.sfls("syncer", env=env, log=state / "syncer.log") as syncer:  # SIGTERM at the end
        deadline = time.monotonic() + 900
        while committed_records(kafka_settings, group, topics.changes) < total_events:
            syncer.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the syncer did not finish within 15 minutes; see {syncer.log}")
            rss = max(rss, peak_rss_mib(syncer.pid))
            time.sleep(0.5)
        wall = watch.seconds
        rss = max(rss, peak_rss_mib(syncer.pid))
        cpu = cpu_seconds(syncer.pid)  # just before it is stopped: start-up and every batch
        batches = syncer.metric("sfls_syncer_batches_total", {"outcome": "committed"}) or 1.0

    sf_after = _sf_counters(http, sf_url)
    counters = _admin(http, ls_url, "GET", "counters")
    (state / "logisense-counters.json").write_text(json.dumps(counters, indent=1))  # the breakdown, for a look
    requests = [r for r in counters["requests"] if r["resource"] != LOGIN_RESOURCE]
    calls = sum(r["count"] for r in requests)
    failed = sum(r["count"] for r in requests if int(r["status"]) >= 400)
    account_writes = sum(
        r["count"] for r in requests if r["resource"] == "Account" and r["operation"] in ("create", "update")
    )
    by_kind: dict[tuple[str, str], int] = {}
    for r in requests:
        by_kind[(r["resource"], r["operation"])] = by_kind.get((r["resource"], r["operation"]), 0) + r["count"]

    if growth_only:
        return [
            row(
                GROWTH,
                f"wall time per 10,000 events at {total_events:,} events / {accounts_n:,} accounts"
                + (" (one batch not full: it waits the 6 s interval)" if total_events < DEFAULT_MAX_BATCH else ""),
                wall * 10_000 / total_events,
                "s",
            ),
            row(GROWTH, f"syncer peak RSS at {total_events:,} events ({batches:.0f} batches)", rss, "MiB"),
        ]
    # Floor 1: the same LogiSense calls, made directly, on a fresh emulator with the same latency.
    _admin(http, ls_url, "POST", "reset", {"seed": 1, "catalogue_size": 50})
    _admin(http, ls_url, "POST", "faults", {"latency_ms": LATENCY_MS})
    job = WriterJob(ls_url, str(ca.ca_file), sorted(by_kind.items()), ids)
    writer_seconds, writer_calls = in_own_process(_writer_process, job)
    if writer_calls != dict(by_kind):
        raise RuntimeError(f"the bare writer made {writer_calls}, the syncer {by_kind}")
    # Floor 2: every record of the change topic read once by a plain consumer.
    consume_seconds, consumed = in_own_process(_consume_process, ConsumeJob(bootstrap, topics.changes))
    if consumed != total_events:
        raise RuntimeError(f"the bare consumer read {consumed} records of {topics.changes}, expected {total_events}")

    per_10k = 10_000 / total_events
    soql = (sf_after["query"] - sf_before["query"]) * per_10k
    sf_calls = (sf_after["total"] - sf_before["total"]) * per_10k
    contacts_n = 0  # the bench's Salesforce accounts have no contacts
    bound = (math.ceil(accounts_n / SOQL_CHUNK) + math.ceil(contacts_n / SOQL_CHUNK)) * per_10k
    bound_text = f"lower bound: ceil(accounts/{SOQL_CHUNK}) + ceil(contacts/{SOQL_CHUNK})"
    label = f"{total_events:,} events / {accounts_n:,} accounts, {LATENCY_MS} ms LogiSense latency"
    naive = "naive: 1 search + 1 write per event"
    writer = f"bare LogiSense writer: the same calls by kind, plain httpx, concurrency {CONCURRENCY}"
    result = [
        row(
            NAME,
            f"wall time ({label}; {SETTINGS_NOTE})",
            wall,
            "s",
            baseline=writer,
            baseline_value=writer_seconds,
            higher_is_better=False,
        ),
        row(
            NAME,
            f"bare Kafka consume of the change topic ({total_events:,} records, plain confluent-kafka)",
            consume_seconds,
            "s",
        ),
        row(NAME, "events per second", total_events / wall, "events/s", baseline=naive, baseline_value=naive_rate),
        row(
            NAME,
            "LogiSense calls per distinct account",
            calls / accounts_n,
            "calls",
            baseline=naive,
            baseline_value=naive_calls_per_account,
            higher_is_better=False,
        ),
        row(NAME, "LogiSense account writes per distinct account", account_writes / accounts_n, "writes"),
        row(
            NAME,
            "Salesforce SOQL queries per 10,000 changes (no contacts in this bench)",
            soql,
            "queries",
            baseline=bound_text,
            baseline_value=bound,
            higher_is_better=False,
        ),
        row(
            NAME,
            "Salesforce API calls per 10,000 changes, all kinds (no contacts in this bench)",
            sf_calls,
            "calls",
            baseline=bound_text,
            baseline_value=bound,
            higher_is_better=False,
        ),
        row(NAME, f"batches (max_batch_events {DEFAULT_MAX_BATCH:,}, the default)", batches, "batches"),
        row(NAME, "syncer CPU seconds (user + system) per 10,000 events", cpu * per_10k, "s"),
        row(NAME, "syncer peak RSS", rss, "MiB"),
    ]
    if failed:
        result.append(row(NAME, "LogiSense calls answered with an error", failed, "calls"))
    return result


def syncer_env(
    *, state: Path, ca: LocalCA, sf_url: str, ls_url: str, bootstrap: str, prefix: str, **extra: str
) -> dict[str, str]:
    """Default settings but the stack's addresses, the one named in SETTINGS_NOTE, and a caller's `extra`."""
    config = state / "sfls.yaml"
    contact_points = {t: dict(POINTS) for t in ("Billing", "Shipping", "Technical", "Other")}
    config.write_text(json.dumps({"mappings": {"contact_points": contact_points}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
    env.update(
        {
            "SFLS_CONFIG": str(config),
            "SFLS_SALESFORCE__INSTANCE_URL": sf_url,
            "SFLS_SALESFORCE__CA_FILE": str(ca.ca_file),
            "SFLS_SALESFORCE__CLIENT_ID": SF["client_id"],
            "SFLS_SALESFORCE__CLIENT_SECRET": SF["client_secret"],
            "SFLS_SALESFORCE__USERNAME": SF["username"],
            "SFLS_SALESFORCE__PASSWORD": SF["password"],
            "SFLS_LOGISENSE__BASE_URL": ls_url,
            "SFLS_LOGISENSE__CA_FILE": str(ca.ca_file),
            "SFLS_LOGISENSE__USERNAME": LS["username"],
            "SFLS_LOGISENSE__PASSWORD": LS["password"],
            "SFLS_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "SFLS_KAFKA__TOPIC_PREFIX": prefix,
            "SFLS_SYNC_INTERVAL_MINUTES": str(INTERVAL_MINUTES),
            "SFLS_OBSERVABILITY__LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return env


def stack_env(stack: Stack, prefix: str, **extra: str) -> dict[str, str]:
    """`syncer_env` for the stack's addresses under `prefix`, with a row's `extra` settings."""
    return syncer_env(
        state=stack.state,
        ca=stack.ca,
        sf_url=stack.sf_url,
        ls_url=stack.ls_url,
        bootstrap=stack.bootstrap,
        prefix=prefix,
        **extra,
    )


def sync_accounts(
    stack: Stack, accounts: list[str], prefix: str, env: dict[str, str], *, origin: str, log: str = "syncer.log"
) -> float:
    """A RESYNC event per account and one `sfls syncer` (with `env`) until its group committed them all; seconds."""
    settings = KafkaSettings(bootstrap_servers=stack.bootstrap, topic_prefix=prefix)
    topics = kafka.Topics(prefix)
    kafka.ensure_topics(
        settings, [s for s in topics.specs(settings) if s.name in {topics.changes, topics.changes_dlt, topics.requests}]
    )
    now = datetime.now(UTC)
    events = (
        ChangeEvent(
            event_id=make_event_id(f"{origin}:{account}", account),
            entity=Entity.ACCOUNT,
            change_type=ChangeType.RESYNC,
            record_id=account,
            account_id=account,
            commit_timestamp=now,
        )
        for account in accounts
    )
    tuning: dict[str, Any] = {"linger.ms": 50, "batch.size": 1_000_000}
    producer = kafka.producer(settings, **tuning)
    kafka.produce_and_flush(producer, topics.changes, ((e.key, e.to_bytes(), list(e.headers())) for e in events), 600)
    with ServiceProcess.sfls("syncer", env=env, log=stack.state / log) as syncer:
        watch = Stopwatch()
        while committed_records(settings, f"{prefix}.syncer", topics.changes) < len(accounts):
            syncer.check_alive()
            if watch.seconds > 1800:
                raise RuntimeError(f"the syncer did not bring LogiSense in step within 30 minutes; see {syncer.log}")
            time.sleep(1.0)
        return watch.seconds


@dataclass(frozen=True)
class WriterJob:
    """What the bare writer process needs (pickled to it)."""

    ls_url: str
    ca_file: str
    calls: list[tuple[tuple[str, str], int]]  # ((resource, operation), count), as the emulator counted them
    sf_ids: list[str]  # the bench's Salesforce account ids: the creates' and searches' values


def _writer_process(job: WriterJob) -> tuple[float, dict[tuple[str, str], int]]:
    return asyncio.run(_writer(job))


async def _writer(job: WriterJob) -> tuple[float, dict[tuple[str, str], int]]:
    """The syncer's LogiSense calls, as many of each (resource, operation), with plain httpx at CONCURRENCY:
    the lists (reference tables), the searches (`in` over SEARCH_CHUNK values), then the creates, then the
    updates of what was created.
    Raises on a kind it cannot replay, so the floor never silently does less. (seconds, calls by kind)."""
    unknown = [kind for kind, _ in job.calls if kind not in REPLAYABLE and kind[1] != "list"]
    if unknown:
        raise RuntimeError(f"the bare writer cannot replay {unknown} (the syncer's calls: {job.calls})")
    wanted = dict(job.calls)
    made: dict[tuple[str, str], int] = {}
    created: list[int] = []
    semaphore = asyncio.Semaphore(CONCURRENCY)
    ids = job.sf_ids

    async with logisense_http(job.ls_url, job.ca_file, LS) as (http, headers):

        async def call(kind: tuple[str, str], method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
            async with semaphore:
                response = await http.request(method, f"/{LOGISENSE_API}/{path}", json=body, headers=headers)
            response.raise_for_status()
            made[kind] = made.get(kind, 0) + 1
            answer: dict[str, Any] = response.json()
            return answer

        def search(resource: str, n: int) -> Coroutine[Any, Any, dict[str, Any]]:
            field = SEARCH_FIELDS[resource]
            start = n * SEARCH_CHUNK % max(1, len(ids))
            values: list[Any] = (
                [ids[(start + k) % len(ids)] for k in range(SEARCH_CHUNK)]
                if field == "sfdcid"
                else list(range(n * SEARCH_CHUNK + 1, (n + 1) * SEARCH_CHUNK + 1))
            )
            query = {"search": [{"name": field, "operator": "in", "value": values}], "top": SEARCH_TOP}
            return call((resource, "search"), "POST", f"{resource}/Search", {"query": query})

        async def create(n: int) -> None:
            body = {**ACCOUNT_BODY, "name": f"Bare writer {n:06d}", "sfdcid": ids[n % len(ids)]}
            answer = await call(("Account", "create"), "POST", "Account", body)
            created.append(int(answer["results"]["items"][0]["identity"]))

        async def update(n: int) -> None:
            if not created:
                raise RuntimeError("the bare writer replays Account updates on accounts it created, and made none")
            identity = created[n % len(created)]
            await call(("Account", "update"), "PUT", f"Account/{identity}", {"name": f"Bare writer {n:06d} v2"})

        watch = Stopwatch()
        lists = [call((r, op), "GET", r, None) for (r, op), count in job.calls if op == "list" for _ in range(count)]
        await asyncio.gather(*lists)
        searches = [search(r, n) for (r, op), count in job.calls if op == "search" for n in range(count)]
        await asyncio.gather(*searches)
        await asyncio.gather(*(create(n) for n in range(wanted.get(("Account", "create"), 0))))
        await asyncio.gather(*(update(n) for n in range(wanted.get(("Account", "update"), 0))))
        return watch.seconds, made


@dataclass(frozen=True)
class ConsumeJob:
    bootstrap: str
    topic: str


def _consume_process(job: ConsumeJob) -> tuple[float, int]:
    """Every record of the topic once, by a plain confluent-kafka consumer (no sfls code): all partitions
    assigned from the beginning, read until each reaches its high watermark; (seconds, records)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": job.bootstrap,
            "group.id": f"bare-{uuid.uuid4().hex[:8]}",  # required by librdkafka; nothing is committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        partitions = sorted(consumer.list_topics(job.topic, timeout=30).topics[job.topic].partitions)
        high = {p: consumer.get_watermark_offsets(TopicPartition(job.topic, p), timeout=30)[1] for p in partitions}
        pending = {p for p in partitions if high[p] > 0}
        watch = Stopwatch()
        consumer.assign([TopicPartition(job.topic, p, OFFSET_BEGINNING) for p in pending])
        records = 0
        while pending:
            for message in consumer.consume(10_000, 1.0):
                error = message.error()
                if error is None:
                    records += 1
                    offset = message.offset()
                    if offset is not None and offset + 1 >= high[message.partition()]:
                        pending.discard(message.partition())
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                else:
                    raise RuntimeError(f"bare consumer: {error}")
        return watch.seconds, records
    finally:
        consumer.close()


def _sf_counters(http: httpx.Client, sf_url: str) -> dict[str, Any]:
    """The Salesforce emulator's API call counters (`total`: REST calls, token requests and CometD not counted)."""
    counters: dict[str, Any] = _admin(http, sf_url, "GET", "counters")
    return counters


if __name__ == "__main__":
    for item in run():
        print(item)
