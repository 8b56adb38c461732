"""Syncer throughput: change events over accounts through one `sfls syncer` process.

Default scale: 100,000 change events over 10,000 accounts (10 changes each, shuffled), produced to
`sfls.changes` before the syncer starts; the LogiSense emulator adds 20 ms to every request. The
syncer runs as its own process (`sfls syncer`, one batch: interval 0.1 min, max batch 100,000) and
the clock stops when its consumer group has committed every event.

Reported: wall time, events/s, LogiSense calls per distinct account (goal 1.0: one create each; the
searches are amortised over chunks of 100), SOQL queries per batch, the syncer's peak RSS. Baseline:
a naive syncer that makes one search plus one write per event (no batching, no coalescing), run on
a sample with the same concurrency and latency; its events/s and calls per account are the
comparison.

Smaller runs: `SFLS_BENCH_SYNCER_EVENTS=10000 python -m bench.bench_syncer` (accounts = events / 10).
Kafka: KAFKA_BOOTSTRAP_SERVERS when set, otherwise a broker started for the run; the emulators run
in this process (threads), the syncer in its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import CACHE_DIR, Stopwatch, peak_rss_mib, row
from devstack.kafka import LocalBroker, fetch_jars, free_port
from devstack.logisense.app import Emulator, EmulatorConfig, EmulatorServer
from devstack.process import ServiceProcess
from devstack.salesforce.app import BackgroundEmulator
from devstack.salesforce.config import Config
from devstack.tls import LocalCA, ensure_ca
from shared import kafka
from shared.events import ChangeEvent, ChangeType, Entity, make_event_id
from shared.kafka_reader import committed_records
from shared.logisense import LogisenseClient
from shared.retry import RetryPolicy
from shared.settings import KafkaSettings, LogisenseSettings

NAME = "syncer"
LATENCY_MS = 20
CONCURRENCY = 16
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


def _admin(http: httpx.Client, base: str, method: str, path: str, body: Any = None) -> Any:
    response = http.request(method, f"{base}/__admin/{path}", json=body, timeout=120)
    response.raise_for_status()
    return response.json()


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
    state = Path(tempfile.mkdtemp(prefix="sfls-bench-syncer-"))
    ca = ensure_ca(state / "ca")
    sf_server = BackgroundEmulator(Config(**SF), ca.server_context())
    sf_server.start()
    ls_thread = _LogisenseThread(ca)
    ls_url = ls_thread.start()
    http = httpx.Client(verify=ca.client_context(), trust_env=False)
    try:
        with _broker(state) as bootstrap:
            return _measure(
                total_events=total_events,
                accounts_n=accounts_n,
                state=state,
                ca=ca,
                sf_url=sf_server.url,
                ls_url=ls_url,
                bootstrap=bootstrap,
                http=http,
            )
    finally:
        http.close()
        ls_thread.stop()
        sf_server.stop()


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
    ids = _admin(http, sf_url, "POST", "records", {"sobject": "Account", "records": records})["ids"]
    names = {i: r["Name"] for i, r in zip(ids, records, strict=True)}
    events = [
        ChangeEvent(
            event_id=make_event_id(f"bench:{n}", ids[n % accounts_n]),
            entity=Entity.ACCOUNT,
            change_type=ChangeType.UPDATE,
            record_id=ids[n % accounts_n],
            account_id=ids[n % accounts_n],
            changed_fields=("Name",),
            commit_timestamp=datetime.now(UTC),
        )
        for n in range(total_events)
    ]
    rng.shuffle(events)

    # Baseline: naive one-request-per-event on a sample, same latency and concurrency.
    ls_settings = LogisenseSettings(base_url=ls_url, ca_file=str(ca.ca_file), timeout_seconds=60, **LS)
    _admin(http, ls_url, "POST", "faults", {"latency_ms": LATENCY_MS})
    sample = [e for e in events if e.account_id in set(ids[: max(1, accounts_n // 20)])]
    naive_rate = asyncio.run(_naive(ls_settings, sample, names))
    naive_calls_per_account = 2 * total_events / accounts_n  # one search + one write per event
    _admin(http, ls_url, "POST", "reset", {"seed": 1, "catalogue_size": 50})
    _admin(http, ls_url, "POST", "faults", {"latency_ms": LATENCY_MS})
    _admin(http, ls_url, "DELETE", "counters")

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    kafka_settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=12)
    topics = kafka.Topics(prefix)
    kafka.ensure_topics(
        kafka_settings,
        [s for s in topics.specs(kafka_settings) if s.name in {topics.changes, topics.changes_dlt, topics.requests}],
    )
    tuning: dict[str, Any] = {"linger.ms": 50, "batch.size": 1_000_000}
    producer = kafka.producer(kafka_settings, **tuning)
    kafka.produce_and_flush(
        producer, topics.changes, ((e.key, e.to_bytes(), list(e.headers())) for e in events), timeout=120
    )
    sf_queries_before = _soql_count(http, sf_url)

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
            "SFLS_LOGISENSE__TIMEOUT_SECONDS": "60",
            "SFLS_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "SFLS_KAFKA__TOPIC_PREFIX": prefix,
            "SFLS_SYNC_INTERVAL_MINUTES": "0.1",
            "SFLS_SYNC__MAX_BATCH_EVENTS": str(max(total_events, 1)),
            "SFLS_SYNC__CONCURRENCY": str(CONCURRENCY),
            "SFLS_OBSERVABILITY__LOG_LEVEL": "WARNING",
        }
    )
    watch = Stopwatch()
    group = f"{prefix}.syncer"
    rss = 0.0
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
        batches = syncer.metric("sfls_syncer_batches_total", {"outcome": "committed"}) or 1.0

    counters = _admin(http, ls_url, "GET", "counters")
    calls = sum(r["count"] for r in counters["requests"] if r["resource"] != "Access/Login")
    account_writes = sum(
        r["count"]
        for r in counters["requests"]
        if r["resource"] == "Account" and r["operation"] in ("create", "update")
    )
    soql = _soql_count(http, sf_url) - sf_queries_before
    events_per_second = total_events / wall
    label = f"{total_events:,} events / {accounts_n:,} accounts, {LATENCY_MS} ms LogiSense latency"
    return [
        row(NAME, f"wall time ({label})", wall, "s"),
        row(
            NAME,
            "events per second",
            events_per_second,
            "events/s",
            baseline="naive: 1 search + 1 write per event",
            baseline_value=naive_rate,
        ),
        row(
            NAME,
            "LogiSense calls per distinct account",
            calls / accounts_n,
            "calls",
            baseline="naive: 1 search + 1 write per event",
            baseline_value=naive_calls_per_account,
            higher_is_better=False,
        ),
        row(NAME, "LogiSense account writes per distinct account", account_writes / accounts_n, "writes"),
        row(NAME, "SOQL queries per batch", soql / batches, "queries"),
        row(NAME, "batches", batches, "batches"),
        row(NAME, "syncer peak RSS", rss, "MiB"),
    ]


def _soql_count(http: httpx.Client, sf_url: str) -> int:
    return int(_admin(http, sf_url, "GET", "counters")["query"])


if __name__ == "__main__":
    for item in run():
        print(item)
