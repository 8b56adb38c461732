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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from devstack.process import ServiceProcess
from shared import kafka
from shared.settings import KafkaSettings
from tests.environment import sfls_env
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.listener.support import SalesforceApi, cdc_message
from tests.services.syncer.e2e import CONTACT_POINTS, committed, seed_accounts, syncer_settings
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

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


def output(service: ServiceProcess) -> str:
    """Everything the service wrote to stdout and stderr."""
    return service.log.read_text(errors="replace")


def metrics_page(service: ServiceProcess) -> str:
    """The service's /metrics page ('' while nothing answers there)."""
    reply = service.get("/metrics")
    return reply.text if reply is not None and reply.status == 200 else ""


def wait_running(
    service: ServiceProcess, probe: Callable[[], Any], seconds: float, what: str, until: Callable[[Any], object] = bool
) -> Any:
    """Poll `probe` until `until` holds (tests.waiting); fails at once if the process exits first."""

    def running() -> Any:
        value = probe()
        if not until(value):
            service.check_alive()
        return value

    return wait_until(
        running, seconds, f"{service.name}: {what}", until=until, every=0.2, context=lambda: output(service)[-3000:]
    )


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
    env = sfls_env(
        salesforce=sf,
        logisense=ls,
        kafka=kafka_settings,
        SFLS_CONFIG=str(config),
        SFLS_OBSERVABILITY__LOG_LEVEL="DEBUG",
        SFLS_KAFKA__SASL_USERNAME="sfls",
        SFLS_KAFKA__SASL_PASSWORD=KAFKA_SASL_PASSWORD,
        SFLS_KAFKA__DEBUG="conf,security",  # librdkafka dumps its configuration into the logs
        SFLS_SYNC_INTERVAL_MINUTES="0.02",
        SFLS_SYNC__RETRY__MAX_ATTEMPTS="2",
        SFLS_SYNC__RETRY__BASE_SECONDS="0.01",
        SFLS_SYNC__RETRY__CAP_SECONDS="0.05",
        SFLS_LISTENER__RECONNECT_BASE_SECONDS="0.1",
        SFLS_LISTENER__WATCHDOG_SECONDS="8",
    )
    wrong_sf = {**env, "SFLS_SALESFORCE__PASSWORD": WRONG_SALESFORCE_PASSWORD}
    wrong_ls = {**env, "SFLS_LOGISENSE__PASSWORD": WRONG_LOGISENSE_PASSWORD}
    evidence = Evidence()
    services: list[ServiceProcess] = []

    def run(name: str, args: list[str], environment: dict[str, str]) -> ServiceProcess:
        service = ServiceProcess.sfls(*args, env=environment, log=tmp_path / f"{name}.log", name=name)
        services.append(service)
        return service

    try:
        # test-connection: once with working credentials, once with both passwords wrong.
        for name, environment, code in (
            ("connection-ok", env, 0),
            ("connection-wrong", {**wrong_sf, "SFLS_LOGISENSE__PASSWORD": WRONG_LOGISENSE_PASSWORD}, 1),
        ):
            check = run(name, ["test-connection"], environment)
            assert check.wait(60) == code, output(check)

        # The listener: real CDC from REST writes, plus one malformed message for its dead-letter topic.
        accounts = seed_accounts(sf, 3)
        split = seed_accounts(sf, 1, prefix="Split", Usage_Invoice_Recipient__c=accounts[0])[0]
        listener = run("listener", ["listener"], env)
        listener.wait_ready(60)
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

        wait_running(
            listener,
            listener_records,
            60,
            "4 change events and 1 listener dead letter",
            until=lambda seen: seen[topics.changes] >= 4 and seen[topics.listener_dlt] >= 1,
        )
        evidence.add("listener /metrics", metrics_page(listener))
        assert listener.terminate(30) == 0

        # A listener whose Salesforce login is refused.
        refused = run("listener-wrong-password", ["listener"], wrong_sf)
        wait_running(refused, lambda: "invalid_grant" in output(refused) or not refused.alive, 30, "refusal")
        evidence.add("listener-wrong-password /metrics", metrics_page(refused))
        refused.terminate(30)

        # The syncer: delivers three accounts, dead-letters the one with split invoice recipients.
        syncer = run("syncer", ["syncer"], env)
        wait_running(syncer, lambda: committed(settings), 90, "4 committed change events", until=lambda n: n >= 4)
        wait_running(
            syncer,
            lambda: sum(t == topics.changes_dlt for t, _ in _every_record(kafka_settings)),
            30,
            "a syncer dead letter",
        )
        evidence.add("syncer /metrics", metrics_page(syncer))
        assert syncer.terminate(30) == 0

        # A syncer whose LogiSense login is refused, with work waiting for it.
        api = SalesforceApi(sf.settings())
        try:
            api.update("Account", accounts[1], {"Name": "Renamed again"})
        finally:
            api.close()
        listener = run("listener-again", ["listener"], env)
        listener.wait_ready(60)
        refused = run("syncer-wrong-password", ["syncer"], wrong_ls)
        # Let it try (and fail) its login; the scan below is the assertion, so the refusal must be in its output.
        wait_running(refused, lambda: "login refused" in output(refused) or not refused.alive, 60, "refusal")
        evidence.add("syncer-wrong-password /metrics", metrics_page(refused))
        evidence.add("listener-again /metrics", metrics_page(listener))
        refused.terminate(30)
        listener.terminate(30)

        # The importer: everything, with one package Salesforce refuses; then a refused LogiSense login.
        _rename_a_package(ls)
        importer = run("import-all", ["import", "all"], env)
        assert importer.wait(240) == 1, importer.tail()
        importer = run("import-wrong-password", ["import", "data"], wrong_ls)
        assert importer.wait(120) != 0, importer.tail()
    finally:
        for service in services:
            service.terminate(30)

    for service in services:
        evidence.add(f"{service.name} output", output(service))
    records = _every_record(kafka_settings)
    for topic, text in records:
        evidence.add(f"topic {topic}", text)

    # The scan is only worth something if there was much to scan: DEBUG logs, metrics, dead letters.
    assert all(output(service).strip() for service in services)
    assert any("send_request_headers.started" in output(service) for service in services)  # httpcore at DEBUG
    assert "Using selector" in evidence.texts["listener output"]  # asyncio logs this at DEBUG only
    assert "login refused" in evidence.texts["connection-wrong output"]
    assert "sfls_dead_letters_total" in evidence.texts["syncer /metrics"]
    scanned_topics = {topic for topic, _ in records}
    assert {topics.listener_dlt, topics.changes_dlt, topics.importer_dlt, topics.requests} <= scanned_topics
    assert WRONG_SALESFORCE_PASSWORD in wrong_sf.values()
    assert evidence.leaks(secrets) == []
