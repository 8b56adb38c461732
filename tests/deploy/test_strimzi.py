"""The chart's Strimzi objects: KafkaTopics that match the code's topics, KafkaUsers with the generated ACLs,
each pod on its own principal, all validated against Strimzi's own CRD schemas."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from shared.kafka import Topics
from shared.settings import KafkaSettings
from tests.deploy.conftest import CHART, STRIMZI_API_VERSION, Render, run_helm

pytestmark = pytest.mark.integration  # runs helm (tests/conftest.py: OUTSIDE_THE_PROCESS)

LOCKED_DOWN = CHART / "ci" / "locked-down.yaml"
ACL_FILE = CHART / "files" / "kafka-acls.yaml"
# A DNS-1123 subdomain: what Kubernetes accepts as the name of a KafkaTopic or KafkaUser.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
STRIMZI_ON = ("strimzi.cluster=events", "strimzi.topics.enabled=true", "strimzi.users.enabled=true")
DAY_MS = 24 * 3600 * 1000
WORKLOADS = ("listener", "syncer", "requests-tab", "importer")
REQUESTS_TAB_ON = "requestsTab.enabled=true"


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert found, f"no {kind} rendered"
    return found


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def strict(schema: Any) -> Any:
    """The CRD schema with unknown fields forbidden wherever it lists the fields (as `kubectl --validate=strict`
    does; the API server would otherwise prune them silently), except where it preserves unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
        and result["properties"] != {}
    ):
        result["additionalProperties"] = False
    return result


def crd_schema(folder: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """The openAPIV3Schema Strimzi publishes for this object's kind and API version."""
    group, version = doc["apiVersion"].split("/")
    assert group == "kafka.strimzi.io"
    (path,) = (folder / "crds" / version).glob(f"*-Crd-{doc['kind'].lower()}.yaml")
    crd = yaml.safe_load(path.read_text())
    assert crd["spec"]["names"]["kind"] == doc["kind"]
    (served,) = [entry for entry in crd["spec"]["versions"] if entry["name"] == version]
    assert served["served"] is True
    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
    return schema


def validate(folder: Path, doc: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(strict(crd_schema(folder, doc))).validate(doc)


def config_kafka(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (configmap,) = [doc for doc in docs if doc["kind"] == "ConfigMap" and component(doc) == "config"]
    kafka: dict[str, Any] = yaml.safe_load(configmap["data"]["config.yaml"])["kafka"]
    return kafka


def pods(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            found.append((component(doc), doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "CronJob":
            found.append((component(doc), doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    assert found
    return found


def expected_acls(principals: list[str], prefix: str, transactional_id: str, create: bool) -> list[dict[str, Any]]:
    """What a KafkaUser's ACLs must be, computed from files/kafka-acls.yaml independently of the template."""
    generated = yaml.safe_load(ACL_FILE.read_text())
    rules: list[dict[str, Any]] = []
    for principal in principals:
        source = list(generated[principal]["always"]) + (list(generated[principal]["createTopics"]) if create else [])
        for rule in source:
            resource = {"type": rule["resource"]["type"]}
            if resource["type"] != "cluster":
                name = rule["resource"]["name"].replace("{prefix}", prefix)
                resource["name"] = name.replace("{transactional_id}", transactional_id)
                pattern = rule["resource"].get("patternType", "literal")
                resource["patternType"] = "prefix" if pattern == "prefixed" else pattern
            expected = {"resource": resource, "operations": rule["operations"]}
            if expected not in rules:
                rules.append(expected)
    return rules


def canonical(rules: list[dict[str, Any]]) -> list[str]:
    return sorted(yaml.safe_dump(rule, sort_keys=True) for rule in rules)


@pytest.mark.parametrize(("prefix", "partitions"), [("billing.sfls", 6), ("sfls", 12), ("Acme_Sync", 3)])
def test_kafka_topics_match_the_code(render: Render, prefix: str, partitions: int) -> None:
    """One KafkaTopic per topic of shared.kafka.Topics.specs: same names, partitions and cleanup policy."""
    docs = render(None, *STRIMZI_ON, f"kafka.topicPrefix={prefix}", f"kafka.partitions={partitions}")
    topics = by_kind(docs, "KafkaTopic")
    rendered = {
        doc["spec"]["topicName"]: (doc["spec"]["partitions"], doc["spec"]["config"]["cleanup.policy"]) for doc in topics
    }
    specs = Topics(prefix).specs(KafkaSettings(topic_prefix=prefix, partitions=partitions))
    assert specs
    expected = {spec.name: (spec.partitions, "compact" if spec.compacted else "delete") for spec in specs}
    assert rendered == expected
    assert len(topics) == len(specs), "one KafkaTopic per topic, none twice"
    names = [doc["metadata"]["name"] for doc in topics]
    assert len(set(names)) == len(names)
    for doc in topics:
        assert DNS_SUBDOMAIN.match(doc["metadata"]["name"]), doc["metadata"]["name"]
        assert doc["metadata"]["name"] == doc["spec"]["topicName"].lower().replace("_", "-")
        assert doc["spec"]["replicas"] == 3
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "events"


def test_kafka_topic_retention_and_durability(render: Render) -> None:
    """Changes and requests keep 7 days, dead letters 30, compacted topics no retention; min ISR on all."""
    topics = {doc["spec"]["topicName"]: doc for doc in by_kind(render(LOCKED_DOWN), "KafkaTopic")}
    retention = {name: doc["spec"]["config"].get("retention.ms") for name, doc in topics.items()}
    assert retention["billing.sfls.changes"] == retention["billing.sfls.requests"] == 7 * DAY_MS
    dead_letters = [name for name in topics if name.endswith(".dlt")]
    assert sorted(dead_letters) == [
        "billing.sfls.changes.dlt",
        "billing.sfls.importer.dlt",
        "billing.sfls.listener.dlt",
    ]
    assert all(retention[name] == 30 * DAY_MS for name in dead_letters)
    compacted = [name for name, doc in topics.items() if doc["spec"]["config"]["cleanup.policy"] == "compact"]
    assert "billing.sfls.listener.checkpoints" in compacted
    assert all(retention[name] is None for name in compacted)
    assert {doc["spec"]["config"]["min.insync.replicas"] for doc in topics.values()} == {2}
    for doc in topics.values():
        assert doc["metadata"]["namespace"] == "kafka"
        assert doc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    tuned = render(LOCKED_DOWN, "strimzi.topics.retentionMs=3600000", "strimzi.topics.minInSyncReplicas=3")
    changes = next(doc for doc in by_kind(tuned, "KafkaTopic") if doc["spec"]["topicName"] == "billing.sfls.changes")
    assert changes["spec"]["config"]["retention.ms"] == 3600000
    assert changes["spec"]["config"]["min.insync.replicas"] == 3


def test_topics_managed_by_strimzi_are_not_created_by_the_services(render: Render) -> None:
    """The config file says create_topics: false exactly when Strimzi manages the topics (or createTopics is off)."""
    assert config_kafka(render(None))["create_topics"] is True
    assert config_kafka(render(None, "strimzi.cluster=events", "strimzi.users.enabled=true"))["create_topics"] is True
    assert config_kafka(render(LOCKED_DOWN))["create_topics"] is False
    assert config_kafka(render(None, "kafka.createTopics=false"))["create_topics"] is False


@pytest.mark.parametrize("api_version", ["kafka.strimzi.io/v1", "kafka.strimzi.io/v1beta2"])
@pytest.mark.parametrize("authentication", ["scram-sha-512", "tls"])
def test_strimzi_objects_pass_the_crd_schemas(
    render: Render, strimzi_crds: Path, api_version: str, authentication: str
) -> None:
    """Every KafkaTopic and KafkaUser validates (unknown fields are errors) against Strimzi's CRD of its version."""
    docs = render(LOCKED_DOWN, f"strimzi.apiVersion={api_version}", f"strimzi.users.authentication={authentication}")
    objects = by_kind(docs, "KafkaTopic") + by_kind(docs, "KafkaUser")
    for doc in objects:
        assert doc["apiVersion"] == api_version
        assert DNS_SUBDOMAIN.match(doc["metadata"]["name"]), doc["metadata"]["name"]
        assert len(doc["metadata"]["name"]) <= 253
        validate(strimzi_crds, doc)
    users = by_kind(docs, "KafkaUser")
    assert {doc["spec"]["authentication"]["type"] for doc in users} == {authentication}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "authorization", "acls", 0, "resource", "patternType"), "prefixed"),
        (("spec", "authorization", "acls", 0, "operations"), ["Frobnicate"]),
        (("spec", "authorization", "acls", 0, "resource", "kind"), "topic"),
        (("spec", "authentication", "type"), "scram-sha-256"),
    ],
    ids=["kafka-pattern-type", "operation", "unknown-field", "mechanism"],
)
def test_crd_validation_rejects_what_strimzi_would(
    render: Render, strimzi_crds: Path, path: tuple[Any, ...], value: Any
) -> None:
    """The schema check is real: a Kafka-style pattern type, a bad operation or an unknown field fails it."""
    (user,) = [doc for doc in by_kind(render(LOCKED_DOWN), "KafkaUser") if component(doc) == "syncer"]
    validate(strimzi_crds, user)
    broken = copy.deepcopy(user)
    node: Any = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(strimzi_crds, broken)


def test_crd_validation_rejects_a_bad_topic(render: Render, strimzi_crds: Path) -> None:
    """A KafkaTopic with no partitions or a misspelt field fails the CRD schema."""
    topic = by_kind(render(LOCKED_DOWN), "KafkaTopic")[0]
    validate(strimzi_crds, topic)
    for mutate in ({"partitions": 0}, {"topicname": "x"}, {"replicas": "three"}):
        broken = copy.deepcopy(topic)
        broken["spec"].update(mutate)
        with pytest.raises(jsonschema.ValidationError):
            validate(strimzi_crds, broken)


def test_strimzi_crds_come_from_the_pinned_registry_package(strimzi_crds: Path) -> None:
    """The CRDs are Strimzi's own (io.strimzi:api test jar), both versions, fetched by the cached step."""
    assert (strimzi_crds / ".complete").read_text().strip() == STRIMZI_API_VERSION
    for version in ("v1", "v1beta2"):
        for kind in ("kafkatopic", "kafkauser"):
            (path,) = (strimzi_crds / "crds" / version).glob(f"*-Crd-{kind}.yaml")
            crd = yaml.safe_load(path.read_text())
            assert crd["kind"] == "CustomResourceDefinition"
            assert crd["spec"]["group"] == "kafka.strimzi.io"
            assert version in [entry["name"] for entry in crd["spec"]["versions"]]


@pytest.mark.parametrize("create_topics", [True, False], ids=["services-create-topics", "strimzi-topics"])
def test_kafka_users_carry_the_generated_acls(render: Render, create_topics: bool) -> None:
    """Each workload's KafkaUser has its always rules (plus createTopics when it creates topics); ops has the
    union of backfill, dlq and requests; placeholders are filled in."""
    sets = (
        "strimzi.cluster=events",
        "strimzi.users.enabled=true",
        f"strimzi.topics.enabled={str(not create_topics).lower()}",
    )
    sets += ("kafka.topicPrefix=billing.sfls", "config.listener.transactional_id=billing-listener", REQUESTS_TAB_ON)
    users = {component(doc): doc for doc in by_kind(render(None, *sets), "KafkaUser")}
    assert set(users) == {*WORKLOADS, "ops"}
    sources = {
        "listener": ["listener"],
        "syncer": ["syncer"],
        "requests-tab": ["requests_tab"],
        "importer": ["importer"],
        "ops": ["backfill", "dlq", "requests", "opportunity"],
    }
    for name, user in users.items():
        assert user["metadata"]["name"] == f"demo-sfls-{name}"
        assert user["spec"]["authorization"]["type"] == "simple"
        rendered = user["spec"]["authorization"]["acls"]
        assert rendered, f"{name} has no ACLs"
        assert canonical(rendered) == canonical(
            expected_acls(sources[name], "billing.sfls", "billing-listener", create_topics)
        )
        assert all("{" not in rule["resource"].get("name", "") for rule in rendered)
        creates = [rule for rule in rendered if "Create" in rule["operations"]]
        generated = yaml.safe_load(ACL_FILE.read_text())
        if any(generated[source]["createTopics"] for source in sources[name]):
            assert bool(creates) == create_topics, f"{name}: Create only while the services create topics"
    without_listener = by_kind(render(None, *sets, "listener.enabled=false"), "KafkaUser")
    assert {component(doc) for doc in without_listener} == {"syncer", "requests-tab", "importer", "ops"}, (
        "no principal for what is off"
    )
    default = by_kind(render(None, *sets[:-1]), "KafkaUser")
    assert "requests-tab" not in {component(doc) for doc in default}, "the Requests tab writer is off by default"
    listener = users["listener"]["spec"]["authorization"]["acls"]
    assert {"type": "transactionalId", "name": "billing-listener", "patternType": "literal"} in [
        r["resource"] for r in listener
    ]


def copy_chart(tmp_path: Path, acls: str) -> Path:
    chart = tmp_path / "sfls"
    shutil.copytree(CHART, chart)
    (chart / "files" / "kafka-acls.yaml").write_text(acls)
    return chart


ONE_RULE = (
    "  always:\n"
    '    - resource: {{type: topic, name: "{name}", patternType: {pattern}}}\n'
    "      operations: [Read]\n"
    "  createTopics: []\n"
)


def acl_file(name: str, pattern: str) -> str:
    entries = {
        principal: ONE_RULE.format(name=name, pattern=pattern) for principal in ("listener", "syncer", "importer")
    }
    entries.update(
        dict.fromkeys(
            ("backfill", "dlq", "requests", "opportunity", "reconcile", "requests_tab"),
            "  always: []\n  createTopics: []\n",
        )
    )
    return "".join(f"{principal}:\n{body}" for principal, body in entries.items())


def test_kafka_pattern_type_prefixed_becomes_strimzis_prefix(helm: str, tmp_path: Path, strimzi_crds: Path) -> None:
    """A generated `prefixed` (Kafka's word) is rendered as Strimzi's `prefix`."""
    chart = copy_chart(tmp_path, acl_file("{prefix}.catalogue.", "prefixed"))
    result = run_helm(helm, "template", "demo", str(chart), "--set", ",".join(STRIMZI_ON))
    assert result.returncode == 0, result.stderr
    users = [doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == "KafkaUser"]
    syncer = next(doc for doc in users if component(doc) == "syncer")
    assert syncer["spec"]["authorization"]["acls"] == [
        {"resource": {"type": "topic", "name": "sfls.catalogue.", "patternType": "prefix"}, "operations": ["Read"]}
    ]
    validate(strimzi_crds, syncer)


@pytest.mark.parametrize(
    ("acls", "message"),
    [
        (acl_file("{group_id}", "literal"), 'the chart does not know the placeholder in "{group_id}"'),
        ("listener: {always: [], createTopics: []}\n", "files/kafka-acls.yaml has no entry for syncer"),
        ("", "files/kafka-acls.yaml is missing from the chart"),
    ],
    ids=["unknown-placeholder", "missing-principal", "missing-file"],
)
def test_acl_file_problems_fail_the_render(helm: str, tmp_path: Path, acls: str, message: str) -> None:
    """An ACL file the chart cannot use fails `helm template` with the reason, never renders partial ACLs."""
    chart = copy_chart(tmp_path, acls)
    if not acls:
        (chart / "files" / "kafka-acls.yaml").unlink()
    result = run_helm(helm, "template", "demo", str(chart), "--set", ",".join(STRIMZI_ON))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def env_of(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in spec["containers"][0]["env"]}


def mounted_file(spec: dict[str, Any], location: str) -> tuple[str, str]:
    """(Secret name, key) of the file a *_LOCATION variable points at, through the container's mounts."""
    container = spec["containers"][0]
    directory, filename = location.rsplit("/", 1)
    (mount,) = [mount for mount in container["volumeMounts"] if mount["mountPath"] == directory]
    assert mount["readOnly"] is True
    (volume,) = [volume for volume in spec["volumes"] if volume["name"] == mount["name"]]
    (item,) = [item for item in volume["secret"]["items"] if item["path"] == filename]
    return volume["secret"]["secretName"], item["key"]


def test_each_pod_uses_its_own_scram_principal(render: Render) -> None:
    """SCRAM: each workload's pods log in as their KafkaUser with the password from the Secret Strimzi writes,
    over SASL_SSL with the cluster CA; the shared credentials Secret's Kafka password is not used."""
    docs = render(LOCKED_DOWN)
    users = {doc["metadata"]["name"] for doc in by_kind(docs, "KafkaUser")}
    seen = set()
    for name, spec in pods(docs):
        env = env_of(spec)
        user = f"demo-sfls-{'ops' if name == 'reconcile' else name}"  # the reconcile CronJob runs as ops
        assert user in users
        assert env["SFLS_KAFKA__SASL_USERNAME"]["value"] == user
        assert env["SFLS_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": user, "key": "password"}
        assert env["SFLS_KAFKA__SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
        assert env["SFLS_KAFKA__SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
        ca = mounted_file(spec, env["SFLS_KAFKA__SSL_CA_LOCATION"]["value"])
        assert ca == ("events-cluster-ca-cert-copy", "ca.crt")
        assert "SFLS_KAFKA__SSL_KEY_LOCATION" not in env
        seen.add(name)
    assert seen == {*WORKLOADS, "reconcile"}
    default_ca = render(None, *STRIMZI_ON)
    for _, spec in pods(default_ca):
        assert mounted_file(spec, env_of(spec)["SFLS_KAFKA__SSL_CA_LOCATION"]["value"]) == (
            "events-cluster-ca-cert",
            "ca.crt",
        )


def test_each_pod_uses_its_own_tls_certificate(render: Render) -> None:
    """tls: each workload mounts its KafkaUser's certificate and key and the cluster CA, over SSL, and no SASL."""
    docs = render(
        None, *STRIMZI_ON, REQUESTS_TAB_ON, "strimzi.users.authentication=tls", "strimzi.users.secretPrefix=kafka-"
    )
    seen = set()
    for name, spec in pods(docs):
        env = env_of(spec)
        assert env["SFLS_KAFKA__SECURITY_PROTOCOL"]["value"] == "SSL"
        assert mounted_file(spec, env["SFLS_KAFKA__SSL_CERTIFICATE_LOCATION"]["value"]) == (
            f"kafka-demo-sfls-{name}",
            "user.crt",
        )
        assert mounted_file(spec, env["SFLS_KAFKA__SSL_KEY_LOCATION"]["value"]) == (
            f"kafka-demo-sfls-{name}",
            "user.key",
        )
        assert mounted_file(spec, env["SFLS_KAFKA__SSL_CA_LOCATION"]["value"]) == ("events-cluster-ca-cert", "ca.crt")
        assert not [key for key in env if key.startswith("SFLS_KAFKA__SASL")], name
        seen.add(name)
    assert seen == set(WORKLOADS)


def test_pod_kafka_settings_load_in_sfls(render: Render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered config file plus a pod's environment give sfls the librdkafka settings of its KafkaUser."""
    from shared.settings import load_settings

    docs = render(LOCKED_DOWN)
    (configmap,) = [doc for doc in docs if doc["kind"] == "ConfigMap" and component(doc) == "config"]
    path = tmp_path / "config.yaml"
    path.write_text(configmap["data"]["config.yaml"])
    ((_, spec),) = [(name, spec) for name, spec in pods(docs) if name == "syncer"]
    monkeypatch.chdir(tmp_path)
    for item in spec["containers"][0]["env"]:
        if item["name"].startswith("SFLS_KAFKA__"):
            monkeypatch.setenv(item["name"], item.get("value", "secret-from-" + str(item.get("valueFrom"))))
    monkeypatch.setenv("SFLS_CONFIG", str(path))
    settings = load_settings()
    assert settings.kafka.create_topics is False
    config = settings.kafka.librdkafka()
    assert config["sasl.username"] == "demo-sfls-syncer"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["ssl.ca.location"] == "/etc/sfls-kafka/ca/ca.crt"
    assert config["sasl.password"].startswith("secret-from-")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("strimzi.topics.enabled=true",), "strimzi.cluster: name the Strimzi Kafka cluster"),
        (
            (*STRIMZI_ON, "kafka.config.security\\.protocol=SASL_PLAINTEXT"),
            "kafka.config.security.protocol: strimzi.users.enabled sets it",
        ),
        (
            (*STRIMZI_ON, "strimzi.topics.minInSyncReplicas=4"),
            "strimzi.topics.minInSyncReplicas (4) is above kafka.replicationFactor (3)",
        ),
        ((*STRIMZI_ON, "kafka.topicPrefix=-sfls"), "not a DNS-1123 subdomain"),
    ],
    ids=["no-cluster", "kafka-config-conflict", "min-isr", "topic-name"],
)
def test_bad_strimzi_values_fail_with_the_fix(helm: str, sets: tuple[str, ...], message: str) -> None:
    """Values that would give broken Strimzi objects or two settings for one librdkafka key fail the render."""
    result = run_helm(helm, "template", "demo", str(CHART), *[arg for item in sets for arg in ("--set", item)])
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_schema_rejects_bad_strimzi_values(helm: str) -> None:
    """values.schema.json closes the strimzi block: a wrong authentication or apiVersion fails with its path."""
    for item, path in (
        ("strimzi.users.authentication=scram-sha-256", "/strimzi/users/authentication"),
        ("strimzi.apiVersion=kafka.strimzi.io/v1alpha1", "/strimzi/apiVersion"),
        ("strimzi.topics.partitions=3", "partitions"),
    ):
        result = run_helm(helm, "template", "demo", str(CHART), "--set", item)
        assert result.returncode != 0, item
        assert path in result.stderr, result.stderr
