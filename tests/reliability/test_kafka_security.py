"""Kafka over SASL/SCRAM-SHA-512 and TLS through the pass-through settings only.

A second broker (tests/reliability/secure_kafka.py, no authorizer) gets a SASL_SSL listener and a
SCRAM user. sfls is then configured by
environment variables alone: SFLS_KAFKA__SECURITY_PROTOCOL, SASL_MECHANISM, SASL_USERNAME,
SASL_PASSWORD and SSL_CA_LOCATION become librdkafka keys, and topics, a producer, a
transactional producer and a consumer group all work through them.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from confluent_kafka import KafkaError

from services.connection import check_kafka
from shared import kafka
from shared.settings import Settings, load_settings
from tests.reliability.secure_kafka import SecureBroker
from tests.reliability.secure_kafka import secure_broker as start_secure_broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRAM_USER = "sfls"
SCRAM_PASSWORD = "scram-Pw-7f3a9c-secret"  # no ',', '=' or ']': it goes inside StorageTool's --add-scram value
WRONG_PASSWORD = "wrong-scram-Pw-0c1d"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A broker with a SASL_SSL (SCRAM-SHA-512) listener and a certificate from a local CA, no authorizer."""
    with start_secure_broker(tmp_path_factory.mktemp("kafka-sasl-ssl"), {SCRAM_USER: SCRAM_PASSWORD}) as broker:
        yield broker


def _settings(broker: SecureBroker, password: str, tmp_path: Path) -> Settings:
    """Settings read from the environment alone, as a deployment would set them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
    env.update(
        {
            "SFLS_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "SFLS_KAFKA__TOPIC_PREFIX": f"sec{uuid.uuid4().hex[:8]}",
            "SFLS_KAFKA__PARTITIONS": "2",
            "SFLS_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "SFLS_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "SFLS_KAFKA__SASL_USERNAME": SCRAM_USER,
            "SFLS_KAFKA__SASL_PASSWORD": password,
            "SFLS_KAFKA__SSL_CA_LOCATION": str(broker.ca_file),
        }
    )
    with mock.patch.dict(os.environ, env, clear=True):
        return load_settings()


def test_pass_through_settings_become_librdkafka_keys(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """SFLS_KAFKA__* security variables arrive as librdkafka keys, and the password never prints."""
    settings = _settings(secure_broker, SCRAM_PASSWORD, tmp_path)
    config = settings.kafka.librdkafka()
    assert config == {
        "bootstrap.servers": secure_broker.bootstrap_servers,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": SCRAM_USER,
        "sasl.password": SCRAM_PASSWORD,
        "ssl.ca.location": str(secure_broker.ca_file),
    }
    assert SCRAM_PASSWORD not in repr(settings)


def test_topics_producer_and_consumer_work_over_sasl_ssl(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """Over SASL_SSL, sfls creates its topics and a transactional produce reaches a committed consumer group."""
    settings = _settings(secure_broker, SCRAM_PASSWORD, tmp_path)
    topics = kafka.Topics(settings.kafka.topic_prefix)
    kafka.ensure_topics(settings.kafka, topics.specs(settings.kafka))
    listed = kafka.admin(settings.kafka).list_topics(timeout=30).topics
    assert {spec.name for spec in topics.specs(settings.kafka)} <= set(listed)

    plain = kafka.producer(settings.kafka)
    sent = kafka.produce_and_flush(plain, topics.changes, [(b"001A", b"plain", [("source", b"cdc")])])
    transactional = kafka.producer(settings.kafka, transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    transactional.init_transactions(30)
    transactional.begin_transaction()
    transactional.produce(topics.changes, key=b"001A", value=b"in a transaction")
    transactional.commit_transaction(30)

    consumer = kafka.consumer(settings.kafka, f"g-{uuid.uuid4().hex[:8]}")
    try:
        consumer.subscribe([topics.changes])
        values: list[bytes] = []
        for _ in range(120):
            message = consumer.poll(0.5)
            if message is None:
                if len(values) == 2:
                    break
                continue
            kafka.raise_for_message(message)
            values.append(message.value() or b"")
            consumer.store_offsets(message)
        consumer.commit(asynchronous=False)
        committed = consumer.committed(consumer.assignment(), timeout=30)
    finally:
        consumer.close()
    assert sent == 1
    assert sorted(values) == [b"in a transaction", b"plain"]
    assert sum(tp.offset for tp in committed if tp.offset > 0) >= 2


def test_wrong_password_fails_with_a_clear_error(
    secure_broker: SecureBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong SCRAM password is refused: librdkafka says why, test-connection names the settings, no password shown."""
    settings = _settings(secure_broker, WRONG_PASSWORD, tmp_path)
    errors: list[KafkaError] = []
    producer = kafka.producer(settings.kafka, error_cb=errors.append)
    with caplog.at_level(logging.DEBUG, logger=kafka.LIBRDKAFKA_LOGGER.name):
        producer.produce(kafka.Topics(settings.kafka.topic_prefix).changes, value=b"never")
        for _ in range(150):  # serve callbacks until the refusal and its log line arrive (at most ~30 s)
            producer.poll(0.2)
            refused = any(e.code() == KafkaError._AUTHENTICATION for e in errors)
            logged = [r.getMessage() for r in caplog.records if r.name == kafka.LIBRDKAFKA_LOGGER.name]
            if refused and any("SASL authentication error" in line for line in logged):
                break
        producer.purge()
    authentication = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    assert authentication, [e.str() for e in errors]
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in authentication[0].str()
    logged = [r.getMessage() for r in caplog.records if r.name == kafka.LIBRDKAFKA_LOGGER.name]
    assert any("SASL authentication error" in line for line in logged), logged

    result = check_kafka(settings)
    assert not result.ok
    assert "SASL" in result.hint
    assert "invalid credentials" in result.detail  # librdkafka's own reason, not just "transport failure"
    texts = [e.str() for e in errors] + logged + [result.detail, result.hint]
    assert all(WRONG_PASSWORD not in text for text in texts)
