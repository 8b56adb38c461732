"""End-to-end latency with streaming micro-batches: Salesforce commit -> LogiSense write.

Setup: a fresh local stack (Kafka and both emulators as processes), `sfls listener` and
`sfls syncer` as processes with `SFLS_SYNC_INTERVAL_MINUTES=0` (each batch is what one consume
call returns). ACCOUNTS accounts are created in LogiSense by a warm-up round first.

Load: a steady RATE changes per second for SECONDS seconds, made through the Salesforce emulator's
REST API (sObject Collections of RATE/10 Account renames every 100 ms, each name unique).
Measured per change: the LogiSense account's `updated` timestamp (milliseconds, same machine
clock) minus the time the REST call that made the change was sent (an upper bound of the commit).
Reported: p50 and p99 of those delays; goal p99 under 2 s. A second phase on the same stack runs
RATE_HIGH changes per second over ACCOUNTS_HIGH accounts (each renamed every few seconds, so a change
is rarely overwritten before it is seen); goal p99 under 5 s. Both with the default settings (12
partitions) but the interval.

Baseline: the original package's scheduler pushes waiting requests every 15 minutes, so a change
waits 7.5 minutes on average and up to 15 minutes (900 s), whatever the load. That is a
property of its design, not measured here.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.common import BenchStack, bench_stack, percentile, row
from devstack.process import ServiceProcess

RATE = int(os.environ.get("BENCH_LATENCY_RATE", "100"))  # changes per second
SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "30"))
ACCOUNTS = int(os.environ.get("BENCH_LATENCY_ACCOUNTS", "500"))
RATE_HIGH = int(os.environ.get("BENCH_LATENCY_RATE_HIGH", "1000"))
ACCOUNTS_HIGH = int(os.environ.get("BENCH_LATENCY_ACCOUNTS_HIGH", "5000"))
SCHEDULER_WORST_SECONDS = 15 * 60.0
SCHEDULER_AVERAGE_SECONDS = SCHEDULER_WORST_SECONDS / 2
POINTS = {"email": "Email", "phone": "Phone", "address": "MailingAddress", "sfdcid": "Id"}


class Http:
    """HTTPS to both emulators with the stack's CA; a Salesforce token for REST writes."""

    def __init__(self, description: dict[str, Any]) -> None:
        self.sf = description["salesforce"]
        self.ls = description["logisense"]
        self.session = requests.Session()
        self.session.verify, self.session.trust_env = self.sf["ca_file"], False
        form = {"grant_type": "password", **{k: self.sf[k] for k in ("client_id", "client_secret", "username")}}
        form["password"] = self.sf["password"]
        token = self.session.post(f"{self.sf['instance_url']}/services/oauth2/token", data=form, timeout=30)
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        self.rest = f"{self.sf['instance_url']}/services/data/v{self.sf['api_version']}"

    def seed_accounts(self, count: int) -> list[str]:
        records = [{"Name": f"Latency {i}", "Type": "Customer", "LogiSense_Status__c": "Active"} for i in range(count)]
        answer = self.session.post(
            f"{self.sf['admin_url']}/records", json={"sobject": "Account", "records": records}, timeout=60
        )
        answer.raise_for_status()
        return list(answer.json()["ids"])

    def rename(self, names: dict[str, str]) -> None:
        records = [{"attributes": {"type": "Account"}, "Id": i, "Name": n} for i, n in names.items()]
        answer = self.session.patch(
            f"{self.rest}/composite/sobjects",
            json={"allOrNone": True, "records": records},
            headers=self.headers,
            timeout=30,
        )
        answer.raise_for_status()

    def logisense_accounts(self) -> list[dict[str, Any]]:
        answer = self.session.get(f"{self.ls['admin_url']}/accounts", timeout=30)
        answer.raise_for_status()
        return list(answer.json()["items"])


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def measure(stack: BenchStack, workdir: Path, rate: int, accounts: int) -> tuple[list[float], int, float]:
    """Run the pipeline under steady load; return (delays in seconds, changes sent, achieved rate)."""
    http = Http(stack.description)
    ids = http.seed_accounts(accounts)
    config = workdir / "sfls.yaml"
    points = {name: dict(POINTS) for name in ("Billing", "Shipping", "Technical", "Other")}
    config.write_text(yaml.safe_dump({"mappings": {"contact_points": points}}))
    env = stack.env(
        SFLS_CONFIG=str(config),
        SFLS_SYNC_INTERVAL_MINUTES="0",
        SFLS_KAFKA__TOPIC_PREFIX=f"lat{uuid.uuid4().hex[:8]}",
        SFLS_LISTENER__TRANSACTIONAL_ID=f"lat-{uuid.uuid4().hex[:8]}",
        SFLS_LOG_LEVEL="WARNING",
    )
    processes: list[ServiceProcess] = []
    try:
        for command in ("listener", "syncer"):
            processes.append(ServiceProcess.sfls(command, env=env, log=workdir / f"{command}.log"))
        for process in processes:
            process.wait_ready(90)
        # Warm-up: every account created in LogiSense, so the measured writes are steady-state updates.
        for start in range(0, len(ids), 200):
            http.rename({i: f"Warm {i}" for i in ids[start : start + 200]})
        deadline = time.monotonic() + 180
        warm = {f"Warm {i}" for i in ids}
        while sum(1 for a in http.logisense_accounts() if str(a.get("name", "")) in warm) < len(ids):
            if time.monotonic() > deadline:
                raise RuntimeError("the warm-up round did not reach LogiSense in 180 s")
            time.sleep(1)
        return _steady_load(http, ids, rate)
    finally:
        for process in processes:
            process.kill()


def _steady_load(http: Http, ids: list[str], rate: int) -> tuple[list[float], int, float]:
    sent: dict[str, float] = {}  # unique name -> time its REST call was sent
    lock = threading.Lock()
    done = threading.Event()
    per_tick = max(1, rate // 10)
    elapsed: list[float] = []

    def load() -> None:
        tick, cursor, started = 0, 0, time.monotonic()
        while time.monotonic() - started < SECONDS:
            names: dict[str, str] = {}
            for _ in range(per_tick):
                account = ids[cursor % len(ids)]
                names[account] = f"Lat {rate} {cursor}"
                cursor += 1
            at = time.time()
            with lock:
                sent.update(dict.fromkeys(names.values(), at))
            http.rename(names)
            tick += 1
            time.sleep(max(0.0, started + tick * 0.1 - time.monotonic()))
        elapsed.append(time.monotonic() - started)
        done.set()

    writer = threading.Thread(target=load, name="load")
    writer.start()
    delays: dict[str, float] = {}
    quiet_deadline: float | None = None
    while True:
        for account in http.logisense_accounts():
            name = str(account.get("name", ""))
            with lock:
                at = sent.get(name)
            if at is not None and name not in delays and account.get("updated"):
                delays[name] = _epoch(str(account["updated"])) - at
        if done.is_set():
            quiet_deadline = quiet_deadline or time.monotonic() + 30
            if len(delays) >= len(sent) or time.monotonic() > quiet_deadline:
                break
        time.sleep(1.0)  # the delay comes from LogiSense's `updated`, not from when we look; looking costs it CPU
    writer.join()
    return list(delays.values()), len(sent), len(sent) / elapsed[0]  # the rate the load really achieved


def run() -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="sfls-bench-latency-"))  # service logs, kept for a look afterwards
    rows: list[dict[str, Any]] = []
    with bench_stack() as stack:
        phases = (
            ("latency (interval 0)", RATE, ACCOUNTS, 2.0),
            (f"latency (interval 0, {RATE_HIGH:,} changes/s)", RATE_HIGH, ACCOUNTS_HIGH, 5.0),
        )
        for name, rate, accounts, goal in phases:
            phase = workdir / f"rate-{rate}"
            phase.mkdir()
            delays, sent, achieved = measure(stack, phase, rate, accounts)
            if not delays:
                raise RuntimeError(f"no change reached LogiSense at {rate} changes/s")
            rows += _rows(name, delays, sent, achieved, accounts=accounts, goal=goal)
    return rows


def _rows(
    name: str, delays: list[float], sent: int, rate: float, *, accounts: int, goal: float
) -> list[dict[str, Any]]:
    # A change overwritten by the next one before we looked is not observed; say how many were.
    observed = 100.0 * len(delays) / sent
    return [
        row(
            name,
            "p50 Salesforce commit -> LogiSense write",
            percentile(delays, 50),
            "s",
            baseline="original package, 15-minute scheduler (average wait)",
            baseline_value=SCHEDULER_AVERAGE_SECONDS,
            higher_is_better=False,
        ),
        row(
            name,
            f"p99 Salesforce commit -> LogiSense write (goal < {goal:g} s)",
            percentile(delays, 99),
            "s",
            baseline="original package, 15-minute scheduler (worst case)",
            baseline_value=SCHEDULER_WORST_SECONDS,
            higher_is_better=False,
        ),
        row(name, f"steady load through Salesforce REST ({SECONDS:.0f} s, {accounts:,} accounts)", rate, "changes/s"),
        row(name, "changes observed in LogiSense", observed, "%"),
    ]


if __name__ == "__main__":
    for line in run():
        print(line)
