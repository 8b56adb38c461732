"""The Helm chart: lint, render, validate against Kubernetes schemas offline, and hold its invariants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from tests.deploy.conftest import CHART, KUBE_VERSION, VALUE_SETS, Render, run_helm

pytestmark = pytest.mark.integration  # runs helm (tests/conftest.py: OUTSIDE_THE_PROCESS)

# Custom resources: kubernetes-validate has no schema for them (the Strimzi ones are checked in test_strimzi.py).
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "KafkaTopic", "KafkaUser"}
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
    "app.kubernetes.io/component",
)
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def config_map(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ConfigMap holding sfls's config file (dashboards are ConfigMaps too)."""
    (found,) = [doc for doc in by_kind(docs, "ConfigMap") if component(doc) == "config"]
    return found


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(component, pod template) of every workload."""
    found = []
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            found.append((component(doc), doc["spec"]["template"]))
        elif doc["kind"] == "CronJob":
            found.append((component(doc), doc["spec"]["jobTemplate"]["spec"]["template"]))
    return found


def test_value_sets_exist() -> None:
    """The chart ships the default, minimal and everything-enabled value sets that CI renders."""
    assert {path.stem for path in VALUE_SETS} >= {"default", "minimal", "full"}


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda path: path.stem)
def test_helm_lint_strict(helm: str, values: Path) -> None:
    """`helm lint --strict` passes for every value set."""
    result = run_helm(helm, "lint", "--strict", str(CHART), "--values", str(values), "--kube-version", KUBE_VERSION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout, result.stdout


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda path: path.stem)
def test_rendered_objects_pass_kubernetes_schemas(render: Render, values: Path) -> None:
    """Every rendered built-in object validates strictly (unknown fields are errors) against Kubernetes 1.30."""
    docs = render(values)
    builtin = [doc for doc in docs if doc["kind"] not in CRD_KINDS]
    assert builtin
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "-k", "1.30", "--strict", "--quiet", "-"],
        input=yaml.safe_dump_all(builtin),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Couldn't find schema" not in result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda path: path.stem)
def test_value_sets_match_the_schema(values: Path) -> None:
    """values.yaml merged with each CI value set is valid against values.schema.json (checked without helm too)."""
    merged = deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), yaml.safe_load(values.read_text()) or {})
    jsonschema.Draft7Validator(SCHEMA).validate(merged)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def test_the_config_value_takes_every_section_sfls_reads() -> None:
    """`config` holds the sfls config file: every section of Settings but the two the chart builds itself."""
    from shared.settings import Settings

    built = {"kafka", "observability"}  # from their own values (templates/_helpers.tpl sfls.configFile)
    sections = {name for name, field in Settings.model_fields.items() if isinstance(field.default, BaseModel)} - built
    assert set(SCHEMA["properties"]["config"]["properties"]) == sections


def test_schema_is_closed_on_every_chart_object() -> None:
    """Every object the chart defines in the schema forbids unknown keys, so typos fail."""
    open_objects = []

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
            open_objects.append(path)
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}")
        for key, child in node.get("definitions", {}).items():
            walk(child, f"#{key}")

    walk(SCHEMA, "values")
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert not open_objects


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"syncer": {"replicaCount": "two"}}, "/syncer/replicaCount"),
        ({"syncer": {"replicas": 2}}, "replicas"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"importer": {"cronJob": {"schedule": "every night"}}}, "/importer/cronJob/schedule"),
        ({"kafka": {"topicPrefix": "has spaces"}}, "/kafka/topicPrefix"),
        ({"kafka": {"config": {"sasl.password": "x"}}}, "/kafka/config"),
        ({"image": {"tag": "latest"}}, "/image/tag"),
        ({"credentials": {"env": {"LOGISENSE_PASSWORD": {"key": "x", "optional": False}}}}, "/credentials/env"),
        ({"requestsTab": {"replicaCount": "one"}}, "/requestsTab/replicaCount"),
        ({"config": {"requests_tab": {"mode": False}}}, "/config/requests_tab/mode"),
        ({"config": {"requests_tab": {"mode": "errors"}}}, "/config/requests_tab/mode"),
    ],
    ids=[
        "replica-count-string",
        "unknown-key",
        "pull-policy",
        "cron",
        "topic-prefix",
        "secret-in-config",
        "latest",
        "env",
        "requests-tab-replicas",
        "requests-tab-unquoted-off",
        "requests-tab-mode",
    ],
)
def test_schema_rejects_bad_values_with_the_path(
    helm: str, tmp_path: Path, override: dict[str, Any], message: str
) -> None:
    """A typo or a wrong type fails `helm lint` and `helm template` with the path of the offending value."""
    values = tmp_path / "bad.yaml"
    values.write_text(yaml.safe_dump(override))
    for command in (["lint", "--strict"], ["template", "demo"]):
        result = run_helm(helm, *command, str(CHART), "--values", str(values))
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"helm {command[0]} accepted {override}"
        assert "values don't meet the specifications of the schema" in output, output
        assert message in output, output


def test_replica_count_typo_message_is_clear(helm: str, tmp_path: Path) -> None:
    """`replicaCount: "two"` names the value, the type found and the type wanted."""
    values = tmp_path / "typo.yaml"
    values.write_text('syncer:\n  replicaCount: "two"\n')
    result = run_helm(helm, "template", "demo", str(CHART), "--values", str(values))
    assert result.returncode != 0
    assert "at '/syncer/replicaCount': got string, want integer" in result.stderr, result.stderr


def test_default_workloads(render: Render) -> None:
    """Defaults: one listener (Recreate), two syncers with a PDB, the nightly import CronJob, no CRD objects."""
    docs = render(CHART / "ci" / "default.yaml")
    deployments = {component(doc): doc for doc in by_kind(docs, "Deployment")}
    assert deployments["listener"]["spec"]["replicas"] == 1
    assert deployments["listener"]["spec"]["strategy"] == {"type": "Recreate"}
    assert deployments["syncer"]["spec"]["replicas"] == 2
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert component(pdb) == "syncer"
    assert pdb["spec"]["selector"]["matchLabels"] == deployments["syncer"]["spec"]["selector"]["matchLabels"]
    (cron,) = by_kind(docs, "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 2
    assert {"successfulJobsHistoryLimit", "failedJobsHistoryLimit", "startingDeadlineSeconds"} <= set(cron["spec"])
    assert not by_kind(docs, "Job")
    assert not [doc for doc in docs if doc["kind"] in CRD_KINDS]
    assert not by_kind(docs, "Secret"), "credentials come from the existing Secret by default"


def test_pdb_only_when_replicas_above_one_or_asked(render: Render) -> None:
    """A single syncer gets no PDB (it would block node drains) unless one is asked for."""
    assert not by_kind(render(None, "syncer.replicaCount=1"), "PodDisruptionBudget")
    assert by_kind(render(None, "syncer.replicaCount=1", "syncer.pdb.create=true"), "PodDisruptionBudget")
    assert not by_kind(render(None, "syncer.replicaCount=3", "syncer.pdb.create=false"), "PodDisruptionBudget")
    docs = render(CHART / "ci" / "minimal.yaml")
    assert not by_kind(docs, "PodDisruptionBudget")
    assert {doc["kind"] for doc in docs} == {"ConfigMap", "Deployment"}


def test_selectors_are_name_instance_component(render: Render) -> None:
    """Each workload selects its own pods by name, instance and component, never by changing labels."""
    docs = render(CHART / "ci" / "full.yaml")
    selectors = []
    for doc in by_kind(docs, "Deployment"):
        selector = doc["spec"]["selector"]["matchLabels"]
        assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
        pod_labels = doc["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        selectors.append(selector)
    assert len({json.dumps(s, sort_keys=True) for s in selectors}) == len(selectors)


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda path: path.stem)
def test_every_object_has_the_recommended_labels(render: Render, values: Path) -> None:
    """Every object carries the recommended labels and a component, and no namespace is hard-coded."""
    docs = render(values)
    assert docs, f"{values.name} renders nothing"
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        missing = [label for label in RECOMMENDED_LABELS if label not in labels]
        assert not missing, f"{doc['kind']} {doc['metadata']['name']} lacks {missing}"


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda path: path.stem)
def test_pods_are_locked_down(render: Render, values: Path) -> None:
    """Every container runs non-root, read-only, without privilege escalation or capabilities, with resources."""
    pods = pod_specs(render(values))
    assert pods
    for name, template in pods:
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        tmp = "2Gi" if "reconcile" in name else "64Mi"  # a reconcile run sorts both systems' records in /tmp
        assert {"name": "tmp", "emptyDir": {"sizeLimit": tmp}} in spec["volumes"], name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"]["memory"], name
            tmp_mount = {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108 - the emptyDir mount, not a temp file
            assert tmp_mount in container["volumeMounts"], name


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda path: path.stem)
def test_config_and_credentials_reach_every_pod(render: Render, values: Path) -> None:
    """Pods read SFLS_CONFIG from the mounted ConfigMap, roll on its checksum, and take secrets by secretKeyRef."""
    docs = render(values)
    configmap = config_map(docs)
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    assert set(config) >= {"kafka", "observability"}
    for name, template in pod_specs(docs):
        annotations = template["metadata"]["annotations"]
        assert len(annotations["checksum/config"]) == 64, name
        container = template["spec"]["containers"][0]
        env = {item["name"]: item for item in container["env"]}
        assert env["SFLS_CONFIG"]["value"] == "/etc/sfls/config.yaml"
        mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
        assert mounts["/etc/sfls"]["readOnly"] is True
        refs = {key: item["valueFrom"]["secretKeyRef"] for key, item in env.items() if "valueFrom" in item}
        assert {"SFLS_SALESFORCE__CLIENT_SECRET", "SFLS_LOGISENSE__PASSWORD"} <= set(refs), name
        assert refs["SFLS_LOGISENSE__PASSWORD"]["optional"] is False
        assert not any(item.get("value") for key, item in env.items() if "PASSWORD" in key or "SECRET" in key)


def test_secret_is_created_only_when_asked(render: Render) -> None:
    """credentials.create makes the Secret from values and points every secretKeyRef at it."""
    docs = render(CHART / "ci" / "full.yaml")
    (secret,) = by_kind(docs, "Secret")
    assert set(secret["data"]) >= {"salesforce-client-secret", "logisense-password"}
    names = {
        item["valueFrom"]["secretKeyRef"]["name"]
        for _, template in pod_specs(docs)
        for item in template["spec"]["containers"][0]["env"]
        if "valueFrom" in item
    }
    assert names == {secret["metadata"]["name"]}
    plain = render(CHART / "ci" / "plain-job.yaml")
    assert not by_kind(plain, "Secret")
    (job,) = by_kind(plain, "Job")
    refs = {
        item["valueFrom"]["secretKeyRef"]["name"]
        for item in pod_specs([job])[0][1]["spec"]["containers"][0]["env"]
        if "valueFrom" in item
    }
    assert refs == {"billing-sync-credentials"}


def test_credentials_create_without_values_fails(helm: str) -> None:
    """Asking for a chart-made Secret without giving its values fails with the fix."""
    result = run_helm(helm, "template", "demo", str(CHART), "--set", "credentials.create=true")
    assert result.returncode != 0
    assert "credentials.create is true but credentials.values is empty" in result.stderr


def test_topic_settings_land_in_the_config_file(render: Render) -> None:
    """Topic prefix, partitions, replication and librdkafka pass-through values become the config's kafka section."""
    docs = render(CHART / "ci" / "full.yaml")
    configmap = config_map(docs)
    kafka = yaml.safe_load(configmap["data"]["config.yaml"])["kafka"]
    assert kafka["topic_prefix"] == "billing.sfls"
    assert kafka["partitions"] == 24
    assert kafka["replication_factor"] == 3
    assert kafka["security.protocol"] == "SASL_SSL"


def test_rendered_config_file_loads_in_sfls(render: Render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap's config.yaml is accepted by sfls's own settings loader, with the chart's values in place."""
    from shared.settings import load_settings

    docs = render(CHART / "ci" / "full.yaml")
    configmap = config_map(docs)
    path = tmp_path / "config.yaml"
    path.write_text(configmap["data"]["config.yaml"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SFLS_CONFIG", str(path))
    settings = load_settings()
    assert settings.kafka.topic_prefix == "billing.sfls"
    assert settings.kafka.librdkafka()["security.protocol"] == "SASL_SSL"
    assert settings.observability.metrics_port == 9100
    assert settings.mappings.account_extensions[0].logisense == "region"
    assert settings.requests_tab.mode == "all"
    assert settings.requests_tab.retention_days == 14
    assert settings.sync.account_link is False


def test_probes_use_health_endpoints_on_the_metrics_port(render: Render) -> None:
    """Long-running services probe /healthz (startup, liveness) and /readyz (readiness) on the named metrics port."""
    deployments = by_kind(render(CHART / "ci" / "default.yaml"), "Deployment")
    assert sorted(component(doc) for doc in deployments) == ["listener", "syncer"]
    for doc in deployments:
        container = doc["spec"]["template"]["spec"]["containers"][0]
        assert container["ports"] == [{"name": "http-metrics", "containerPort": 9100, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
        assert container["args"] == [component(doc)]


def test_importer_job_hook_and_cronjob(render: Render) -> None:
    """The import runs as a post-install/upgrade hook Job and on a schedule, its pods never restarting in place."""
    docs = render(CHART / "ci" / "full.yaml")
    (job,) = by_kind(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    (cron,) = by_kind(docs, "CronJob")
    assert cron["spec"]["schedule"] == "*/30 * * * *"
    assert cron["spec"]["timeZone"] == "Europe/Berlin"
    for _, template in pod_specs(docs):
        if template["metadata"]["labels"]["app.kubernetes.io/component"] == "importer":
            assert template["spec"]["restartPolicy"] == "Never"
            assert template["spec"]["containers"][0]["args"] == ["import", "all"]
    plain = render(CHART / "ci" / "plain-job.yaml")
    (plain_job,) = by_kind(plain, "Job")
    assert "annotations" not in plain_job["metadata"] or "helm.sh/hook" not in plain_job["metadata"]["annotations"]
    assert plain_job["metadata"]["name"].endswith("-importer-1"), "a plain Job is named after the revision"


def test_monitoring_objects(render: Render) -> None:
    """ServiceMonitor scrapes the metrics Service's named port; PrometheusRule and dashboards are gated by values."""
    docs = render(CHART / "ci" / "full.yaml")
    (service,) = by_kind(docs, "Service")
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "helm.sh/chart" not in monitor["spec"]["selector"]["matchLabels"]
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "http-metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for name, template in pod_specs(docs):
        selected = service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        assert selected == (name in {"listener", "syncer", "requests-tab"}), f"{name}: only pods serving /metrics"
    (rule,) = by_kind(docs, "PrometheusRule")
    assert rule["spec"]["groups"]
    dashboards = [
        doc for doc in by_kind(docs, "ConfigMap") if doc["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    shipped = sorted(path.name for path in (CHART / "dashboards").glob("*.json"))
    assert sorted(name for doc in dashboards for name in doc["data"]) == shipped
    for doc in dashboards:
        assert doc["metadata"]["annotations"]["grafana_folder"] == "Billing"
        for name, body in doc["data"].items():
            assert json.loads(body) == json.loads((CHART / "dashboards" / name).read_text())
            assert len(body.encode()) < 900_000, "a ConfigMap holds at most 1 MiB"


def test_dashboard_sidecar_label_is_configurable(render: Render) -> None:
    """The sidecar's label key and value come from values."""
    docs = render(
        None,
        "grafanaDashboards.enabled=true",
        "grafanaDashboards.label=dashboards",
        "grafanaDashboards.labelValue=sfls",
    )
    dashboards = [doc for doc in by_kind(docs, "ConfigMap") if "dashboards" in doc["metadata"]["labels"]]
    assert dashboards
    assert all(doc["metadata"]["labels"]["dashboards"] == "sfls" for doc in dashboards)


def test_requests_tab_writer_is_off_by_default(render: Render) -> None:
    """Without requestsTab.enabled nothing of the writer renders: it needs sfls's Salesforce schema first."""
    for values in (None, CHART / "ci" / "default.yaml", CHART / "ci" / "minimal.yaml"):
        assert not [doc for doc in render(values) if component(doc) == "requests-tab"]


def test_requests_tab_writer_deployment(render: Render) -> None:
    """requestsTab.enabled deploys `sfls requests-tab run`: one replica by default, probed on the metrics port,
    scraped through the metrics Service, locked down and configured like the syncer; a PDB only above one replica."""
    docs = render(None, "requestsTab.enabled=true")
    deployments = {component(doc): doc for doc in by_kind(docs, "Deployment")}
    writer = deployments["requests-tab"]
    assert writer["metadata"]["name"] == "demo-sfls-requests-tab"
    assert writer["spec"]["replicas"] == 1
    assert writer["spec"]["strategy"] == deployments["syncer"]["spec"]["strategy"]
    template = writer["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["name"] == "requests-tab"
    assert container["args"] == ["requests-tab", "run"]
    assert container["ports"] == [{"name": "http-metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    syncer = deployments["syncer"]["spec"]["template"]
    assert container["securityContext"] == syncer["spec"]["containers"][0]["securityContext"]
    assert template["spec"]["securityContext"] == syncer["spec"]["securityContext"]
    assert template["spec"]["serviceAccountName"] == syncer["spec"]["serviceAccountName"]
    assert container["env"] == syncer["spec"]["containers"][0]["env"]
    checksum = "checksum/config"
    assert template["metadata"]["annotations"][checksum] == syncer["metadata"]["annotations"][checksum]
    (service,) = by_kind(docs, "Service")
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert [component(doc) for doc in by_kind(docs, "PodDisruptionBudget")] == ["syncer"]
    two = render(None, "requestsTab.enabled=true", "requestsTab.replicaCount=2")
    pdbs = {component(doc): doc for doc in by_kind(two, "PodDisruptionBudget")}
    assert pdbs["requests-tab"]["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": writer["spec"]["selector"]["matchLabels"]},
    }
    assert "requests-tab" not in {
        component(doc)
        for doc in by_kind(
            render(None, "requestsTab.enabled=true", "requestsTab.replicaCount=2", "requestsTab.pdb.create=false"),
            "PodDisruptionBudget",
        )
    }


def test_requests_tab_enabled_with_mode_off_fails_with_the_fix(helm: str, tmp_path: Path) -> None:
    """requestsTab.enabled is the switch: a writer told to land nothing (mode off) fails the render with the fix."""
    sets = ("--set", "requestsTab.enabled=true", "--set", "config.requests_tab.mode=off")
    result = run_helm(helm, "template", "demo", str(CHART), *sets)
    assert result.returncode != 0
    assert "config.requests_tab.mode is off but requestsTab.enabled" in result.stderr, result.stderr
    assert "set requestsTab.enabled=false" in result.stderr, result.stderr
    values = tmp_path / "off.yaml"
    values.write_text('config:\n  requests_tab:\n    mode: "off"\n')
    result = run_helm(helm, "template", "demo", str(CHART), "--values", str(values))
    assert result.returncode == 0, result.stderr
    config = config_map([doc for doc in yaml.safe_load_all(result.stdout) if doc])
    assert yaml.safe_load(config["data"]["config.yaml"])["requests_tab"] == {"mode": "off"}
