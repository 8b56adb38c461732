"""The stalled-syncer alert fires against a real syncer whose commits keep failing, scraped by a real Prometheus.

The syncer runs as a process (`tests/deploy/commits_refused.py`: `sfls syncer` with every Kafka commit
refused). Its batch runs and fails at the commit, so `sfls_syncer_batches_total{outcome="failed"}` counts it,
the last-batch timestamp never moves and the lag stays. Prometheus evaluates the shipped SflsSyncerStalled
rule with its 45 minutes scaled to seconds; the alert must reach `firing`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.process import ServiceProcess
from shared import kafka
from shared.events import ChangeType
from shared.settings import KafkaSettings
from tests.deploy.conftest import ROOT
from tests.deploy.prometheus import MAPPINGS, PrometheusApi, service_env, start_prometheus, wait_until
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.syncer.support import change, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
NAMESPACE = "sfls-stalled"
ALERT = "SflsSyncerStalled"


def scaled_rule(folder: Path) -> Path:
    """The shipped SflsSyncerStalled rule with 45 minutes as 10 seconds and `for: 5m` as 2 seconds."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == ALERT)
    assert "> 2700" in rule["expr"], rule["expr"]
    assert rule["for"] == "5m", rule["for"]
    rule = {**rule, "expr": rule["expr"].replace("> 2700", "> 10"), "for": "2s"}
    path = folder / "stalled.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "scaled", "rules": [rule]}]}))
    return path


@pytest.mark.timeout(240)
def test_the_stalled_syncer_alert_fires_while_commits_keep_failing(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    prometheus_bin: str,
    processes: list[ServiceProcess],
) -> None:
    """Batches that run but never commit count as failed, the lag stays, and SflsSyncerStalled fires."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"sync": {"interval_minutes": 0.01}, "mappings": MAPPINGS}))
    env = service_env(salesforce_emulator, logisense_emulator, kafka_settings, config)
    topics = kafka.Topics(kafka_settings.topic_prefix)
    kafka.ensure_topics(kafka_settings, [s for s in topics.specs(kafka_settings) if s.name == topics.changes])
    # Accounts Salesforce does not have: each batch succeeds (nothing to write) and only its commit fails.
    events = [change(f"001{n:012d}AAA", change_type=ChangeType.DELETE) for n in range(3)]
    publish(kafka.producer(kafka_settings), topics.changes, events)
    syncer = ServiceProcess(
        "syncer",
        [sys.executable, "-m", "tests.deploy.commits_refused", "syncer"],
        env,
        tmp_path / "logs" / "syncer.log",
    )
    processes.append(syncer)
    server = start_prometheus(
        prometheus_bin, tmp_path, {"sfls-syncer": syncer.port}, [scaled_rule(tmp_path)], env, namespace=NAMESPACE
    )
    processes.append(server)
    syncer.wait_ready(120)
    server.wait_ready(60)

    def failed_batches() -> float:
        return syncer.metric("sfls_syncer_batches_total", {"outcome": "failed"}) or 0.0

    wait_until(failed_batches, 60, "the syncer to fail a batch at its commit", syncer, until=lambda n: n >= 1)
    assert "commit_failed" in syncer.tail(20_000)
    assert not syncer.metric("sfls_syncer_batches_total", {"outcome": "committed"})
    assert not syncer.metric("sfls_syncer_last_batch_timestamp_seconds")
    lag = syncer.metric("sfls_syncer_consumer_lag")
    assert lag is not None
    assert lag >= len(events), lag

    api = PrometheusApi(server.port)

    def firing() -> list[dict[str, Any]]:
        answer = api.query(f'ALERTS{{alertname="{ALERT}", alertstate="firing"}}')
        result: list[dict[str, Any]] = answer.get("data", {}).get("result", [])
        return result

    alerts = wait_until(firing, 90, f"{ALERT} to fire", syncer, server)
    assert alerts[0]["metric"]["namespace"] == NAMESPACE
    assert alerts[0]["metric"]["severity"] == "critical"
