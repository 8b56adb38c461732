"""Least privilege, proven: every sfls command works with exactly the ACLs of shared/acls.py, and fails
with a line naming the operation and the resource when any one of them is missing.

The broker runs Kafka's StandardAuthorizer with `allow.everyone.if.no.acl.found=false` over SASL_SSL; each
command has its own SCRAM principal (User:sfls-<service>) granted only `acls_for(service, settings)`
through the admin API. Every case gets its own topic prefix and transactional id, so the grants of one
case never help another.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from devstack.process import ServiceProcess, sfls_command
from shared import kafka
from shared.acls import SERVICES, Acl, acls_for
from shared.settings import KafkaSettings, Settings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.fixtures.schema import deploy_schema
from tests.reliability.secure_kafka import ADMIN_PASSWORD, ADMIN_USER, SecureBroker, grant, secure_broker
from tests.reliability.support import ChangeWriter, dead_letters, seed, wait_converged
from tests.services.syncer.e2e import CONTACT_POINTS, subprocess_env, syncer_settings
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = {service: f"sfls-{service}" for service in SERVICES}
PASSWORDS = {user: f"{user}-Pw-5e0b7" for user in USERS.values()}
# The command each service's negative case runs; long-running services end by themselves on a refusal.
COMMANDS = {
    "listener": ["listener"],
    "syncer": ["syncer"],
    "importer": ["import", "all"],
    "backfill": ["backfill"],
    "dlq": ["dlq", "replay", "--since", "1d"],
    "requests": ["requests"],
    "opportunity": ["opportunity", "push", "006000000000000AAA"],
    "reconcile": ["reconcile"],
    "requests_tab": ["requests-tab", "run"],
}


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    with secure_broker(tmp_path_factory.mktemp("kafka-acls"), PASSWORDS, authorizer=True) as broker:
        yield broker


@dataclass
class Deployment:
    """One installation of sfls on the locked-down broker: its prefix, transactional id and principals."""

    broker: SecureBroker
    sf: SalesforceEmulator
    ls: LogisenseEmulator
    workdir: Path
    create_topics: bool = True
    prefix: str = field(default_factory=lambda: f"acl{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        self.transactional_id = f"tx-{self.prefix}"
        secure = self.broker.client_config(ADMIN_USER, ADMIN_PASSWORD)
        self.admin_kafka = KafkaSettings(  # the test's own reads and set-up, as a super user
            bootstrap_servers=self.broker.bootstrap_servers,
            topic_prefix=self.prefix,
            partitions=1,
            **{key.replace(".", "_"): value for key, value in secure.items() if key != "bootstrap.servers"},
        )
        kafka_settings = KafkaSettings(
            bootstrap_servers=self.broker.bootstrap_servers, topic_prefix=self.prefix, partitions=1
        )
        self.settings: Settings = syncer_settings(kafka_settings, self.sf, self.ls)
        self.settings = self.settings.model_copy(
            update={
                "listener": self.settings.listener.model_copy(update={"transactional_id": self.transactional_id}),
                "kafka": kafka_settings.model_copy(update={"create_topics": self.create_topics}),
            }
        )
        config = self.workdir / "sfls.yaml"
        config.write_text(yaml.safe_dump({"mappings": {"contact_points": CONTACT_POINTS}}))
        deploy_schema(self.sf, self.settings)
        self.base_env = subprocess_env(
            self.settings,
            SFLS_CONFIG=str(config),
            SFLS_LOG_LEVEL="INFO",
            SFLS_KAFKA__CREATE_TOPICS=str(self.create_topics).lower(),
            SFLS_LISTENER__TRANSACTIONAL_ID=self.transactional_id,
            SFLS_LISTENER__INITIAL_REPLAY="-2",
            SFLS_LISTENER__BACKFILL_BATCH_SIZE="200",
            SFLS_KAFKA__PARTITIONS="1",  # every case makes its own topics: keep the broker light
            COLUMNS="250",
        )

    def create_every_topic(self) -> None:
        """What a platform team does before installing sfls without Create permissions."""
        kafka.ensure_topics(self.admin_kafka, kafka.Topics(self.prefix).specs(self.admin_kafka))

    def acls(self, service: str) -> list[Acl]:
        return acls_for(service, self.settings)

    def grant(self, service: str, *, leave_out: Acl | None = None) -> None:
        grant(self.broker, f"User:{USERS[service]}", [acl for acl in self.acls(service) if acl != leave_out])

    def env(self, service: str) -> dict[str, str]:
        user = USERS[service]
        return {**self.base_env, **self.broker.environment(user, PASSWORDS[user])}

    def run(self, service: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [*sfls_command(), *args],
                env=self.env(service),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"sfls {' '.join(args)} as {USERS[service]} did not end within {timeout:g} s; last output:\n"
                f"{(exc.stdout or b'')[-2000:]!r}\n{(exc.stderr or b'')[-2000:]!r}"
            ) from None

    def start(self, service: str) -> ServiceProcess:
        return ServiceProcess.sfls(*COMMANDS[service], env=self.env(service), log=self.workdir / f"{service}.log")


def _ok(result: subprocess.CompletedProcess[str], what: str) -> str:
    assert result.returncode == 0, (
        f"{what} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def test_every_command_works_with_exactly_its_acls(
    acl_broker: SecureBroker,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    tmp_path: Path,
) -> None:
    """Import, listener, syncer, the Requests tab, dead-letter replay, backfill and the request log, each with only
    its ACLs."""
    deployment = Deployment(acl_broker, salesforce_emulator, logisense_emulator, tmp_path)
    for service in SERVICES:
        deployment.grant(service)
    _run_everything(deployment)


def test_topics_the_platform_created_need_no_create_permission(
    acl_broker: SecureBroker,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    tmp_path: Path,
) -> None:
    """With every topic made beforehand by an administrator, no command needs Create (create_topics left on)."""
    deployment = Deployment(acl_broker, salesforce_emulator, logisense_emulator, tmp_path)
    deployment.create_every_topic()
    for service in SERVICES:
        without_create = [acl for acl in deployment.acls(service) if not acl.create_topics_only]
        assert without_create, service
        grant(acl_broker, f"User:{USERS[service]}", without_create)
    _run_everything(deployment)


def _run_everything(deployment: Deployment) -> None:
    sf, ls, settings = deployment.sf, deployment.ls, deployment.settings
    _ok(deployment.run("importer", "import", "all"), "sfls import all")

    accounts, contacts = seed(sf, 4)
    listener, syncer, tab = deployment.start("listener"), deployment.start("syncer"), deployment.start("requests_tab")

    def alive() -> None:
        for service in (listener, syncer, tab):
            service.check_alive()

    try:
        for service in (listener, syncer, tab):
            service.wait_ready(90)

        # Changes travel CDC -> listener -> Kafka -> syncer -> LogiSense.
        writer = ChangeWriter(sf, accounts, contacts)
        writer.rename_all("acl")
        wait_converged(sf, ls, settings, 90, alive=alive, context=lambda: listener.tail() + syncer.tail())

        # An account LogiSense cannot take is dead-lettered; after the fix, `sfls dlq replay` delivers it.
        writer._collection("PATCH", [{"Id": accounts[0], "LogiSense_Bill_Group__c": "No Such Group"}], "Account")
        wait_until(lambda: dead_letters(deployment.admin_kafka), 90, "a dead letter", context=syncer.tail)
        assert accounts[0] in _ok(deployment.run("dlq", "dlq", "list"), "sfls dlq list")
        failed = lambda: [r for r in sf.records("LogiSense_Request__c") if r["Account__c"] == accounts[0]]  # noqa: E731
        wait_until(failed, 90, "the failed request on the Requests tab", context=tab.tail)
        sf.rest().update("Account", accounts[0], {"LogiSense_Bill_Group__c": "Bill Group 1st"})
        wait_converged(sf, ls, settings, 90, alive=alive, context=syncer.tail)
        assert "replayed 1" in _ok(deployment.run("dlq", "dlq", "replay", "--key", accounts[0]), "sfls dlq replay")
        wait_converged(sf, ls, settings, 90, alive=alive, context=syncer.tail)

        # The original "Start Data Sync" and the request log.
        assert "4 accounts published" in _ok(deployment.run("backfill", "backfill"), "sfls backfill")
        reconciled = deployment.run("reconcile", "reconcile", "--format", "json")
        assert reconciled.returncode in (0, 1), (
            f"sfls reconcile:\n{reconciled.stdout[-2000:]}\n{reconciled.stderr[-2000:]}"
        )
        requests = _ok(deployment.run("requests", "requests", "--json"), "sfls requests")
        assert any('"kind":"account_sync"' in line for line in requests.splitlines()), requests[-2000:]
        assert any('"kind":"reconcile:accounts"' in line for line in requests.splitlines()), requests[-2000:]
        alive()
    finally:
        for service in (listener, syncer, tab):
            service.terminate()


def _every_acl() -> list[object]:
    """(service, index) of every ACL of every service, Create entries included (the defaults)."""
    probe = Settings()
    cases = [
        pytest.param(service, index, id=f"{service}-{acl.operation}-{acl.resource_type}-{acl.name}")
        for service in SERVICES
        for index, acl in enumerate(acls_for(service, probe))
    ]
    assert len(cases) > len(SERVICES)
    return cases


def _named(acl: Acl) -> re.Pattern[str]:
    """The words a refusal of `acl` must contain: the operation and the resource (a prefix: any name under it)."""
    kind = {"topic": "Topic", "group": "Group", "transactionalId": "TransactionalId"}[acl.resource_type]
    end = "" if acl.pattern == "prefixed" else "'"
    return re.compile(rf"{acl.operation} on {kind} '{re.escape(acl.name)}{end}")


@pytest.mark.parametrize(("service", "index"), _every_acl())
def test_a_missing_acl_is_named(
    acl_broker: SecureBroker,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    tmp_path: Path,
    service: str,
    index: int,
) -> None:
    """Without one ACL the command ends by itself (no retry loop, no stall) with a line naming what is missing."""
    deployment = Deployment(acl_broker, salesforce_emulator, logisense_emulator, tmp_path)
    missing = deployment.acls(service)[index]
    if missing.operation != "Create":  # the topics exist, so only the missing permission can stop the command
        deployment.create_every_topic()
    deployment.grant(service, leave_out=missing)
    result = deployment.run(service, *COMMANDS[service], timeout=90)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"sfls {' '.join(COMMANDS[service])} without {missing} succeeded:\n{output[-3000:]}"
    assert _named(missing).search(output), f"no line names {missing.operation} on {missing.resource}:\n{output[-3000:]}"
    assert f"User:{USERS[service]}" in output
    assert "Traceback" not in output


def test_a_topic_nobody_created_is_named_as_missing(
    acl_broker: SecureBroker,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    tmp_path: Path,
) -> None:
    """With create_topics off and the topic never made, the command says the topic does not exist (not an ACL)."""
    deployment = Deployment(acl_broker, salesforce_emulator, logisense_emulator, tmp_path, create_topics=False)
    deployment.grant("requests")
    result = deployment.run("requests", "requests")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"Kafka topic '{deployment.prefix}.requests' does not exist" in output
    assert "SFLS_KAFKA__CREATE_TOPICS" in output
