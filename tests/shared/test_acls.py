"""The ACL table (shared/acls.py): what it renders, which topics each service creates, the chart's copy.

That the table is both sufficient and minimal is proven against a broker with an authorizer in
tests/reliability/test_kafka_acls.py; these are the pure parts.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from services.cli import app
from shared import kafka
from shared.acls import SERVICES, acls_for, kafka_acls_lines, own_topics, preflight, service_acls, strimzi_rules
from shared.settings import KafkaSettings, ListenerSettings, Settings
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def _settings(*, create_topics: bool = True) -> Settings:
    return Settings(
        kafka=KafkaSettings(topic_prefix="acme", create_topics=create_topics),
        listener=ListenerSettings(transactional_id="acme-listener"),
    )


def test_the_charts_copy_is_what_the_script_writes() -> None:
    """deploy/helm/sfls/files/kafka-acls.yaml is generated: edit shared/acls.py and run scripts/build_acls.py."""
    module = load_script("build_acls")
    checked_in = (ROOT / "deploy" / "helm" / "sfls" / "files" / "kafka-acls.yaml").read_text(encoding="utf-8")
    assert checked_in == module.render(), "run python scripts/build_acls.py"


def test_every_topic_is_created_by_the_service_that_uses_it() -> None:
    """Each service creates only its own topics, and together they create every topic sfls has."""
    settings = _settings()
    created = {service: {spec.name for spec in own_topics(service, settings)} for service in SERVICES}
    assert created["listener"] == {"acme.changes", "acme.listener.dlt", "acme.listener.checkpoints"}
    assert created["syncer"] == {"acme.changes", "acme.changes.dlt", "acme.requests"}
    assert created["backfill"] == {"acme.changes", "acme.listener.checkpoints"}
    assert created["dlq"] == set()
    assert created["requests"] == set()
    assert {"acme.importer.dlt", "acme.requests", "acme.catalogue.package", "acme.reference.country"} <= created[
        "importer"
    ]
    every = {spec.name for spec in kafka.Topics("acme").specs(settings.kafka)}
    assert set().union(*created.values()) == every


def test_create_entries_leave_with_create_topics_off() -> None:
    for service in SERVICES:
        with_create = acls_for(service, _settings())
        without = acls_for(service, _settings(create_topics=False))
        assert without, service
        assert not [acl for acl in without if acl.operation == "Create"], service
        assert [acl for acl in with_create if acl not in without] == [
            acl for acl in with_create if acl.operation == "Create"
        ]


def test_names_follow_the_prefix_and_transactional_id() -> None:
    listener = service_acls("listener", "acme", "acme-listener")
    ids = {acl.name for acl in listener if acl.resource_type == "transactionalId"}
    assert ids == {"acme-listener", "acme-listener.resync"}
    assert {acl.name for acl in service_acls("syncer", "acme", "x") if acl.resource_type == "group"} == {"acme.syncer"}
    assert {acl.name for acl in service_acls("dlq", "acme", "x") if acl.resource_type == "group"} == {"acme.reader"}


def test_kafka_acls_lines_and_strimzi_rules() -> None:
    acls = service_acls("importer", "acme", "x")
    lines = kafka_acls_lines(acls, "User:sfls-importer", "broker:9093")
    assert len(lines) == len(acls)
    assert any(
        "--operation Read --topic 'acme.catalogue.' --resource-pattern-type prefixed" in line for line in lines
    ), lines
    rules = strimzi_rules(acls)
    catalogue = next(rule for rule in rules if rule["resource"]["name"] == "acme.catalogue.")
    assert catalogue == {
        "resource": {"type": "topic", "name": "acme.catalogue.", "patternType": "prefix"},
        "operations": ["Read", "Write", "Create"],
    }


def test_the_command_prints_json_lines_per_acl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFLS_KAFKA__TOPIC_PREFIX", "acme")
    result = CliRunner().invoke(app, ["kafka", "acls", "--service", "syncer", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["operation"], r["resource_type"], r["name"]) for r in rows][:2] == [
        ("Read", "topic", "acme.changes"),
        ("Read", "group", "acme.syncer"),
    ]
    assert {r["principal"] for r in rows} == {"User:sfls-syncer"}


def test_an_unknown_service_is_refused() -> None:
    result = CliRunner().invoke(app, ["kafka", "acls", "--service", "sincer"])
    assert result.exit_code == 1
    assert "unknown service" in result.output
    assert "listener, syncer, importer, backfill, dlq, requests" in result.output


@pytest.mark.integration
def test_what_kafka_cannot_answer_in_time_is_counted_not_failed(kafka_settings: KafkaSettings) -> None:
    """Topics Kafka does not answer about within the check's deadline leave the command running and are counted."""
    settings = Settings(kafka=kafka_settings.model_copy(update={"topic_prefix": f"unasked-{uuid.uuid4().hex[:8]}"}))
    # None of this prefix's topics exist; for its first seconds Kafka's "unknown topic" may be a topic still
    # spreading through the metadata, so it is asked again, and the one-second deadline passes first.
    preflight("syncer", settings, timeout=1.0)
    unchecked = REGISTRY.get_sample_value("sfls_kafka_acls_unchecked", {"service": "syncer"})
    assert unchecked is not None
    assert unchecked >= 2, unchecked

    kafka.ensure_topics(kafka_settings, own_topics("syncer", settings))
    preflight("syncer", settings)
    assert REGISTRY.get_sample_value("sfls_kafka_acls_unchecked", {"service": "syncer"}) == 0
