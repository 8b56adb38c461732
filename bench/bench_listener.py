"""Listener throughput: CDC messages per second from the emulator to committed Kafka records.

Setup: the Salesforce emulator as its own process; Kafka from KAFKA_BOOTSTRAP_SERVERS when set
(the dev broker), otherwise a fresh local stack. N CDC messages (Account Name updates, one
record each, made through REST sObject Collections) are retained in the emulator before the
listener starts with replay -2, so it drains a backlog as fast as it can: CometD long polls ->
parse/filter/normalize -> one Kafka transaction per batch (events + checkpoint) -> committed.

Measured: messages checkpointed per second between the first committed checkpoint and the
last one (start-up excluded). Baseline in the same run: a raw confluent-kafka idempotent
producer sending the very same record bytes (the committed change events, read back) to a
fresh topic and flushing.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
from prometheus_client import REGISTRY

from bench.common import Stopwatch, bench_stack, row
from devstack.kafka import free_port
from devstack.stack import EmulatorProcess
from devstack.tls import ensure_ca
from shared import kafka
from shared.settings import KafkaSettings, ListenerSettings, ObservabilitySettings, SalesforceSettings, Settings

MESSAGES = int(os.environ.get("BENCH_LISTENER_MESSAGES", "20000"))
ACCOUNTS = 200
CHANNEL = "/data/AccountChangeEvent"
CREDENTIALS = {"client_id": "bench-key", "client_secret": "bench-secret", "username": "bench@sfls", "password": "pw"}


def _emulator(state_dir: Path) -> tuple[EmulatorProcess, str]:
    """The Salesforce emulator as its own process (as `sfls devstack up` runs it), answering; and its CA file."""
    ca = ensure_ca(state_dir)
    args = ["--cometd-timeout-ms", "2000", "--log-level", "WARNING"]
    for key, value in CREDENTIALS.items():
        args += [f"--{key.replace('_', '-')}", value]
    emulator = EmulatorProcess("salesforce", free_port(), state_dir, tuple(args))
    emulator.start(ca.ca_file)
    return emulator, str(ca.ca_file)


def _load_backlog(url: str, ca_file: str, api_version: str) -> int:
    """Create ACCOUNTS accounts, then update them in collections until MESSAGES CDC messages exist."""
    http = requests.Session()
    http.verify, http.trust_env = ca_file, False
    ids = http.post(
        f"{url}/__admin/records",
        json={"sobject": "Account", "records": [{"Name": f"Bench {i}"} for i in range(ACCOUNTS)]},
        timeout=60,
    ).json()["ids"]
    form = {"grant_type": "password", **CREDENTIALS}
    token = http.post(f"{url}/services/oauth2/token", data=form, timeout=30).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    made = 0
    round_no = 0
    while made < MESSAGES:
        size = min(ACCOUNTS, MESSAGES - made)
        records = [
            {"attributes": {"type": "Account"}, "Id": ids[i], "Name": f"Bench {i} round {round_no}"}
            for i in range(size)
        ]
        answer = http.patch(
            f"{url}/services/data/v{api_version}/composite/sobjects",
            json={"allOrNone": True, "records": records},
            headers=headers,
            timeout=60,
        )
        answer.raise_for_status()
        made += size
        round_no += 1
    events = http.get(f"{url}/__admin/cdc/events", timeout=60).json()
    http.close()
    return int(events["last"])


def _listener(settings: Settings, last_replay: int) -> tuple[float, int]:
    """Run the listener until it checkpointed `last_replay`; return (seconds, messages) after its first commit."""
    from services.listener.app import run_listener

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    errors: list[BaseException] = []

    def main() -> None:
        try:
            loop.run_until_complete(run_listener(settings, stop))
        except BaseException as exc:  # noqa: BLE001 - reported by the measuring thread
            errors.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()

    def checkpoint() -> float:
        return REGISTRY.get_sample_value("sfls_listener_checkpoint_replay_id", {"channel": CHANNEL}) or 0.0

    first_seen = 0.0
    started = 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not errors:
        current = checkpoint()
        if current and not first_seen:
            first_seen, started = current, time.perf_counter()
        if current >= last_replay:
            break
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    if errors:
        raise errors[0]
    if checkpoint() < last_replay:
        raise RuntimeError("the listener did not drain the backlog in time")
    return elapsed, int(last_replay - first_seen)


def _raw_producer(settings: KafkaSettings, values: list[tuple[bytes | None, bytes | None]]) -> float:
    topic = f"{settings.topic_prefix}.raw"
    kafka.ensure_topics(settings, [kafka.TopicSpec(topic, settings.partitions)])
    producer = kafka.producer(settings)
    watch = Stopwatch()
    for key, value in values:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    return watch.seconds


def _committed_values(settings: KafkaSettings) -> list[tuple[bytes | None, bytes | None]]:
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

    topic = kafka.Topics(settings.topic_prefix).changes
    reader = kafka.consumer(settings, f"bench-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": True})
    parts = sorted(reader.list_topics(topic, timeout=10).topics[topic].partitions)
    reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    pending, found = set(parts), []
    while pending:
        message = reader.poll(1.0)
        if message is None:
            continue
        error = message.error()
        if error is not None and error.code() == KafkaError._PARTITION_EOF:
            pending.discard(message.partition())
        elif error is None:
            found.append((message.key(), message.value()))
    reader.close()
    return found


def run() -> list[dict[str, Any]]:
    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            bootstrap = stack.enter_context(bench_stack()).bootstrap_servers
        state_dir = Path(tempfile.mkdtemp(prefix="sfls-bench-listener-"))
        emulator, ca_file = _emulator(state_dir)
        stack.callback(emulator.stop)
        url = emulator.url
        salesforce = SalesforceSettings(instance_url=url, ca_file=ca_file, **CREDENTIALS)
        kafka_settings = KafkaSettings(
            bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}", partitions=3
        )
        last_replay = _load_backlog(url, ca_file, salesforce.api_version)
        settings = Settings(
            kafka=kafka_settings,
            salesforce=salesforce.model_copy(update={"channels": (CHANNEL,)}),
            listener=ListenerSettings(transactional_id=f"bench-{uuid.uuid4().hex[:8]}", initial_replay=-2),
            observability=ObservabilitySettings(log_level="WARNING"),
        )
        seconds, messages = _listener(settings, last_replay)
        listener_rate = messages / seconds
        values = _committed_values(kafka_settings)
        raw_seconds = _raw_producer(kafka_settings, values)
        raw_rate = len(values) / raw_seconds
    print(f"listener: {messages} CDC messages in {seconds:.2f}s = {listener_rate:,.0f}/s")
    print(f"raw producer: {len(values)} records in {raw_seconds:.2f}s = {raw_rate:,.0f}/s")
    print(f"ratio listener/raw: {listener_rate / raw_rate:.3f}")
    return [
        row(
            "listener",
            "CDC messages to committed Kafka records (backlog drain, 1 record each)",
            listener_rate,
            "msg/s",
            baseline="raw confluent-kafka producer, same bytes",
            baseline_value=raw_rate,
        )
    ]


if __name__ == "__main__":
    for item in run():
        print(item)
