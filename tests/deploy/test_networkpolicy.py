"""The chart's NetworkPolicies: one per workload, metrics-only ingress, egress only to the named targets.

Their Kubernetes schema validation runs in test_chart.py over ci/locked-down.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import CHART, Render, run_helm

pytestmark = pytest.mark.integration  # runs helm (tests/conftest.py: OUTSIDE_THE_PROCESS)

LOCKED_DOWN = CHART / "ci" / "locked-down.yaml"
DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
STRIMZI_BROKERS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}},
    "podSelector": {"matchLabels": {"strimzi.io/cluster": "events"}},
}
SALESFORCE = [{"ipBlock": {"cidr": "192.0.2.0/24"}}, {"ipBlock": {"cidr": "198.51.100.0/24"}}]
LOGISENSE = [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
PUSHGATEWAY = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus-pushgateway"}},
}
HTTPS = [{"port": 443, "protocol": "TCP"}]
# The smallest values that switch the policies on: the two SaaS endpoints need addresses, Kafka a peer.
ON = (
    "networkPolicy.enabled=true",
    "networkPolicy.egress.salesforce.cidrs={192.0.2.0/24}",
    "networkPolicy.egress.logisense.cidrs={203.0.113.0/24}",
    "networkPolicy.egress.kafka.cidrs={10.20.0.0/16}",
)


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {component(doc): doc for doc in docs if doc["kind"] == "NetworkPolicy"}
    assert found, "no NetworkPolicy rendered"
    return found


def pod_labels(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    found = []
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            found.append((component(doc), doc["spec"]["template"]["metadata"]["labels"]))
        elif doc["kind"] == "CronJob":
            found.append((component(doc), doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]))
    assert found
    return found


def test_off_by_default(render: Render) -> None:
    """No NetworkPolicy unless asked: the SaaS egress rules need addresses only the installer knows."""
    for values in (None, CHART / "ci" / "full.yaml"):
        assert not [doc for doc in render(values) if doc["kind"] == "NetworkPolicy"]


def test_one_policy_per_workload_selecting_exactly_its_pods(render: Render) -> None:
    """Each workload's policy selects its own pods (Job and CronJob pods for the importer) and no other's."""
    docs = render(LOCKED_DOWN)
    found = policies(docs)
    assert set(found) == {"listener", "syncer", "requests-tab", "importer", "reconcile"}
    pods = pod_labels(docs)
    assert {name for name, _ in pods} == set(found)
    for name, policy in found.items():
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        for pod, labels in pods:
            assert (selector.items() <= labels.items()) == (pod == name), f"{name}'s policy vs {pod}'s pods"
    assert sum(name == "importer" for name, _ in pods) == 2, "the import Job and the CronJob"


def test_ingress_is_the_metrics_port_from_prometheus_only(render: Render, tmp_path: Path) -> None:
    """The listener, syncers and Requests tab writer accept only the metrics port, only from the configured peers;
    the importer nothing."""
    found = policies(render(LOCKED_DOWN))
    prometheus = [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    for name in ("listener", "syncer", "requests-tab"):
        assert found[name]["spec"]["ingress"] == [{"from": prometheus, "ports": [{"port": 9100, "protocol": "TCP"}]}]
    assert found["importer"]["spec"]["ingress"] == found["reconcile"]["spec"]["ingress"] == []
    no_peers = tmp_path / "no-peers.yaml"
    no_peers.write_text("networkPolicy:\n  ingress:\n    from: []\n")
    nobody = policies(render(no_peers, *ON))
    assert all(policy["spec"]["ingress"] == [] for policy in nobody.values()), "an empty `from` admits nobody"
    moved = policies(render(None, *ON, "observability.port=9200"))
    assert moved["syncer"]["spec"]["ingress"][0]["ports"] == [{"port": 9200, "protocol": "TCP"}]


def test_egress_goes_only_to_the_targets_each_workload_needs(render: Render) -> None:
    """DNS, the Strimzi brokers and Salesforce for all; LogiSense for syncer and importer (never the Requests tab
    writer); the Pushgateway for the importer."""
    found = policies(render(LOCKED_DOWN))
    dns = {"to": [DNS], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    kafka = {"to": [STRIMZI_BROKERS], "ports": [{"port": 9092, "protocol": "TCP"}, {"port": 9093, "protocol": "TCP"}]}
    salesforce = {"to": SALESFORCE, "ports": HTTPS}
    logisense = {"to": LOGISENSE, "ports": HTTPS}
    pushgateway = {"to": [PUSHGATEWAY], "ports": [{"port": 9091, "protocol": "TCP"}]}
    assert found["listener"]["spec"]["egress"] == [dns, kafka, salesforce]
    assert found["syncer"]["spec"]["egress"] == [dns, kafka, salesforce, logisense]
    assert found["requests-tab"]["spec"]["egress"] == [dns, kafka, salesforce]
    assert found["importer"]["spec"]["egress"] == [dns, kafka, salesforce, logisense, pushgateway]
    assert found["reconcile"]["spec"]["egress"] == [dns, kafka, salesforce, logisense, pushgateway]
    for policy in found.values():
        for rule in policy["spec"]["egress"]:
            assert rule["to"], "an empty `to` would allow every address"
            assert rule["ports"], "an empty `ports` would allow every port"


def test_kafka_peers_default_to_the_strimzi_cluster_unless_given(render: Render) -> None:
    """Explicit Kafka CIDRs or peers replace the Strimzi pod selector; without strimzi.namespace it is the release's."""
    given = policies(render(LOCKED_DOWN, "networkPolicy.egress.kafka.cidrs={10.20.0.0/16}"))
    assert given["syncer"]["spec"]["egress"][1]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    same_namespace = policies(render(LOCKED_DOWN, "strimzi.namespace="))
    assert same_namespace["listener"]["spec"]["egress"][1]["to"] == [
        {"podSelector": {"matchLabels": {"strimzi.io/cluster": "events"}}}
    ]
    no_push = policies(render(None, *ON))
    assert len(no_push["importer"]["spec"]["egress"]) == 4, (
        "no Pushgateway rule without config.importer.pushgateway_url"
    )


def test_extra_egress_rules_reach_every_workload(render: Render) -> None:
    """networkPolicy.egress.extra (e.g. an HTTPS proxy) is appended to every policy."""
    proxy = "networkPolicy.egress.extra[0].to[0].ipBlock.cidr=10.1.2.3/32"
    found = policies(render(None, *ON, proxy, "networkPolicy.egress.extra[0].ports[0].port=3128"))
    for policy in found.values():
        assert policy["spec"]["egress"][-1] == {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"port": 3128}]}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("networkPolicy.enabled=true",), "networkPolicy.egress.kafka: no peers and no cidrs"),
        (
            ("networkPolicy.enabled=true", "strimzi.cluster=events"),
            "networkPolicy.egress.salesforce: no peers and no cidrs; NetworkPolicy cannot match host names",
        ),
        (
            (
                "networkPolicy.enabled=true",
                "strimzi.cluster=events",
                "networkPolicy.egress.salesforce.cidrs={0.0.0.0/0}",
            ),
            "networkPolicy.egress.logisense: no peers and no cidrs",
        ),
        ((*ON, "networkPolicy.egress.dns.peers=[]"), "networkPolicy.egress.dns: no peers and no cidrs"),
        (
            (*ON, "config.importer.pushgateway_url=http://pushgateway:9091"),
            "networkPolicy.egress.pushgateway: no peers and no cidrs; config.importer.pushgateway_url or",
        ),
    ],
    ids=["kafka", "salesforce", "logisense", "dns", "pushgateway"],
)
def test_a_target_without_addresses_fails_with_the_fix(helm: str, sets: tuple[str, ...], message: str) -> None:
    """A needed target with no peers and no CIDRs fails the render (an empty `to` would allow every address)."""
    args = [arg for item in sets for arg in ("--set-json" if item.endswith("=[]") else "--set", item)]
    result = run_helm(helm, "template", "demo", str(CHART), *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_schema_rejects_bad_network_policy_values(helm: str) -> None:
    """A host name where a CIDR belongs, or a misspelt peer key, fails with its path."""
    for item, path in (
        ("networkPolicy.egress.salesforce.cidrs={login.salesforce.com}", "/networkPolicy/egress/salesforce/cidrs/0"),
        ("networkPolicy.ingress.from[0].podselector.matchLabels.app=x", "podselector"),
        ("networkPolicy.egress.kafka.ports[0].protocol=tcp", "/networkPolicy/egress/kafka/ports/0/protocol"),
    ):
        result = run_helm(helm, "template", "demo", str(CHART), "--set", item)
        assert result.returncode != 0, item
        assert path in result.stderr, result.stderr
