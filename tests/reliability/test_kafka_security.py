"""Kafka over SASL/SCRAM-SHA-512 and TLS through the pass-through settings only.

A second broker (its own temporary state folder and free ports) gets a SASL_SSL listener with a
PEM keystore for a certificate a throwaway local CA issued for localhost/127.0.0.1, and a SCRAM
user created when its storage is formatted. The PLAINTEXT broker and controller listeners stay
on loopback (the broker's own readiness check uses them). sfls is then configured by
environment variables alone: SFLS_KAFKA__SECURITY_PROTOCOL, SASL_MECHANISM, SASL_USERNAME,
SASL_PASSWORD and SSL_CA_LOCATION become librdkafka keys, and topics, a producer, a
transactional producer and a consumer group all work through them.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import trustme
from confluent_kafka import KafkaError
from cryptography.hazmat.primitives import serialization

from devstack.kafka import LocalBroker, default_cache_dir, fetch_jars, free_port
from services.connection import check_kafka
from shared import kafka
from shared.settings import Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRAM_USER = "sfls"
SCRAM_PASSWORD = "scram-Pw-7f3a9c-secret"  # no ',', '=' or ']': it goes inside StorageTool's --add-scram value
WRONG_PASSWORD = "wrong-scram-Pw-0c1d"
JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclass(frozen=True)
class SecureBroker:
    bootstrap_servers: str  # the SASL_SSL listener
    ca_file: Path


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A broker with a SASL_SSL (SCRAM-SHA-512) listener and a certificate from a local CA."""
    folder = tmp_path_factory.mktemp("kafka-sasl-ssl")
    authority = trustme.CA(organization_name="sfls kafka security test")
    cert = authority.issue_cert("localhost", "127.0.0.1")
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )  # Kafka's PEM keystore reads PKCS#8 keys only
    keystore = folder / "keystore.pem"
    keystore.write_bytes(pkcs8 + b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    ca_file = folder / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    port, controller_port, secure_port = free_port(), free_port(), free_port()
    cache_dir = default_cache_dir()
    broker = LocalBroker(
        state_dir=folder / "state",
        lib_dir=fetch_jars(cache_dir),
        port=port,
        controller_port=controller_port,
        listeners=(
            f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},SASL_SSL://127.0.0.1:{secure_port}"
        ),
        advertised_listeners=f"PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{secure_port}",
        security_protocol_map="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
        extra_properties={
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": JAAS,
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(keystore),
        },
        format_args=("--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={SCRAM_PASSWORD}]"),
    )
    try:
        broker.start(timeout=180)
        yield SecureBroker(f"127.0.0.1:{secure_port}", ca_file)
    finally:
        broker.stop()


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
        for _ in range(150):  # serve callbacks until the refusal arrives (at most ~30 s)
            producer.poll(0.2)
            if any(e.code() == KafkaError._AUTHENTICATION for e in errors):
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
