"""What each sfls command does on Kafka, as the least-privilege ACLs it needs: the one table.

Everything that speaks of Kafka permissions reads it: `sfls kafka acls` (kafka-acls.sh lines, Strimzi
ACL rules, JSON), the chart's KafkaUser resources (`deploy/helm/sfls/files/kafka-acls.yaml`, written by
`scripts/build_acls.py`), the topics each service creates, and `preflight`, which every command runs
before its first Kafka write so a missing permission ends it at once with one line that names the
operation and the resource (`shared/kafka.py` names the same for a refusal met later).

Kafka implies Describe from Read and Write (and Read on a group from nothing else), so the table lists
only what is needed; Kafka 3.0 and later need no IdempotentWrite on the cluster for idempotent
producers (Write on the topic suffices), so none is listed. Tests: `tests/reliability/test_kafka_acls.py`
runs every command against a broker with `allow.everyone.if.no.acl.found=false` granted exactly this
table, then with each entry removed in turn.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AclOperation  # type: ignore[attr-defined]
from prometheus_client import Gauge

from shared import kafka
from shared.errors import AuthorizationError, ConfigError, TransientError
from shared.kafka import denied_message, reader_group, requests_tab_group, syncer_group
from shared.settings import KafkaSettings, Settings

log = structlog.get_logger(__name__)

ACLS_UNCHECKED = Gauge(
    "sfls_kafka_acls_unchecked",
    "Topics and groups the start-up ACL check could not ask Kafka about (0: every permission was checked).",
    ["service"],
)

ResourceType = Literal["topic", "group", "transactionalId"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["Read", "Write", "Create", "Describe"]

# The commands with a principal of their own, each with the `sfls` commands it covers.
SERVICES: dict[str, str] = {
    "listener": "sfls listener",
    "syncer": "sfls syncer",
    "importer": "sfls import ...",
    "backfill": "sfls backfill, sfls reconcile --repair",
    "dlq": "sfls dlq list|show|replay",
    "requests": "sfls requests",
    "opportunity": "sfls opportunity push",
    "reconcile": "sfls reconcile",
    "requests_tab": "sfls requests-tab run|purge",
}


@dataclass(frozen=True)
class Acl:
    """One ALLOW rule: `operation` on the resource `name` (a literal name or a prefix)."""

    resource_type: ResourceType
    name: str
    operation: Operation
    why: str
    pattern: Pattern = "literal"
    create_topics_only: bool = False  # needed only while the service creates its own topics

    @property
    def resource(self) -> str:
        kind = {"topic": "Topic", "group": "Group", "transactionalId": "TransactionalId"}[self.resource_type]
        suffix = "*" if self.pattern == "prefixed" else ""
        return f"{kind} '{self.name}{suffix}'"


def _topics(prefix: str) -> dict[str, str]:
    return {
        "changes": f"{prefix}.changes",
        "changes_dlt": f"{prefix}.changes.dlt",
        "requests": f"{prefix}.requests",
        "checkpoints": f"{prefix}.listener.checkpoints",
        "listener_dlt": f"{prefix}.listener.dlt",
        "importer_dlt": f"{prefix}.importer.dlt",
        "catalogue": f"{prefix}.catalogue.",
        "reference": f"{prefix}.reference.",
    }


def _creates(names: Iterable[str], prefixed: Iterable[str] = ()) -> list[Acl]:
    why = "create the topic when it is missing (not needed with kafka.create_topics=false)"
    acls = [Acl("topic", name, "Create", why, create_topics_only=True) for name in names]
    return acls + [Acl("topic", name, "Create", why, "prefixed", create_topics_only=True) for name in prefixed]


def service_acls(service: str, prefix: str, transactional_id: str) -> list[Acl]:
    """The ACLs of one service (see SERVICES), Create entries included."""
    t = _topics(prefix)
    reader = Acl("group", reader_group(prefix), "Describe", "find the coordinator of the reader group (never commits)")
    table: dict[str, list[Acl]] = {
        "listener": [
            Acl("topic", t["changes"], "Write", "publish change events"),
            Acl("topic", t["listener_dlt"], "Write", "dead-letter malformed CDC messages"),
            Acl("topic", t["checkpoints"], "Read", "read the replay checkpoint on start"),
            Acl("topic", t["checkpoints"], "Write", "commit the replay checkpoint with the events"),
            Acl("transactionalId", transactional_id, "Write", "transactional publishing, fencing older listeners"),
            Acl("transactionalId", f"{transactional_id}.resync", "Write", "resyncs after gaps and overflows"),
            reader,
            *_creates([t["changes"], t["listener_dlt"], t["checkpoints"]]),
        ],
        "syncer": [
            Acl("topic", t["changes"], "Read", "consume change events"),
            Acl("group", syncer_group(prefix), "Read", "join the syncer group and commit its offsets"),
            Acl("topic", t["changes_dlt"], "Write", "dead-letter what LogiSense cannot take"),
            Acl("topic", t["requests"], "Write", "write the request log"),
            *_creates([t["changes"], t["changes_dlt"], t["requests"]]),
        ],
        "importer": [
            Acl("topic", t["catalogue"], "Read", "read the ids already imported (tombstones)", "prefixed"),
            Acl("topic", t["catalogue"], "Write", "publish catalogue records", "prefixed"),
            Acl("topic", t["reference"], "Read", "read the ids already imported (tombstones)", "prefixed"),
            Acl("topic", t["reference"], "Write", "publish reference records", "prefixed"),
            Acl("topic", t["importer_dlt"], "Write", "dead-letter records Salesforce rejected"),
            Acl("topic", t["requests"], "Write", "one request-log record per entity and run"),
            reader,
            *_creates([t["importer_dlt"], t["requests"]], prefixed=[t["catalogue"], t["reference"]]),
        ],
        "backfill": [
            Acl("topic", t["changes"], "Write", "publish RESYNC events"),
            Acl("topic", t["checkpoints"], "Read", "read where an interrupted backfill stopped (--resume)"),
            Acl("topic", t["checkpoints"], "Write", "commit the backfill's progress with its events"),
            Acl("transactionalId", f"{transactional_id}.backfill", "Write", "transactional publishing"),
            reader,
            *_creates([t["changes"], t["checkpoints"]]),
        ],
        "dlq": [
            Acl("topic", t["changes_dlt"], "Read", "list and show dead letters"),
            Acl("topic", t["changes"], "Write", "replay dead letters to the change topic"),
            reader,
        ],
        "requests": [
            Acl("topic", t["requests"], "Read", "read the request log"),
            reader,
        ],
        "opportunity": [
            Acl("topic", t["requests"], "Write", "one request-log record per push"),
            *_creates([t["requests"]]),
        ],
        "reconcile": [
            Acl("topic", t["requests"], "Write", "one request-log record per run"),
            *_creates([t["requests"]]),
        ],
        "requests_tab": [
            Acl("topic", t["requests"], "Read", "land the request log in Salesforce"),
            Acl("topic", t["changes_dlt"], "Read", "land the syncer's dead letters as error logs"),
            Acl("topic", t["listener_dlt"], "Read", "land the listener's dead letters as error logs"),
            Acl("topic", t["importer_dlt"], "Read", "land the importer's dead letters as error logs"),
            Acl("group", requests_tab_group(prefix), "Read", "join the writer group and commit its offsets"),
            *_creates([t["requests"], t["changes_dlt"], t["listener_dlt"], t["importer_dlt"]]),
        ],
    }
    if service not in table:
        raise KeyError(f"unknown service {service!r}; the services are {', '.join(SERVICES)}")
    return table[service]


def acls_for(service: str, settings: Settings) -> list[Acl]:
    """What `service` needs with these settings: Create entries only while it creates its topics."""
    every = service_acls(service, settings.kafka.topic_prefix, settings.listener.transactional_id)
    return [acl for acl in every if settings.kafka.create_topics or not acl.create_topics_only]


def own_topics(service: str, settings: Settings) -> list[kafka.TopicSpec]:
    """The topics `service` creates when they are missing: exactly those its Create ACLs cover."""
    prefix = settings.kafka.topic_prefix
    creatable = [acl for acl in service_acls(service, prefix, "-") if acl.operation == "Create"]
    return [
        spec
        for spec in kafka.Topics(prefix).specs(settings.kafka)
        if any(
            spec.name == acl.name or (acl.pattern == "prefixed" and spec.name.startswith(acl.name)) for acl in creatable
        )
    ]


# --- rendering ------------------------------------------------------------------------------------


def kafka_acls_lines(acls: Iterable[Acl], principal: str, bootstrap: str = "$BOOTSTRAP") -> list[str]:
    """`kafka-acls.sh` commands granting exactly these ACLs to `principal` (e.g. User:sfls-syncer)."""
    option = {"topic": "--topic", "group": "--group", "transactionalId": "--transactional-id"}
    lines = []
    for acl in acls:
        pattern = " --resource-pattern-type prefixed" if acl.pattern == "prefixed" else ""
        lines.append(
            f"kafka-acls.sh --bootstrap-server {bootstrap} --command-config admin.properties --add "
            f"--allow-principal {principal} --operation {acl.operation} {option[acl.resource_type]} "
            f"'{acl.name}'{pattern}  # {acl.why}"
        )
    return lines


def strimzi_rules(acls: Iterable[Acl]) -> list[dict[str, Any]]:
    """Strimzi KafkaUser `spec.authorization.acls` rules, one per resource with its operations."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for acl in acls:
        pattern = "prefix" if acl.pattern == "prefixed" else "literal"
        grouped.setdefault((acl.resource_type, acl.name, pattern), []).append(acl.operation)
    return [
        {"resource": {"type": kind, "name": name, "patternType": pattern}, "operations": operations}
        for (kind, name, pattern), operations in grouped.items()
    ]


# --- preflight ------------------------------------------------------------------------------------


def preflight(service: str, settings: Settings, *, timeout: float = 30.0) -> None:
    """Ask Kafka which operations this principal has on each topic and group of `service`; raise on a gap.

    Transactional ids cannot be asked about: their refusal is named when the producer starts
    (`services/listener/publisher.py`). Off with SFLS_KAFKA__CHECK_ACLS=false, for a broker whose
    authorizer does not report authorized operations. What Kafka did not answer about within `timeout`
    is logged (`acl_check_incomplete`) and counted in `sfls_kafka_acls_unchecked{service}`.
    """
    if not settings.kafka.check_acls:
        return
    wanted = [acl for acl in acls_for(service, settings) if acl.operation != "Create"]
    absent: set[str] = set()
    unchecked: list[str] = []
    missing = _missing(settings.kafka, wanted, absent, unchecked, timeout=timeout)
    ACLS_UNCHECKED.labels(service=service).set(len(unchecked))
    if absent:
        raise ConfigError(
            f"Kafka topic {', '.join(repr(name) for name in sorted(absent))} does not exist: have the platform "
            "create it, or let sfls create its topics (SFLS_KAFKA__CREATE_TOPICS=true, with Create on them)"
        )
    if missing:
        raise AuthorizationError(
            denied_message(
                [f"{acl.operation} on {acl.resource}" for acl in missing],
                settings.kafka,
                service=service,
            )
        )


# A refusal: Kafka answers so for a resource this principal may not describe, whether it exists or not.
_REFUSED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)
# A coordinator still loading (a fresh broker creates its offsets topic on the first group request), a request
# that timed out meanwhile, or a topic not in every broker's metadata yet: asked again, up to a deadline.
_ASK_AGAIN = (*kafka.COORDINATOR_NOT_READY, KafkaError._TIMED_OUT, KafkaError.UNKNOWN_TOPIC_OR_PART)
# A topic created a moment ago may not have reached every broker's metadata yet: asked again for a while.
UNKNOWN_TOPIC_SECONDS = 15.0


def _missing(
    settings: KafkaSettings, acls: list[Acl], absent: set[str], unchecked: list[str], *, timeout: float
) -> list[Acl]:
    """The ACLs Kafka does not grant; topics that do not exist are added to `absent`, resources left unasked to
    `unchecked`.

    What Kafka cannot answer about within `timeout` (a group coordinator still loading on a busy new
    broker) is left unchecked with a warning: the check must never be the reason a command fails, and
    the command still meets any refusal later, named the same way.
    """
    client = kafka.admin(settings)
    operations = {"Read": AclOperation.READ, "Write": AclOperation.WRITE, "Describe": AclOperation.DESCRIBE}
    topics = sorted({a.name for a in acls if a.resource_type == "topic" and a.pattern == "literal"})
    topics += sorted(_prefixed_examples(settings, acls))
    groups = sorted({a.name for a in acls if a.resource_type == "group"})
    granted: dict[tuple[str, str], set[Any] | None] = {}
    started = time.monotonic()
    deadline = started + timeout
    while True:
        pending: dict[tuple[str, str], Any] = {}
        if topics:
            described = client.describe_topics(
                TopicCollection(topics), include_authorized_operations=True, request_timeout=10
            )
            pending |= {("topic", name): future for name, future in described.items()}
        if groups:
            described = client.describe_consumer_groups(groups, include_authorized_operations=True, request_timeout=10)
            pending |= {("group", name): future for name, future in described.items()}
        settled = time.monotonic() > started + UNKNOWN_TOPIC_SECONDS
        retry = _collect(pending, granted, absent if settled else None)
        if not retry:
            break
        if time.monotonic() > deadline:
            unchecked += sorted(f"{kind} {name}" for kind, name in pending if (kind, name) not in granted)
            log.warning("acl_check_incomplete", unchecked=unchecked, error=retry[0].str())
            break
        time.sleep(0.5)
        topics = [name for kind, name in pending if kind == "topic" and ("topic", name) not in granted]
        groups = [name for kind, name in pending if kind == "group" and ("group", name) not in granted]
    missing = []
    for acl in acls:
        if acl.resource_type == "transactionalId":
            continue
        names = [acl.name] if acl.pattern == "literal" else [n for _, n in granted if n.startswith(acl.name)]
        for name in names:
            if (acl.resource_type, name) not in granted:  # unchecked, see above
                continue
            have = granted[(acl.resource_type, name)]
            if have is None or operations[acl.operation] not in have:
                missing.append(acl)
                break
    return missing


def _collect(
    pending: dict[tuple[str, str], Any], granted: dict[tuple[str, str], set[Any] | None], absent: set[str] | None
) -> list[Any]:
    """Record each answer in `granted` (None: refused or absent); return what to ask again.

    A topic Kafka says is unknown goes into `absent`, once `absent` is given (until then it is asked again).
    """
    retry = []
    for key, future in pending.items():
        try:
            granted[key] = set(future.result().authorized_operations or [])
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART and absent is not None:
                granted[key] = None
                absent.add(key[1])
            elif error.code() in _REFUSED:
                granted[key] = None
            elif error.retriable() or error.code() in _ASK_AGAIN:
                retry.append(error)
            else:
                raise TransientError(f"Kafka could not describe {key[0]} {key[1]}: {error.str()}") from exc
    return retry


def _prefixed_examples(settings: KafkaSettings, acls: list[Acl]) -> set[str]:
    """Existing topics under each prefixed topic ACL (a prefix itself cannot be described)."""
    prefixes = {a.name for a in acls if a.resource_type == "topic" and a.pattern == "prefixed"}
    if not prefixes:
        return set()
    listed = kafka.admin(settings).list_topics(timeout=30).topics
    return {name for name in listed if any(name.startswith(prefix) for prefix in prefixes)}
