"""Scale-out on Kafka consumer groups: 4 syncer processes vs 1 on a 12-partition topic.

Setup: a fresh local stack; ACCOUNTS Salesforce accounts (admin insert, no CDC); the LogiSense
emulator made latency-bound with a LATENCY_MS fault on every create and update (as a remote
billing API is). Change events (one per account, keyed by account id) are produced straight to
`<prefix>.changes` with 12 partitions: the listener is not part of this figure.

Measured, for 1 and then for WORKERS `sfls syncer` processes in one consumer group (each with
`sync.concurrency` CONCURRENCY): the processes start and join first (each ready: partitions
assigned); then the events are produced,
and the clock runs until the group has committed every one. LogiSense is reset between the two
runs, so both do the same work (one account create each). Reported: events per second of each
run and the ratio (goal at least 3.5x).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.common import BenchStack, bench_stack, row
from devstack.process import ServiceProcess
from shared import kafka
from shared.events import ChangeEvent, ChangeType, Entity
from shared.kafka_reader import committed_records
from shared.settings import KafkaSettings

ACCOUNTS = int(os.environ.get("BENCH_SCALEOUT_ACCOUNTS", "2400"))
WORKERS = int(os.environ.get("BENCH_SCALEOUT_WORKERS", "4"))
PARTITIONS = 12
LATENCY_MS = 50
CONCURRENCY = 4
POINTS = {"email": "Email", "phone": "Phone", "address": "MailingAddress", "sfdcid": "Id"}


def _http(stack: BenchStack) -> requests.Session:
    session = requests.Session()
    session.verify, session.trust_env = stack.description["salesforce"]["ca_file"], False
    return session


def _reset_logisense(stack: BenchStack, http: requests.Session) -> None:
    admin = stack.description["logisense"]["admin_url"]
    http.post(f"{admin}/reset", json={"seed": 1, "catalogue_size": 200, "accounts": 0}, timeout=60).raise_for_status()
    for operation in ("create", "update"):
        rule = {"operation": operation, "latency_ms": LATENCY_MS}
        http.post(f"{admin}/faults", json=rule, timeout=30).raise_for_status()


def _events(ids: list[str]) -> list[ChangeEvent]:
    now = datetime.now(UTC)
    return [
        ChangeEvent(
            event_id=uuid.uuid4().hex,
            entity=Entity.ACCOUNT,
            change_type=ChangeType.UPDATE,
            record_id=account,
            account_id=account,
            changed_fields=("Name",),
            fields={"Name": f"Scale {n}"},
            commit_timestamp=now,
            replay_id=n + 1,
        )
        for n, account in enumerate(ids)
    ]


def one_run(stack: BenchStack, ids: list[str], workers: int, workdir: Path) -> float:
    """Events per second of `workers` syncer processes, from produce to the group's last commit."""
    http = _http(stack)
    _reset_logisense(stack, http)
    prefix = f"scale{workers}x{uuid.uuid4().hex[:6]}"
    settings = KafkaSettings(bootstrap_servers=stack.bootstrap_servers, topic_prefix=prefix, partitions=PARTITIONS)
    topics = kafka.Topics(prefix)
    wanted = {topics.changes, topics.changes_dlt, topics.requests}
    kafka.ensure_topics(settings, [s for s in topics.specs(settings) if s.name in wanted])
    config = workdir / "sfls.yaml"
    points = {name: dict(POINTS) for name in ("Billing", "Shipping", "Technical", "Other")}
    config.write_text(yaml.safe_dump({"mappings": {"contact_points": points}}))
    env = stack.env(
        SFLS_CONFIG=str(config),
        SFLS_KAFKA__TOPIC_PREFIX=prefix,
        SFLS_KAFKA__PARTITIONS=str(PARTITIONS),
        SFLS_SYNC_INTERVAL_MINUTES="0.01",
        SFLS_SYNC__CONCURRENCY=str(CONCURRENCY),
        SFLS_LOG_LEVEL="INFO",
    )
    processes: list[ServiceProcess] = []
    try:
        for n in range(workers):
            log = workdir / f"syncer-{workers}-{n}.log"
            processes.append(ServiceProcess.sfls("syncer", env=env, log=log, name=f"syncer {n + 1} of {workers}"))
        for process in processes:  # ready = partitions assigned: every one has joined the group
            process.wait_ready(120)
        time.sleep(3)  # let the group settle on its final assignment
        producer = kafka.producer(settings)
        events = _events(ids)
        started = time.monotonic()
        kafka.produce_and_flush(producer, topics.changes, ((e.key, e.to_bytes(), list(e.headers())) for e in events))
        group = f"{prefix}.syncer"
        deadline = time.monotonic() + 600
        while committed_records(settings, group, topics.changes) < len(events):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} syncer(s) did not commit every event in 600 s; see {workdir}")
            time.sleep(0.2)
        return len(events) / (time.monotonic() - started)
    finally:
        for process in processes:
            process.kill()
        http.close()


def run() -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="sfls-bench-scaleout-"))  # service logs, kept for a look afterwards
    with bench_stack() as stack:
        http = _http(stack)
        records = [{"Name": f"Scale {i}", "Type": "Customer", "LogiSense_Status__c": "Active"} for i in range(ACCOUNTS)]
        admin = stack.description["salesforce"]["admin_url"]
        answer = http.post(f"{admin}/records", json={"sobject": "Account", "records": records}, timeout=120)
        answer.raise_for_status()
        ids = list(answer.json()["ids"])
        http.close()
        single = one_run(stack, ids, 1, workdir)
        many = one_run(stack, ids, WORKERS, workdir)
    name = f"syncer scale-out ({PARTITIONS} partitions, LogiSense writes +{LATENCY_MS} ms)"
    return [
        row(name, "1 syncer process", single, "events/s"),
        row(
            name,
            f"{WORKERS} syncer processes, one consumer group (goal >= 3.5x)",
            many,
            "events/s",
            baseline="1 syncer process, same run",
            baseline_value=single,
        ),
    ]


if __name__ == "__main__":
    for line in run():
        print(line)
