"""Listener throughput: CDC messages per second from the emulator to committed Kafka records, against its floor.

Setup: the Salesforce emulator as its own process; Kafka from KAFKA_BOOTSTRAP_SERVERS when set
(the dev broker), otherwise a fresh local stack. N CDC messages (Account Name updates, one
record each, made through REST sObject Collections) are retained in the emulator before the
listener starts with replay -2, so it drains a backlog as fast as it can: CometD long polls ->
parse/filter/normalize -> one Kafka transaction per batch (events + checkpoint) -> committed.
The listener runs with default settings (12 partitions, both default channels, batches of 200)
except initial_replay -2 (to read the retained backlog) and a transactional id of its own.

Measured: messages checkpointed per second between the first committed checkpoint and the
last one (start-up excluded); CPU seconds per 10,000 messages (time.process_time() of this
process around the listener's run, start-up included: the listener runs here in a thread, the
emulator and the broker in other processes); Salesforce REST API calls per 10,000 changes
(emulator counters; token requests and CometD not counted) beside the lower bound, 0 (Account
updates need no contact resolution).

Growth: after those rows, 180,000 more updates make a 200,000-message backlog (`BENCH_LISTENER_LARGE_MESSAGES`)
that a fresh default listener (CometD) drains; its rate and CPU per 10,000 are set against the 20,000 drain.

Floor (the main ratio), same run, same emulator process and backlog: a bare CometD drain in a
separate process, plain httpx (no sfls code, no aiosfstream): OAuth password grant, handshake,
subscribe to the Account channel with replay -2, then /meta/connect long polls until every message
of the backlog arrived, the events thrown away; messages per second from the first received reply.
Second baseline: a raw confluent-kafka idempotent producer sending the very same record bytes (the
committed change events, read back) to a fresh topic and flushing, the broker's limit.

The Pub/Sub API (SFLS_SALESFORCE__TRANSPORT=pubsub) drains the same backlog from the same emulator process
(its gRPC endpoint), the listener's only changed settings being the transport and initial_replay -2, with a
fresh topic prefix and transactional id. Its floor, same run: a bare gRPC drain in a separate process,
grpc.aio with the contract's message classes only (no sfls code): OAuth password grant, Subscribe to the
Account topic with EARLIEST, 100 events requested and topped up at half like the listener, until every event
of the backlog arrived, the payloads thrown away undecoded. CPU seconds per 10,000 messages for each transport.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import requests

from bench.common import Stopwatch, bench_stack, in_own_process, row
from devstack.kafka import free_port
from devstack.stack import EmulatorProcess
from devstack.tls import ensure_ca
from shared import kafka
from shared.settings import KafkaSettings, ListenerSettings, ObservabilitySettings, SalesforceSettings, Settings

MESSAGES = int(os.environ.get("BENCH_LISTENER_MESSAGES", "20000"))
# The growth row: the same listener (defaults, CometD) drains a backlog this large, after the rows above.
LARGE = int(os.environ.get("BENCH_LISTENER_LARGE_MESSAGES", "200000"))
ACCOUNTS = 200
CHANNEL = "/data/AccountChangeEvent"
CREDENTIALS = {"client_id": "bench-key", "client_secret": "bench-secret", "username": "bench@sfls", "password": "pw"}


def _emulator(state_dir: Path) -> tuple[EmulatorProcess, str, int]:
    """The Salesforce emulator as its own process (as `sfls devstack up` runs it), answering; its CA file and
    Pub/Sub port."""
    ca = ensure_ca(state_dir)
    pubsub_port = free_port()
    args = ["--cometd-timeout-ms", "2000", "--log-level", "WARNING", "--pubsub-port", str(pubsub_port)]
    for key, value in CREDENTIALS.items():
        args += [f"--{key.replace('_', '-')}", value]
    emulator = EmulatorProcess("salesforce", free_port(), state_dir, tuple(args), (pubsub_port,))
    emulator.start(ca.ca_file)
    return emulator, str(ca.ca_file), pubsub_port


def _load_backlog(url: str, ca_file: str, api_version: str) -> tuple[int, int, list[str]]:
    """Create ACCOUNTS accounts, then update them in collections until MESSAGES CDC messages exist;
    (the last replay id, the messages retained on CHANNEL, the account ids)."""
    http = requests.Session()
    http.verify, http.trust_env = ca_file, False
    ids: list[str] = http.post(
        f"{url}/__admin/records",
        json={"sobject": "Account", "records": [{"Name": f"Bench {i}"} for i in range(ACCOUNTS)]},
        timeout=60,
    ).json()["ids"]
    _update_rounds(http, url, api_version, ids, MESSAGES, first_round=0)
    events = http.get(f"{url}/__admin/cdc/events", timeout=60).json()
    http.close()
    return int(events["last"]), sum(1 for e in events["events"] if CHANNEL in e["channels"]), ids


def _more_backlog(url: str, ca_file: str, api_version: str, ids: list[str], messages: int) -> int:
    """`messages` more Account updates (one CDC message each, rounds numbered after the first load's)."""
    with requests.Session() as http:
        http.verify, http.trust_env = ca_file, False
        _update_rounds(http, url, api_version, ids, messages, first_round=10**6)
    return messages


def _update_rounds(
    http: requests.Session, url: str, api_version: str, ids: list[str], messages: int, *, first_round: int
) -> None:
    form = {"grant_type": "password", **CREDENTIALS}
    token = http.post(f"{url}/services/oauth2/token", data=form, timeout=30).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    made = 0
    round_no = first_round
    while made < messages:
        size = min(ACCOUNTS, messages - made)
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


def _listener(settings: Settings, last_replay: int) -> tuple[float, int, float]:
    """Run the listener until it checkpointed `last_replay`: (seconds, messages) after its first commit, and
    the CPU seconds of this process over the whole run (start-up included)."""
    from services.listener.app import run_listener
    from services.listener.metrics import CHECKPOINT_REPLAY_ID

    CHECKPOINT_REPLAY_ID.labels(channel=CHANNEL).set(0)  # an earlier run in this process left its own

    cpu_started = time.process_time()
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
        """The gauge alone: REGISTRY.get_sample_value would collect every metric (the process collector reads
        /proc) on each poll, taking the GIL from the listener it measures."""
        for metric in CHECKPOINT_REPLAY_ID.collect():
            for sample in metric.samples:
                if sample.labels == {"channel": CHANNEL}:
                    return float(sample.value)
        return 0.0

    first_seen = 0.0
    started = 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not errors:
        current = checkpoint()
        if current and not first_seen:
            first_seen, started = current, time.perf_counter()
        if current >= last_replay:
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    cpu = time.process_time() - cpu_started
    if errors:
        raise errors[0]
    if checkpoint() < last_replay:
        raise RuntimeError("the listener did not drain the backlog in time")
    return elapsed, int(last_replay - first_seen), cpu


@dataclass(frozen=True)
class DrainJob:
    """What the bare CometD drain needs (pickled to its process)."""

    url: str
    ca_file: str
    api_version: str
    messages: int  # the backlog on CHANNEL


def _drain_process(job: DrainJob) -> tuple[float, int]:
    return asyncio.run(_drain(job))


async def _drain(job: DrainJob) -> tuple[float, int]:
    """Bare CometD long polling (httpx, no sfls code): handshake, subscribe with replay -2, connect until the
    whole backlog arrived, events thrown away; (seconds, messages) from the first reply that carried any."""
    ids = itertools.count(1)
    async with httpx.AsyncClient(base_url=job.url, verify=job.ca_file, trust_env=False, timeout=60) as http:
        form = {"grant_type": "password", **CREDENTIALS}
        token = (await http.post("/services/oauth2/token", data=form)).raise_for_status().json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        async def send(message: dict[str, Any]) -> list[dict[str, Any]]:
            """One Bayeux message; the reply array (its own reply first, then any events). The client keeps
            the BAYEUX_BROWSER cookie the handshake set."""
            message["id"] = str(next(ids))
            response = await http.post(f"/cometd/{job.api_version}", json=[message], headers=headers)
            replies: list[dict[str, Any]] = response.raise_for_status().json()
            if not replies[0].get("successful"):
                raise RuntimeError(f"bare CometD drain: {message['channel']} refused: {replies[0]}")
            return replies

        handshake = {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
        client_id = (await send(handshake))[0]["clientId"]
        subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": CHANNEL}
        await send({**subscribe, "ext": {"replay": {CHANNEL: -2}}})
        received, first_reply, started = 0, 0, 0.0
        while received < job.messages:
            replies = await send({"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"})
            events = sum(1 for m in replies if m.get("channel") == CHANNEL)
            if events and not received:
                first_reply, started = events, time.perf_counter()
            received += events
        seconds = time.perf_counter() - started
    if received != job.messages:
        raise RuntimeError(f"bare CometD drain: {received} messages, the backlog holds {job.messages}")
    return seconds, received - first_reply


@dataclass(frozen=True)
class GrpcDrainJob:
    """What the bare gRPC drain needs (pickled to its process)."""

    url: str
    endpoint: str
    ca_file: str
    messages: int  # the backlog on CHANNEL


def _grpc_drain_process(job: GrpcDrainJob) -> tuple[float, int]:
    return asyncio.run(_grpc_drain(job, Path(job.ca_file).read_bytes()))


async def _grpc_drain(job: GrpcDrainJob, ca: bytes) -> tuple[float, int]:
    """Bare Pub/Sub Subscribe (grpc.aio and the contract's messages, no sfls code) from EARLIEST with 100 events
    outstanding, until the whole backlog arrived, payloads thrown away; (seconds, events) from the first batch."""
    import grpc

    from services.listener.pubsub import pubsub_api_pb2 as pb

    async with httpx.AsyncClient(base_url=job.url, verify=job.ca_file, trust_env=False, timeout=60) as http:
        form = {"grant_type": "password", **CREDENTIALS}
        grant = (await http.post("/services/oauth2/token", data=form)).raise_for_status().json()
    org_id = grant["id"].rstrip("/").split("/")[-2]
    metadata = (("accesstoken", grant["access_token"]), ("instanceurl", job.url), ("tenantid", org_id))
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    async with grpc.aio.secure_channel(job.endpoint, credentials) as channel:
        subscribe = channel.stream_stream(
            "/eventbus.v1.PubSub/Subscribe",
            request_serializer=pb.FetchRequest.SerializeToString,
            response_deserializer=pb.FetchResponse.FromString,
        )
        call = subscribe(None, metadata=metadata)
        await call.write(pb.FetchRequest(topic_name=CHANNEL, replay_preset=pb.EARLIEST, num_requested=100))
        received, first_batch, started = 0, 0, 0.0
        while received < job.messages:
            response: Any = await call.read()
            events = len(response.events)
            if events and not received:
                first_batch, started = events, time.perf_counter()
            received += events
            if response.pending_num_requested <= 50:
                await call.write(pb.FetchRequest(num_requested=100 - response.pending_num_requested))
        seconds = time.perf_counter() - started
        call.cancel()
    if received != job.messages:
        raise RuntimeError(f"bare gRPC drain: {received} events, the backlog holds {job.messages}")
    return seconds, received - first_batch


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
        emulator, ca_file, pubsub_port = _emulator(state_dir)
        stack.callback(emulator.stop)
        url = emulator.url
        salesforce = SalesforceSettings(
            instance_url=url, ca_file=ca_file, pubsub_endpoint=f"localhost:{pubsub_port}", **CREDENTIALS
        )  # default channels, default transport (CometD)
        kafka_settings = KafkaSettings(
            bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}"
        )  # default partitions (12)
        last_replay, backlog, account_ids = _load_backlog(url, ca_file, salesforce.api_version)

        def settings(**changed: Any) -> Settings:
            return Settings(
                kafka=kafka_settings.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:8]}"}),
                salesforce=salesforce.model_copy(update=changed),
                listener=ListenerSettings(transactional_id=f"bench-{uuid.uuid4().hex[:8]}", initial_replay=-2),
                observability=ObservabilitySettings(log_level="WARNING"),
            )

        cometd = settings()
        sf_before = _sf_calls(url, ca_file)
        seconds, messages, cpu = _listener(cometd, last_replay)
        sf_calls = _sf_calls(url, ca_file) - sf_before
        listener_rate = messages / seconds
        drain_seconds, drained = in_own_process(_drain_process, DrainJob(url, ca_file, salesforce.api_version, backlog))
        drain_rate = drained / drain_seconds
        values = _committed_values(cometd.kafka)
        raw_seconds = _raw_producer(cometd.kafka, values)
        raw_rate = len(values) / raw_seconds
        pubsub_seconds, pubsub_messages, pubsub_cpu = _listener(settings(transport="pubsub"), last_replay)
        pubsub_rate = pubsub_messages / pubsub_seconds
        grpc_job = GrpcDrainJob(url, salesforce.pubsub_endpoint, ca_file, backlog)
        grpc_seconds, grpc_drained = in_own_process(_grpc_drain_process, grpc_job)
        grpc_rate = grpc_drained / grpc_seconds
        # Growth: the same default listener (CometD) drains LARGE retained messages (the first backlog included).
        large = backlog + _more_backlog(url, ca_file, salesforce.api_version, account_ids, LARGE - backlog)
        large_last = last_replay + (LARGE - backlog)
        large_seconds, large_messages, large_cpu = _listener(settings(), large_last)
        large_rate = large_messages / large_seconds
    print(f"listener: {messages} CDC messages in {seconds:.2f}s = {listener_rate:,.0f}/s, {cpu:.2f} CPU s")
    print(f"bare CometD drain: {drained} messages in {drain_seconds:.2f}s = {drain_rate:,.0f}/s")
    print(f"raw producer: {len(values)} records in {raw_seconds:.2f}s = {raw_rate:,.0f}/s")
    print(f"Pub/Sub: {pubsub_messages} in {pubsub_seconds:.2f}s = {pubsub_rate:,.0f}/s, {pubsub_cpu:.2f} CPU s")
    print(f"bare gRPC drain: {grpc_drained} events in {grpc_seconds:.2f}s = {grpc_rate:,.0f}/s")
    print(f"listener, {large:,} backlog: {large_messages} in {large_seconds:.2f}s = {large_rate:,.0f}/s")
    metric = (
        f"CDC messages to committed Kafka records ({backlog:,}-message backlog drain, 1 record each; "
        f"default settings but initial_replay -2, {kafka_settings.partitions} partitions)"
    )
    per_10k = 10_000 / backlog
    return [
        row(
            "listener",
            metric,
            listener_rate,
            "msg/s",
            baseline="bare CometD drain: plain httpx long polls, same emulator and backlog",
            baseline_value=drain_rate,
        ),
        row(
            "listener",
            "CDC messages to committed Kafka records, against the broker's limit",
            listener_rate,
            "msg/s",
            baseline="raw confluent-kafka producer, same bytes",
            baseline_value=raw_rate,
        ),
        row(
            "listener",
            "listener CPU seconds per 10,000 messages (bench process time: the listener's thread; emulator and "
            "broker run elsewhere)",
            cpu * per_10k,
            "s",
        ),
        row(
            "listener",
            "Salesforce REST API calls per 10,000 changes (token and CometD not counted)",
            sf_calls * per_10k,
            "calls",
            baseline="lower bound: Account updates need no contact resolution",
            baseline_value=0,
            higher_is_better=False,
        ),
        row(
            "listener",
            f"Pub/Sub: CDC messages to committed Kafka records (the same {backlog:,}-message backlog; default "
            "settings but transport pubsub and initial_replay -2)",
            pubsub_rate,
            "msg/s",
            baseline="bare gRPC drain: grpc.aio Subscribe, 100 outstanding, same emulator and backlog",
            baseline_value=grpc_rate,
        ),
        row(
            "listener",
            "Pub/Sub: listener CPU seconds per 10,000 messages (bench process time, gRPC threads included)",
            pubsub_cpu * per_10k,
            "s",
        ),
        row(
            "listener",
            f"growth: CDC messages to committed Kafka records, {large:,}-message backlog (default settings but "
            "initial_replay -2)",
            large_rate,
            "msg/s",
            baseline=f"the {backlog:,}-message drain of the same run",
            baseline_value=listener_rate,
        ),
        row(
            "listener",
            f"growth: listener CPU seconds per 10,000 messages at {large:,}",
            large_cpu * 10_000 / large,
            "s",
            baseline=f"at {backlog:,}, same run",
            baseline_value=cpu * per_10k,
            higher_is_better=False,
        ),
    ]


def _sf_calls(url: str, ca_file: str) -> int:
    """The emulator's REST API call count so far (`total`: token requests and CometD not counted)."""
    with requests.Session() as http:
        http.verify, http.trust_env = ca_file, False
        answer = http.get(f"{url}/__admin/counters", timeout=30)
        answer.raise_for_status()
        return int(answer.json()["total"])


if __name__ == "__main__":
    for item in run():
        print(item)
