"""`sfls syncer` as a process: kill -9 mid-batch loses and duplicates nothing; a bad mapping exits non-zero."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Producer

from devstack.process import ServiceProcess, sfls_command
from shared.settings import KafkaSettings, Settings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.syncer.e2e import (
    CONTACT_POINTS,
    assert_same_state,
    committed,
    seed_accounts,
    seed_contacts,
    subprocess_env,
    syncer_settings,
)
from tests.services.syncer.support import change, create_syncer_topics, publish
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def wait_for(process: ServiceProcess, count: Callable[[], int], *, at_least: int, seconds: float, what: str) -> None:
    """Poll `count` until it reaches `at_least` (tests.waiting); fails at once if the syncer exits first."""

    def running() -> int:
        value = count()
        if value < at_least:
            process.check_alive()
        return value

    wait_until(
        running, seconds, f"{what} to reach {at_least}", until=lambda n: n >= at_least, every=0.1, context=process.tail
    )


@pytest.mark.failure
def test_kill_minus_nine_mid_batch_then_restart_converges_without_duplicates(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
    tmp_path: Path,
) -> None:
    """SIGKILL while a batch is half written, restart: LogiSense equals Salesforce, no account twice."""
    settings: Settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator)
    config = tmp_path / "sfls.yaml"
    config.write_text(yaml.safe_dump({"mappings": {"contact_points": CONTACT_POINTS}}))
    # A short session timeout lets the restarted member take over the killed one's partitions quickly.
    env = subprocess_env(
        settings, SFLS_SYNC__CONCURRENCY="2", SFLS_CONFIG=str(config), SFLS_KAFKA__SESSION_TIMEOUT_MS="6000"
    )
    topics = create_syncer_topics(kafka_settings)
    accounts = seed_accounts(salesforce_emulator, 40)
    seed_contacts(salesforce_emulator, accounts[::2])
    publish(producer_factory(), topics.changes, [change(a) for a in accounts])
    logisense_emulator.faults(resource="Account", operation="create", latency_ms=60)
    log = tmp_path / "syncer.log"

    first = ServiceProcess.sfls("syncer", env=env, log=log)
    try:
        creates = lambda: logisense_emulator.count(resource="Account", operation="create")  # noqa: E731
        wait_for(first, creates, at_least=8, seconds=60, what="LogiSense account creates")
    finally:
        first.kill()
    partial = len(logisense_emulator.accounts())
    assert 8 <= partial < 40
    assert committed(settings) == 0

    logisense_emulator.clear_faults()
    second = ServiceProcess.sfls("syncer", env=env, log=log)
    try:
        wait_for(second, lambda: committed(settings), at_least=40, seconds=90, what="records committed")
        assert second.terminate(30) == 0
    finally:
        second.kill()
    assert_same_state(salesforce_emulator, logisense_emulator, settings)
    assert len(logisense_emulator.accounts()) == 40


def test_bad_column_name_exits_non_zero_naming_the_mapping(tmp_path: Path, kafka_settings: KafkaSettings) -> None:
    """A Column Name with a space is refused at start-up with exit code 2 and the mapping named."""
    config = tmp_path / "sfls.yaml"
    config.write_text("mappings:\n  account_extensions:\n    - {salesforce: Region__c, logisense: Region Code}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
    env.update({"SFLS_CONFIG": str(config), "COLUMNS": "250"})
    result = subprocess.run([*sfls_command(), "syncer"], env=env, capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "account_extensions" in stderr
    assert "Region Code" in stderr
    assert "lowercase letter" in stderr


def test_incomplete_contact_points_and_unknown_fields_exit_non_zero(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
) -> None:
    """Unmapped contact points and a field Salesforce lacks stop the syncer before it consumes, each named."""
    settings = syncer_settings(kafka_settings, salesforce_emulator, logisense_emulator)
    config = tmp_path / "sfls.yaml"
    config.write_text(
        "mappings:\n"
        "  account_extensions:\n    - {salesforce: Nope__c, logisense: nope}\n"
        "  contact_points:\n    Billing: {email: Email, phone: Phone, address: MailingAddress, sfdcid: Id}\n"
    )
    env = subprocess_env(settings, SFLS_CONFIG=str(config), COLUMNS="250")
    result = subprocess.run([*sfls_command(), "syncer"], env=env, capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    stderr = result.stderr.decode()
    for name in ("mappings.contact_points.Shipping", "mappings.contact_points.Technical", "Nope__c"):
        assert name in stderr
    assert "mappings.contact_points.Billing" not in stderr
    assert committed(settings) == 0
