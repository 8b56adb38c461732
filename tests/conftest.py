"""Fixtures shared by every test: one real Kafka broker per session, unique names per test.

The broker is, in order of preference: `KAFKA_BOOTSTRAP_SERVERS` when set; a testcontainers Kafka
container when a Docker engine answers; otherwise the Apache Kafka jars broker from devstack,
started on free loopback ports in a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, Producer

from devstack.kafka import LocalBroker, default_cache_dir, fetch_jars, free_port
from devstack.tls import LocalCA, ensure_ca
from shared import kafka
from shared.settings import KafkaSettings

# Emulator fixtures live beside their emulators' tests; every test may use them.
pytest_plugins = ["tests.fixtures.salesforce", "tests.fixtures.logisense", "tests.fixtures.importer"]

# Fixtures that start or run something outside the test process: the broker, the emulators, helm,
# promtool and Prometheus. A test using one (directly or through another fixture) must be marked
# `integration`, so `make test-unit` (`-m "not integration"`) needs none of them.
OUTSIDE_THE_PROCESS = frozenset(
    {"kafka_bootstrap", "salesforce_server", "logisense_server", "helm", "promtool", "prometheus_bin", "sf_cli"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a run in which a test needs a broker, an emulator or a tool without being marked integration."""
    unmarked = sorted(
        f"{item.nodeid} (uses {', '.join(sorted(OUTSIDE_THE_PROCESS & set(getattr(item, 'fixturenames', ()))))})"
        for item in items
        if OUTSIDE_THE_PROCESS & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("integration") is None
    )
    if unmarked:
        raise pytest.UsageError(
            "tests that cross a process boundary must be marked integration (pytestmark = pytest.mark.integration):\n  "
            + "\n  ".join(unmarked)
        )


def _docker_available() -> bool:
    """A Docker engine answers `GET /_ping` on DOCKER_HOST (or the default unix socket).

    Asked with a plain socket that is always closed: docker-py's client leaves its socket open when the
    engine is absent, which the garbage collector later reports in the middle of an unrelated test.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").partition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(3)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return sock.recv(64).split(b" ", 2)[1:2] == [b"200"]
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of the session's broker."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    cache_dir = default_cache_dir()
    broker = LocalBroker(
        state_dir=tmp_path_factory.mktemp("kafka"),
        lib_dir=fetch_jars(cache_dir),
        port=free_port(),
        controller_port=free_port(),
    )
    broker.start(timeout=120)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def local_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    """One local CA for the session; both emulators serve certificates it signed."""
    return ensure_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Kafka settings with a topic prefix unique to this test."""
    return KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}", partitions=3)


@pytest.fixture
def topic_factory(kafka_settings: KafkaSettings) -> Callable[..., str]:
    """Create a uniquely named topic: topic_factory(partitions=1, compacted=False) -> name."""

    def create(partitions: int = 1, *, compacted: bool = False, name: str | None = None) -> str:
        topic = name or f"{kafka_settings.topic_prefix}.{uuid.uuid4().hex[:8]}"
        kafka.ensure_topics(kafka_settings, [kafka.TopicSpec(topic, partitions, compacted)])
        return topic

    return create


@pytest.fixture
def producer_factory(kafka_settings: KafkaSettings) -> Iterator[Callable[..., Producer]]:
    """Idempotent producers that are flushed when the test ends."""
    made: list[Producer] = []

    def create(**overrides: object) -> Producer:
        producer = kafka.producer(kafka_settings, **overrides)
        made.append(producer)
        return producer

    yield create
    for producer in made:
        producer.flush(10)


@pytest.fixture
def consumer_factory(kafka_settings: KafkaSettings) -> Iterator[Callable[..., Consumer]]:
    """Group consumers (random group id unless given) that are closed when the test ends."""
    made: list[Consumer] = []

    def create(group_id: str | None = None, **overrides: object) -> Consumer:
        consumer = kafka.consumer(kafka_settings, group_id or f"g-{uuid.uuid4().hex[:10]}", **overrides)
        made.append(consumer)
        return consumer

    yield create
    for consumer in made:
        with contextlib.suppress(RuntimeError):  # already closed by the test
            consumer.close()
