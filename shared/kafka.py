"""A thin Kafka layer over confluent-kafka: topic names, topic creation, producers and consumers.

Producers are idempotent (acks=all); a transactional id makes them transactional. Consumers
never auto-commit and never auto-store offsets: the service stores and commits them itself,
after the work is safe (see services/syncer/consume.py for when). Consumers use the
cooperative-sticky assignor and read only committed records. A refusal met while producing or
consuming becomes an AuthorizationError naming what was refused (`denied_message`).

Reading a topic without joining a group (to its end, or only its offsets) is shared/kafka_reader.py.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from shared.errors import AuthorizationError, ConfigError, TransientError
from shared.retry import RetryPolicy, call_with_retries
from shared.settings import KafkaSettings

CATALOGUE_ENTITIES = (
    "package",
    "package_frequency",
    "package_currency",
    "package_service",
    "pricing_rule",
    "service",
    "usage_bucket",
    "rate_plan",
    "rate_group",
    "rate",
    "share_plan",
    "share_level",
)
REFERENCE_ENTITIES = (
    "account_status_type",
    "account_type",
    "contact_type",
    "contact_point_type",
    "country",
    "state",
    "owner",
    "currency",
    "owner_currency",
    "bill_group",
    "ar_term",
    "invoice",
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False


class Topics:
    """Every topic name sfls uses, under one configurable prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @property
    def changes(self) -> str:
        return f"{self.prefix}.changes"

    @property
    def changes_dlt(self) -> str:
        return f"{self.prefix}.changes.dlt"

    @property
    def requests(self) -> str:
        return f"{self.prefix}.requests"

    @property
    def listener_checkpoints(self) -> str:
        return f"{self.prefix}.listener.checkpoints"

    @property
    def listener_dlt(self) -> str:
        return f"{self.prefix}.listener.dlt"

    @property
    def importer_dlt(self) -> str:
        return f"{self.prefix}.importer.dlt"

    def catalogue(self, entity: str) -> str:
        return f"{self.prefix}.catalogue.{entity}"

    def reference(self, entity: str) -> str:
        return f"{self.prefix}.reference.{entity}"

    def specs(self, settings: KafkaSettings) -> list[TopicSpec]:
        """Every topic with its partition count and cleanup policy."""
        n = settings.partitions
        specs = [
            TopicSpec(self.changes, n),
            TopicSpec(self.changes_dlt, n),
            TopicSpec(self.requests, n),
            TopicSpec(self.listener_checkpoints, 1, compacted=True),
            TopicSpec(self.listener_dlt, 1),
            TopicSpec(self.importer_dlt, 1),
        ]
        specs += [TopicSpec(self.catalogue(e), 1, compacted=True) for e in CATALOGUE_ENTITIES]
        specs += [TopicSpec(self.reference(e), 1, compacted=True) for e in REFERENCE_ENTITIES]
        return specs


def reader_group(prefix: str) -> str:
    """The group id of every reader that only assigns partitions and never commits.

    It joins nothing, but librdkafka still asks for the group's coordinator, which needs Describe on it.
    """
    return f"{prefix}.reader"


def syncer_group(prefix: str) -> str:
    """The consumer group of every syncer replica."""
    return f"{prefix}.syncer"


def requests_tab_group(prefix: str) -> str:
    """The consumer group of every Requests tab writer replica."""
    return f"{prefix}.requests-tab"


def denied_message(what: list[str], settings: KafkaSettings | None, *, service: str | None = None) -> str:
    """One line: which operations on which resources Kafka refuses to whom, and where the full list is."""
    principal = settings.librdkafka().get("sasl.username") if settings is not None else None
    who = f"User:{principal}" if principal else "this client's principal"
    command = f"sfls kafka acls --service {service}" if service else "sfls kafka acls --service <name>"
    return f"Kafka denies {', '.join(what)} to {who}; grant it (`{command}` prints every ACL this needs)"


# librdkafka's own log lines go through Python logging (and so through the JSON, secret-masking
# configuration of shared/observability.py) instead of raw stderr.
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")
log = structlog.get_logger(__name__)


def admin(settings: KafkaSettings, **overrides: Any) -> AdminClient:
    config: dict[str, Any] = {**settings.librdkafka(), "logger": LIBRDKAFKA_LOGGER, **overrides}
    return AdminClient(config)


def ensure_topics(settings: KafkaSettings, specs: Iterable[TopicSpec], timeout: float = 30.0) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are.

    Only missing topics are asked for, so a principal without Create works on topics the platform made.
    """
    client = admin(settings)
    wanted = list(specs)
    if not wanted:
        return
    try:
        existing = client.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise TransientError(f"could not list Kafka topics: {exc.args[0].str()}") from exc
    new = [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=settings.replication_factor,
            config={"cleanup.policy": "compact"} if spec.compacted else {},
        )
        for spec in wanted
        if spec.name not in existing
    ]
    if not new:
        return
    for name, future in client.create_topics(new, operation_timeout=timeout, request_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if error.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
                raise AuthorizationError(
                    denied_message([f"Create on Topic '{name}'"], settings)
                    + ", or have the platform create it and set SFLS_KAFKA__CREATE_TOPICS=false"
                ) from None
            if error.code() == KafkaError.INVALID_REPLICATION_FACTOR:
                raise ConfigError(
                    f"SFLS_KAFKA__REPLICATION_FACTOR: cannot create {name} with replication factor "
                    f"{settings.replication_factor}: {error.str()}; lower it to the broker count"
                ) from exc
            raise TransientError(f"could not create topic {name}: {error.str()}") from exc


# A long-running service started before its broker waits for it (as a Deployment restarted with the cluster
# would), with backoff up to 30 s between tries; batch commands (import, backfill) fail fast instead.
BROKER_WAIT = RetryPolicy(max_attempts=sys.maxsize, base_seconds=1.0, cap_seconds=30.0)


async def ensure_topics_waiting(
    settings: KafkaSettings,
    specs: Iterable[TopicSpec],
    *,
    policy: RetryPolicy = BROKER_WAIT,
    on_wait: Callable[[], None] = lambda: None,
) -> None:
    """`ensure_topics`, retried while the broker cannot be reached; a ConfigError still ends it at once."""
    wanted = list(specs)

    def waiting(exc: TransientError, attempt: int, wait: float) -> None:
        log.warning("kafka_unavailable", error=str(exc), attempt=attempt, retry_in_seconds=round(wait, 1))
        on_wait()

    # Each try is short, so a broker that comes up is noticed within seconds; a slow creation that times out
    # is simply tried again (TOPIC_ALREADY_EXISTS counts as done).
    await call_with_retries(
        lambda: asyncio.to_thread(ensure_topics, settings, wanted, timeout=10.0), policy, on_retry=waiting
    )


def producer(settings: KafkaSettings, *, transactional_id: str | None = None, **overrides: Any) -> Producer:
    """An idempotent producer (acks=all); transactional when given a transactional id."""
    config: dict[str, Any] = {
        **settings.librdkafka(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "logger": LIBRDKAFKA_LOGGER,
    }
    if transactional_id:
        config["transactional.id"] = transactional_id
    config.update(overrides)
    return Producer(config)


def consumer(settings: KafkaSettings, group_id: str, **overrides: Any) -> Consumer:
    """A group consumer with manual offset storage and commits, reading committed records only."""
    config: dict[str, Any] = {
        **settings.librdkafka(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
        "logger": LIBRDKAFKA_LOGGER,
    }
    config.update(overrides)
    return Consumer(config)


def raise_for_message(
    message: Message,
    *,
    group: str = "",
    group_operation: str = "Read",
    settings: KafkaSettings | None = None,
) -> None:
    """Turn a consumer error message into an exception; partition EOF is not an error.

    A refusal names what was refused: Read on the message's topic, or `group_operation` on `group`
    (Read for a member of a group, Describe for a reader that only looks up its coordinator).
    """
    error = message.error()
    if error is None or error.code() == KafkaError._PARTITION_EOF:
        return
    if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise AuthorizationError(denied_message([f"Read on Topic '{message.topic()}'"], settings))
    if error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
        where = f"Group '{group}'" if group else "this consumer's group"
        raise AuthorizationError(denied_message([f"{group_operation} on {where}"], settings))
    if error.fatal():
        raise KafkaException(error)
    raise TransientError(f"Kafka consumer error: {error.str()}")


# A group coordinator still moving or loading (a fresh broker answers NOT_COORDINATOR for a while): ask again.
COORDINATOR_NOT_READY = (
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
)


Headers = list[tuple[str, str | bytes | None]]


def produce(
    prod: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Headers | None = None,
    *,
    on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
) -> None:
    """Queue one record, waiting (serving delivery callbacks) while librdkafka's local queue is full.

    A topic librdkafka already knows it may not write to is refused here, not in the delivery report.
    """
    while True:
        try:
            if on_delivery is None:
                prod.produce(topic, key=key, value=value, headers=headers)
            else:
                prod.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
        except BufferError:
            prod.poll(0.05)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise AuthorizationError(denied_message([f"Write on Topic '{topic}'"], None)) from None
            raise
        else:
            return


def produce_and_flush(
    prod: Producer,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]],
    timeout: float = 30.0,
    *,
    settings: KafkaSettings | None = None,
) -> int:
    """Produce records and wait until every one is acknowledged; raise on the first failure.

    A refused write raises AuthorizationError naming the topic (and the principal, given `settings`).
    """
    failures: list[str] = []
    denied: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err.str())
            if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                denied.append(f"Write on Topic '{topic}'")

    count = 0
    for key, value, headers in records:
        produce(prod, topic, key, value, headers, on_delivery=on_delivery)
        count += 1
    remaining = prod.flush(timeout)
    if denied:
        raise AuthorizationError(denied_message(denied[:1], settings))
    if remaining or failures:
        raise TransientError(
            f"{len(failures) or remaining} of {count} records to {topic} were not acknowledged"
            + (f": {failures[0]}" if failures else "")
        )
    return count
