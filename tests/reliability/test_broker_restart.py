"""Broker restart: the Kafka broker goes away mid-run and comes back; nobody restarts the services.

Each test runs its own broker (devstack LocalBroker on free ports in a temporary folder), never the
session's shared one. CI size: 200 accounts, 6 rounds of one change per account (1,200 changes),
the broker down for 15 s while two of the rounds are written. `SFLS_RELIABILITY_SCALE=full`:
2,000 accounts (12,000 changes) and 60 s down.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.kafka import LocalBroker, default_cache_dir, fetch_jars, free_port
from shared.settings import KafkaSettings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.reliability.support import (
    ChangeWriter,
    dead_letters,
    missing_changes,
    pipeline,
    scaled,
    seed,
    wait_converged,
)

pytestmark = [pytest.mark.failure, pytest.mark.integration]

ACCOUNTS = scaled(200, 2000)
DOWN_SECONDS = scaled(10, 60)
CACHE_DIR = default_cache_dir()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test alone, on free ports; stopped at the end whatever happened."""
    own = LocalBroker(
        state_dir=tmp_path / "kafka", lib_dir=fetch_jars(CACHE_DIR), port=free_port(), controller_port=free_port()
    )
    own.start(timeout=120)
    try:
        yield own
    finally:
        own.stop()


@pytest.mark.timeout(scaled(240, 900))
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_broker_down_and_back_mid_run_both_services_recover_and_nothing_is_lost(
    how: str,
    broker: LocalBroker,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    tmp_path: Path,
) -> None:
    """Broker stopped (SIGTERM) or killed (SIGKILL) mid-run, then restarted: both services carry on, all converges."""
    kafka_settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:10]}", partitions=3
    )
    accounts, contacts = seed(salesforce_emulator, ACCOUNTS)
    writer = ChangeWriter(salesforce_emulator, accounts, contacts)
    with pipeline(
        kafka_settings, salesforce_emulator, logisense_emulator, tmp_path, sync={"interval_minutes": 0.02}
    ) as run:
        try:
            run.start_listener()
            run.start_syncer()
            writer.round(0)
            writer.round(1)
            time.sleep(3)  # some of it flows through before the broker goes
            if how == "stop":
                broker.stop()
            else:
                broker.kill()
            went = time.monotonic()
            writer.round(2)  # Salesforce keeps changing while Kafka is away
            writer.round(3)
            time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - went)))
            run.check_alive()
            broker.start(timeout=120)
            writer.round(4)
            writer.round(5)
        finally:
            writer.close()
        wait_converged(
            salesforce_emulator,
            logisense_emulator,
            run.settings,
            scaled(150, 600),
            alive=run.check_alive,
            context=run.logs,
        )
        assert missing_changes(salesforce_emulator, kafka_settings, run.settings) == []
        assert dead_letters(kafka_settings) == []
        run.check_alive()
