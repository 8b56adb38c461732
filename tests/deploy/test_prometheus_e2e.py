"""A real Prometheus scrapes the services on the local stack; every dashboard and alert query must answer.

The listener, the syncer and the Requests tab writer run as `sfls` processes serving /metrics; the importer runs
`sfls import catalogue` once and pushes to a real Pushgateway, as its Kubernetes Job does. Prometheus (Debian's
binary, run directly on 127.0.0.1 with a temporary config) scrapes them every second and loads
the shipped alert rules. The test drives the failure modes the dashboards and alerts exist for (a
LogiSense outage that is retried, a dead letter, a dropped change, a dropped Pub/Sub stream and a gap, an import
with a rejected record that pauses at the Salesforce API reserve on the way, request records the Requests tab
lands and ones Salesforce refuses), then evaluates through the HTTP
API:

- every dashboard query (Grafana's `$__rate_interval` and `$namespace` substituted) must be valid and
  return at least one series;
- every alert expression must be valid and loaded by Prometheus with healthy evaluation, and each of
  its signals (the expression without its threshold, split at `and`/`unless`) must return series,
  so every metric and label matcher it relies on is proven against the running code. The alerts
  whose failure the test provokes must actually fire their expression.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from devstack.kafka import free_port
from devstack.process import ServiceProcess, sfls_command
from shared.salesforce_view import REQUEST_OBJECT
from shared.settings import KafkaSettings, Settings
from tests.deploy import promql
from tests.deploy.conftest import ROOT, tool
from tests.deploy.prometheus import MAPPINGS, PrometheusApi, service_env, start_prometheus, wait_until
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.fixtures.schema import deploy_schema
from tests.services.listener.support import SalesforceApi

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
NAMESPACE = "sfls-e2e"
RATE_INTERVAL = "1m"
CONFIG = {
    "sync": {"interval_minutes": 0.02, "retry": {"max_attempts": 6, "base_seconds": 0.01, "cap_seconds": 0.05}},
    "mappings": MAPPINGS,
}
# Alerts whose failure this test provokes: their full expression must return series, not only their signals.
PROVOKED = {"SflsDeadLettersAppearing", "SflsImporterJobFailed"}


def grafana(expr: str) -> str:
    """A dashboard query as Grafana sends it: interval variables and `$namespace` (All) substituted."""
    for variable in promql.GRAFANA_INTERVALS:
        expr = expr.replace(variable, RATE_INTERVAL)
    return expr.replace("$namespace", ".*")


def rename_package(ls: LogisenseEmulator) -> int:
    """Give one LogiSense package a name longer than Salesforce's 80 characters: its import is rejected."""

    async def rename() -> int:
        async with ls.client() as client:
            packages = [item async for item in client.paged("Package")]
            identity = int(packages[0]["identity"])
            await client.update("Package", identity, {"name": "N" * 100})
            return identity

    return asyncio.run(rename())


@pytest.mark.timeout(420)
def test_every_dashboard_and_alert_query_returns_series(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    prometheus_bin: str,
    expressions: list[promql.Expression],
    processes: list[ServiceProcess],
) -> None:
    """Prometheus scraping the running services answers every dashboard and alert query with series."""
    sf, ls = salesforce_emulator, logisense_emulator
    ls.reset()
    logs = tmp_path / "logs"
    logs.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    env = service_env(sf, ls, kafka_settings, config)
    # The org admin's step: deploy what `sfls import schema` writes (the import's objects, the Requests tab, the
    # Account link). The Requests tab's Kind__c is cut to 12 characters here, so every request but the syncer's
    # (`account_sync`, `contact_sync`) is refused: the rejection series exist next to the landed ones.
    deploy_schema(sf, Settings(salesforce=sf.settings(), logisense=ls.settings()))
    sf.admin("POST", "schema", {"fields": {REQUEST_OBJECT: [{"name": "Kind__c", "type": "string", "length": 12}]}})
    ports = {"sfls-listener": free_port(), "sfls-syncer": free_port(), "sfls-requests-tab": free_port()}
    pushgateway = free_port()
    prometheus = free_port()

    gateway = ServiceProcess(
        "pushgateway",
        [tool("SFLS_PUSHGATEWAY", "prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{pushgateway}"],
        env,
        logs / "pushgateway.log",
        port=pushgateway,
    )
    processes.append(gateway)
    # The listener runs on the Pub/Sub API, so the dashboard's Pub/Sub series (keepalives every second here,
    # the error of a dropped stream) exist; every other listener metric is the same on both transports.
    sf.admin("POST", "settings", {"pubsub_keepalive_seconds": 1})
    listener = ServiceProcess.sfls(
        "listener",
        env={**env, "SFLS_SALESFORCE__TRANSPORT": "pubsub", "SFLS_LISTENER__PUBSUB_WATCHDOG_SECONDS": "8"},
        log=logs / "listener.log",
        port=ports["sfls-listener"],
    )
    processes.append(listener)
    syncer = ServiceProcess.sfls("syncer", env=env, log=logs / "syncer.log", port=ports["sfls-syncer"])
    processes.append(syncer)
    tab = ServiceProcess.sfls(
        "requests-tab",
        "run",
        env={**env, "SFLS_REQUESTS_TAB__MODE": "all", "SFLS_REQUESTS_TAB__FLUSH_SECONDS": "0.5"},
        log=logs / "requests-tab.log",
        port=ports["sfls-requests-tab"],
    )
    processes.append(tab)
    server = start_prometheus(
        prometheus_bin, tmp_path, ports, [RULES], env, namespace=NAMESPACE, pushgateway=pushgateway, port=prometheus
    )
    processes.append(server)
    running = (listener, syncer, tab, server, gateway)
    listener.wait_ready(120)
    syncer.wait_ready(120)
    tab.wait_ready(120)
    server.wait_ready(60)
    for process in running:  # none gave up while the others got ready
        process.check_alive()

    # Traffic: LogiSense fails twice (retried), three accounts sync, one is dead-lettered (its usage and
    # subscription invoice recipients differ), one change touches no trigger field, the CDC connection
    # drops once and a gap asks for a resync.
    ls.faults(resource="Account", method="POST", status=503, count=2)
    api = SalesforceApi(sf.settings())
    try:
        fields = {
            "Type": "Customer",
            "LogiSense_Status__c": "Active",
            "LogiSense_Bill_Group__c": "Bill Group 1st",
            "LogiSense_AR_Term__c": "Net 30",
        }
        good = [api.create("Account", {"Name": f"E2E {uuid.uuid4().hex[:6]}", **fields}) for _ in range(3)]
        api.create(
            "Account",
            {
                "Name": "E2E split recipients",
                **fields,
                "Usage_Invoice_Recipient__c": good[0],
                "Subscription_Invoice_Recipient__c": good[1],
            },
        )
        api.update("Account", good[2], {"Description": "not a billing field"})
        sf.admin("POST", "cdc/gap", {"entity": "Account", "changeType": "GAP_UPDATE", "recordIds": [good[0]]})
        api.update("Account", good[1], {"Name": "E2E renamed"})
    finally:
        api.close()
    # Once those are checkpointed, Salesforce forgets every replay id and drops the Pub/Sub streams: the
    # resubscription's replay id is refused (corrupted), the topic starts from new events and the listener resyncs.
    metrics = PrometheusApi(prometheus)
    wait_until(
        lambda: [s["value"][1] for s in metrics.query("sum(sfls_listener_events_published_total)")["data"]["result"]],
        60,
        "the listener to publish 5 changes (sum of sfls_listener_events_published_total)",
        listener,
        server,
        until=lambda values: bool(values) and float(values[0]) >= 5,
    )
    last = sf.admin("GET", "cdc/events")["last"]
    sf.admin("POST", "retention", {"oldest_replay_id": last + 1})
    sf.admin("POST", "connections/drop")

    # The importer: one catalogue run with one rejected package, pushed to the Pushgateway, with a Bulk
    # threshold low enough that the bigger entities land through Bulk API jobs and the smaller ones through
    # composite calls (the org admin deployed the custom objects it lands in before the services started).
    rename_package(ls)
    # The org is at sfls's reserve for the next few seconds (the 1 s buckets of a 3 s window): the import pauses,
    # pushes its paused state, and resumes when the window frees; the listener and syncer go on (floor 5 %).
    sf.admin("POST", "limits", {"window_seconds": 3, "used": {"DailyApiRequests": 85_000}})
    importer = subprocess.run(
        [*sfls_command(), "import", "catalogue"],
        env={
            **env,
            "SFLS_IMPORTER__PUSHGATEWAY_URL": f"127.0.0.1:{pushgateway}",
            "SFLS_IMPORTER__BULK_THRESHOLD": "20",
            "SFLS_SALESFORCE__BULK_POLL_SECONDS": "0.1",
            "SFLS_BUDGET__POLL_SECONDS": "1",
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert importer.returncode == 1, f"the rejected package must fail the run:\n{importer.stdout}\n{importer.stderr}"
    assert "STRING_TOO_LONG" in importer.stdout
    assert "salesforce_budget_paused" in importer.stderr, importer.stderr
    # A reconcile run pushes its gauges like the importer (the dead-lettered account is drift: exit 1).
    reconciled = subprocess.run(
        [*sfls_command(), "reconcile", "--format", "json"],
        env={**env, "SFLS_RECONCILE__PUSHGATEWAY_URL": f"127.0.0.1:{pushgateway}"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert reconciled.returncode in (0, 1), reconciled.stderr

    api_client = metrics
    dashboards = [e for e in expressions if not e.is_alert]
    alerts = [e for e in expressions if e.is_alert]
    assert dashboards
    assert alerts

    def missing() -> list[str]:
        problems = []
        for expression in dashboards:
            if api_client.series_count(grafana(expression.expr)) <= 0:
                problems.append(f"{expression.source}: {grafana(expression.expr)}")
        for expression in alerts:
            if api_client.series_count(expression.expr) < 0:
                problems.append(f"{expression.source}: invalid: {expression.expr}")
            for signal_expr in promql.operands(expression.expr):
                if api_client.series_count(signal_expr) <= 0:
                    problems.append(f"{expression.source}: no series for signal {signal_expr}")
            name = expression.source.rsplit("/", 1)[-1]
            if name in PROVOKED and api_client.series_count(expression.expr) <= 0:
                problems.append(f"{expression.source}: provoked but the expression returns nothing")
        return problems

    wait_until(missing, 150, "every query to return series", listener, syncer, tab, server, until=lambda left: not left)

    # The provoked expressions return series now; Prometheus turns their alerts to `firing` at its next
    # rule evaluation (every second, no `for:`), so the rules API is awaited, not read once.
    shipped = {e.source.rsplit("/", 1)[-1] for e in alerts}

    def rule_states() -> dict[str, tuple[str, str | None, str | None]]:
        """name -> (health, state, lastError) of every loaded rule."""
        return {r["name"]: (r["health"], r.get("state"), r.get("lastError")) for r in api_client.rules()}

    def settled(states: dict[str, tuple[str, str | None, str | None]]) -> bool:
        firing = {name for name, (_, state, _) in states.items() if state == "firing"}
        return shipped <= set(states) and all(h == "ok" for h, _, _ in states.values()) and firing >= PROVOKED

    loaded = wait_until(
        rule_states,
        60,
        f"every shipped rule loaded and healthy, and {sorted(PROVOKED)} firing",
        listener,
        syncer,
        server,
        until=settled,
    )
    assert shipped <= set(loaded), sorted(shipped - set(loaded))
    unhealthy = {name: error for name, (health, _, error) in loaded.items() if health != "ok"}
    assert not unhealthy, unhealthy
    firing = {name for name, (_, state, _) in loaded.items() if state == "firing"}
    assert firing >= PROVOKED, f"provoked alerts not firing: {sorted(PROVOKED - firing)}"
