"""Readiness means ready: `/readyz` answers 200 only once a service does its job.

The syncer is ready once its consumer has partitions assigned, the listener once it is subscribed.
Both are started here before their Kafka broker exists: they wait for it (503 with the reason, never an
exit), then turn ready by themselves once the broker serves them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.kafka import LocalBroker, default_cache_dir, fetch_jars, free_port
from devstack.process import ServiceProcess
from shared.settings import KafkaSettings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.reliability.support import Pipeline
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# How long both must stay unready while there is no broker (a negative, checked over the whole window).
NO_BROKER_SECONDS = 3.0


@pytest.fixture
def unstarted_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker with its ports chosen but not started yet; stopped at the end."""
    broker = LocalBroker(
        state_dir=tmp_path / "kafka",
        lib_dir=fetch_jars(default_cache_dir()),
        port=free_port(),
        controller_port=free_port(),
    )
    try:
        yield broker
    finally:
        broker.stop()


def _readyz(service: ServiceProcess) -> tuple[int, str] | None:
    answer = service.get("/readyz")
    return None if answer is None else (answer.status, answer.text.strip())


def test_listener_and_syncer_are_ready_only_once_kafka_serves_them(
    tmp_path: Path,
    unstarted_broker: LocalBroker,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
) -> None:
    """Without a broker both answer 503 and keep waiting; once it serves them both turn ready by themselves."""
    kafka_settings = KafkaSettings(
        bootstrap_servers=unstarted_broker.bootstrap_servers, topic_prefix=f"ready{uuid.uuid4().hex[:8]}"
    )
    pipeline = Pipeline(kafka_settings, salesforce_emulator, logisense_emulator, tmp_path)
    try:
        syncer = pipeline.start_syncer()
        listener = pipeline.start_listener(wait_ready=False)
        services = (syncer, listener)
        for service in services:
            wait_until(lambda s=service: _readyz(s), 60, f"{service.name} answering /readyz", context=service.tail)
        wait_until(
            lambda: _readyz(syncer),
            60,
            "the syncer to say it waits for Kafka",
            until=lambda seen: seen == (503, "waiting for Kafka"),
            context=syncer.tail,
        )
        for service in services:  # each logs that it waits, and goes on waiting rather than exiting
            wait_until(
                lambda s=service: '"kafka_unavailable"' in s.tail(200_000),
                60,
                f"{service.name} logging kafka_unavailable",
                context=service.tail,
            )

        observed_until = time.monotonic() + NO_BROKER_SECONDS
        while time.monotonic() < observed_until:
            for service in services:
                seen = _readyz(service)
                assert seen is not None, f"sfls {service.name} stopped answering:\n{service.tail()}"
                assert seen[0] == 503, f"sfls {service.name} is ready without a broker: {seen}"
            time.sleep(0.5)

        unstarted_broker.start(timeout=120)
        for service in services:
            service.wait_ready(120)
        assert _readyz(syncer) == (200, "consuming")
        assert _readyz(listener) == (200, "subscribed")
        pipeline.check_alive()
    finally:
        pipeline.close()
