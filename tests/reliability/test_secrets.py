"""No secret ever leaves sfls: every service runs with known secret values and its output is scanned.

`sfls test-connection`, `sfls listener`, `sfls syncer` and `sfls import all` run as processes at
DEBUG with distinctive credentials: the emulators' working Salesforce password and client secret
and LogiSense password, a Kafka SASL password through the pass-through settings (unused by the
PLAINTEXT test broker, but part of every librdkafka configuration), and wrong passwords for the
failing logins. Errors are provoked on purpose: refused logins, a malformed CDC message (listener
dead letter), split invoice recipients (syncer dead letter) and a too-long package name (importer
dead letter). Then every stdout/stderr log, every /metrics page and every record of every topic
under the test's prefix (keys, values, header names and values) is searched for each secret.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import requests
import yaml
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from devstack.kafka import free_port
from shared import kafka
from shared.settings import KafkaSettings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.listener.support import SalesforceApi, cdc_message
from tests.services.syncer.e2e import CONTACT_POINTS, committed, seed_accounts, syncer_settings
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SFLS = str(Path(sys.executable).with_name("sfls"))
WRONG_SALESFORCE_PASSWORD = "Wr0ng-SF-pass-4c1a"
WRONG_LOGISENSE_PASSWORD = "Wr0ng-LS-pass-8d2f"
KAFKA_SASL_PASSWORD = "Kafka-SASL-pass-5e7b"


@dataclass
class Evidence:
    """Everything the services wrote that a person or a system could read."""

    texts: dict[str, str] = field(default_factory=dict)  # where -> text

    def add(self, where: str, text: str) -> None:
        self.texts[where] = self.texts.get(where, "") + text

    def leaks(self, secrets: list[str]) -> list[str]:
        found = []
        for secret in secrets:
            forms = {secret, quote(secret, safe=""), quote_plus(secret)}
            found += [f"{secret!r} in {where}" for where, text in self.texts.items() if any(f in text for f in forms)]
        return found


class Service:
    """One `sfls` process with its own stdout/stderr files and /metrics port."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.port = free_port()
        self.out = folder / f"{name}.stdout"
        self.err = folder / f"{name}.stderr"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [SFLS, *args], env={**env, "SFLS_OBSERVABILITY__METRICS_PORT": str(self.port)}, stdout=out, stderr=err
            )

    def get(self, path: str) -> requests.Response | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except requests.RequestException:
            return None

    def wait(self, probe: Callable[[], Any], seconds: float, what: str, until: Callable[[Any], object] = bool) -> Any:
        """Poll `probe` until `until` holds (tests.waiting); fails at once if the process exits first."""

        def running() -> Any:
            value = probe()
            if not until(value) and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.logs()[-3000:]}")
            return value

        return wait_until(
            running, seconds, f"{self.name}: {what}", until=until, every=0.2, context=lambda: self.logs()[-3000:]
        )

    def readyz(self) -> int | None:
        answer = self.get("/readyz")
        return None if answer is None else answer.status_code

    def metrics(self) -> str:
        answer = self.get("/metrics")
        return answer.text if answer is not None and answer.status_code == 200 else ""

    def logs(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def _every_record(settings: KafkaSettings) -> list[tuple[str, str]]:
    """(topic, text) of every committed-or-not record in every topic under the prefix: key, value, headers."""
    consumer = kafka.consumer(
        settings,
        f"scan-{uuid.uuid4().hex[:8]}",
        **{"enable.partition.eof": True, "isolation.level": "read_uncommitted"},
    )
    try:
        metadata = consumer.list_topics(timeout=30)
        wanted = [
            TopicPartition(name, p, OFFSET_BEGINNING)
            for name, topic in metadata.topics.items()
            if name.startswith(f"{settings.topic_prefix}.")
            for p in topic.partitions
        ]
        pending = set()
        for tp in wanted:
            low, high = consumer.get_watermark_offsets(tp, timeout=30)
            if high > low:
                pending.add((tp.topic, tp.partition))
        consumer.assign([tp for tp in wanted if (tp.topic, tp.partition) in pending])
        found: list[tuple[str, str]] = []
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                pending.discard((message.topic(), message.partition()))
                continue
            kafka.raise_for_message(message)
            parts = [message.key() or b"", message.value() or b""]
            for name, value in message.headers() or []:
                parts += [name.encode(), value or b""]
            found.append((message.topic() or "", b"\n".join(parts).decode(errors="replace")))
        assert not pending, f"could not read {sorted(pending)} to the end"
        return found
    finally:
        consumer.close()


def _rename_a_package(ls: LogisenseEmulator) -> None:
    """A package name longer than Salesforce's Name field: the importer dead-letters that package."""

    async def rename() -> None:
        async with ls.client() as client:
            first = await anext(item async for item in client.paged("Package"))
            await client.update("Package", first["identity"], {"name": "N" * 100})

    asyncio.run(rename())


@pytest.mark.timeout(600)
def test_no_secret_in_logs_metrics_or_records(
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    kafka_settings: KafkaSettings,
    tmp_path: Path,
) -> None:
    """Every service at DEBUG, with refused logins and dead letters: no secret in any log, metrics page or record."""
    sf, ls = salesforce_emulator, logisense_emulator
    sf.admin("POST", "settings", {"cometd_timeout_ms": 2000})
    secrets = [sf.password, sf.client_secret, ls.password, WRONG_SALESFORCE_PASSWORD, WRONG_LOGISENSE_PASSWORD]
    secrets.append(KAFKA_SASL_PASSWORD)
    settings = syncer_settings(kafka_settings, sf, ls)
    config = tmp_path / "sfls.yaml"
    config.write_text(yaml.safe_dump({"mappings": {"contact_points": CONTACT_POINTS}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
    env.update(
        {
            "SFLS_CONFIG": str(config),
            "SFLS_OBSERVABILITY__LOG_LEVEL": "DEBUG",
            "SFLS_SALESFORCE__INSTANCE_URL": sf.instance_url,
            "SFLS_SALESFORCE__CA_FILE": sf.ca_file,
            "SFLS_SALESFORCE__CLIENT_ID": sf.client_id,
            "SFLS_SALESFORCE__CLIENT_SECRET": sf.client_secret,
            "SFLS_SALESFORCE__USERNAME": sf.username,
            "SFLS_SALESFORCE__PASSWORD": sf.password,
            "SFLS_LOGISENSE__BASE_URL": ls.base_url,
            "SFLS_LOGISENSE__CA_FILE": ls.ca_file,
            "SFLS_LOGISENSE__USERNAME": ls.username,
            "SFLS_LOGISENSE__PASSWORD": ls.password,
            "SFLS_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "SFLS_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
            "SFLS_KAFKA__PARTITIONS": str(kafka_settings.partitions),
            "SFLS_KAFKA__SASL_USERNAME": "sfls",
            "SFLS_KAFKA__SASL_PASSWORD": KAFKA_SASL_PASSWORD,
            "SFLS_KAFKA__DEBUG": "conf,security",  # librdkafka dumps its configuration into the logs
            "SFLS_SYNC_INTERVAL_MINUTES": "0.02",
            "SFLS_SYNC__RETRY__MAX_ATTEMPTS": "2",
            "SFLS_SYNC__RETRY__BASE_SECONDS": "0.01",
            "SFLS_SYNC__RETRY__CAP_SECONDS": "0.05",
            "SFLS_LISTENER__RECONNECT_BASE_SECONDS": "0.1",
            "SFLS_LISTENER__WATCHDOG_SECONDS": "8",
        }
    )
    wrong_sf = {**env, "SFLS_SALESFORCE__PASSWORD": WRONG_SALESFORCE_PASSWORD}
    wrong_ls = {**env, "SFLS_LOGISENSE__PASSWORD": WRONG_LOGISENSE_PASSWORD}
    evidence = Evidence()
    services: list[Service] = []

    def run(name: str, args: list[str], environment: dict[str, str]) -> Service:
        service = Service(name, args, environment, tmp_path)
        services.append(service)
        return service

    try:
        # test-connection: once with working credentials, once with both passwords wrong.
        for name, environment, code in (
            ("connection-ok", env, 0),
            ("connection-wrong", {**wrong_sf, "SFLS_LOGISENSE__PASSWORD": WRONG_LOGISENSE_PASSWORD}, 1),
        ):
            check = run(name, ["test-connection"], environment)
            assert check.process.wait(60) == code, check.logs()

        # The listener: real CDC from REST writes, plus one malformed message for its dead-letter topic.
        accounts = seed_accounts(sf, 3)
        split = seed_accounts(sf, 1, prefix="Split", Usage_Invoice_Recipient__c=accounts[0])[0]
        listener = run("listener", ["listener"], env)
        listener.wait(listener.readyz, 60, "/readyz", until=lambda status: status == 200)
        api = SalesforceApi(sf.settings())
        try:
            for account_id in [*accounts, split]:
                api.update("Account", account_id, {"Name": f"Renamed {account_id[-4:]}"})
        finally:
            api.close()
        bad = cdc_message("Account", "UPDATE", changed=["Name"], fields={"Name": "bad"})
        bad["data"]["payload"]["ChangeEventHeader"]["changeType"] = "MERGE"
        sf.admin("POST", "cdc/publish", {"message": bad})
        topics = kafka.Topics(kafka_settings.topic_prefix)

        def listener_records() -> dict[str, int]:
            records = _every_record(kafka_settings)
            return {topic: sum(t == topic for t, _ in records) for topic in (topics.changes, topics.listener_dlt)}

        listener.wait(
            listener_records,
            60,
            "4 change events and 1 listener dead letter",
            until=lambda seen: seen[topics.changes] >= 4 and seen[topics.listener_dlt] >= 1,
        )
        evidence.add("listener /metrics", listener.metrics())
        assert listener.stop() == 0

        # A listener whose Salesforce login is refused.
        refused = run("listener-wrong-password", ["listener"], wrong_sf)
        refused.wait(lambda: "invalid_grant" in refused.logs() or refused.process.poll() is not None, 30, "refusal")
        evidence.add("listener-wrong-password /metrics", refused.metrics())
        refused.stop()

        # The syncer: delivers three accounts, dead-letters the one with split invoice recipients.
        syncer = run("syncer", ["syncer"], env)
        syncer.wait(lambda: committed(settings), 90, "4 committed change events", until=lambda n: n >= 4)
        syncer.wait(
            lambda: sum(t == topics.changes_dlt for t, _ in _every_record(kafka_settings)), 30, "a syncer dead letter"
        )
        evidence.add("syncer /metrics", syncer.metrics())
        assert syncer.stop() == 0

        # A syncer whose LogiSense login is refused, with work waiting for it.
        api = SalesforceApi(sf.settings())
        try:
            api.update("Account", accounts[1], {"Name": "Renamed again"})
        finally:
            api.close()
        listener = run("listener-again", ["listener"], env)
        listener.wait(listener.readyz, 60, "/readyz", until=lambda status: status == 200)
        refused = run("syncer-wrong-password", ["syncer"], wrong_ls)
        # Let it try (and fail) its login; the scan below is the assertion, so the refusal must be in its output.
        refused.wait(lambda: "login refused" in refused.logs() or refused.process.poll() is not None, 60, "refusal")
        evidence.add("syncer-wrong-password /metrics", refused.metrics())
        evidence.add("listener-again /metrics", listener.metrics())
        refused.stop()
        listener.stop()

        # The importer: everything, with one package Salesforce refuses; then a refused LogiSense login.
        _rename_a_package(ls)
        importer = run("import-all", ["import", "all"], env)
        assert importer.process.wait(240) == 1, importer.logs()[-3000:]
        importer = run("import-wrong-password", ["import", "data"], wrong_ls)
        assert importer.process.wait(120) != 0, importer.logs()[-3000:]
    finally:
        for service in services:
            service.stop()

    for service in services:
        evidence.add(f"{service.name} output", service.logs())
    records = _every_record(kafka_settings)
    for topic, text in records:
        evidence.add(f"topic {topic}", text)

    # The scan is only worth something if there was much to scan: DEBUG logs, metrics, dead letters.
    assert all(service.logs().strip() for service in services)
    assert any("send_request_headers.started" in service.logs() for service in services)  # httpcore at DEBUG
    assert "Using selector" in evidence.texts["listener output"]  # asyncio logs this at DEBUG only
    assert "login refused" in evidence.texts["connection-wrong output"]
    assert "sfls_dead_letters_total" in evidence.texts["syncer /metrics"]
    scanned_topics = {topic for topic, _ in records}
    assert {topics.listener_dlt, topics.changes_dlt, topics.importer_dlt, topics.requests} <= scanned_topics
    assert WRONG_SALESFORCE_PASSWORD in wrong_sf.values()
    assert evidence.leaks(secrets) == []
