"""A real Prometheus beside `sfls` processes in a test: its config, its start, its HTTP API, and waiting on it.

Debian's prometheus binary runs directly on 127.0.0.1 with a temporary config that scrapes the given
targets every second (with the `namespace` label a ServiceMonitor adds) and evaluates the given rule
files every second.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml

from devstack.kafka import free_port
from devstack.process import ServiceProcess
from shared.settings import KafkaSettings
from tests import waiting
from tests.environment import sfls_env
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator

POINTS = {"email": "Email", "phone": "Phone", "address": "MailingAddress", "sfdcid": "Id"}
# The emulator's LogiSense contact types, every contact point mapped (the syncer refuses to start otherwise).
MAPPINGS = {"contact_points": {name: dict(POINTS) for name in ("Billing", "Shipping", "Technical", "Other")}}


def wait_until(
    probe: Callable[[], Any], timeout: float, what: str, *watch: ServiceProcess, until: Callable[[Any], object] = bool
) -> Any:
    """tests.waiting.wait_until, failing at once when a watched process exits, with their logs on timeout."""

    def watched() -> Any:
        for process in watch:
            process.check_alive()
        return probe()

    def logs() -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in watch)

    return waiting.wait_until(watched, timeout, what, until=until, context=logs)


def service_env(
    sf: SalesforceEmulator, ls: LogisenseEmulator, kafka_settings: KafkaSettings, config: Path
) -> dict[str, str]:
    """The environment of an `sfls` process pointed at the test's broker and emulators."""
    return sfls_env(
        salesforce=sf,
        logisense=ls,
        kafka=kafka_settings,
        SFLS_CONFIG=str(config),
        SFLS_LOGISENSE__TIMEOUT_SECONDS="5",
        SFLS_LISTENER__RECONNECT_BASE_SECONDS="0.1",
        SFLS_LOG_LEVEL="INFO",
    )


def start_prometheus(
    binary: str,
    folder: Path,
    targets: Mapping[str, int],
    rules: Sequence[Path],
    env: Mapping[str, str],
    *,
    namespace: str,
    pushgateway: int | None = None,
    port: int | None = None,
) -> ServiceProcess:
    """Prometheus scraping `targets` (job -> port) and a Pushgateway, every second, evaluating `rules`."""
    scrape: list[dict[str, Any]] = [
        {
            "job_name": job,
            "static_configs": [{"targets": [f"127.0.0.1:{target}"], "labels": {"namespace": namespace}}],
        }
        for job, target in targets.items()
    ]
    if pushgateway is not None:
        scrape.append(
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{pushgateway}"], "labels": {"namespace": namespace}}],
            }
        )
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rules],
        "scrape_configs": scrape,
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port() if port is None else port
    return ServiceProcess(
        "prometheus",
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        env,
        folder / "logs" / "prometheus.log",
        port=port,
        ready_path="/-/ready",
    )


class PrometheusApi:
    """Prometheus's HTTP API: instant queries and the loaded rules."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1"

    def query(self, expr: str) -> dict[str, Any]:
        answer = requests.get(f"{self.base}/query", params={"query": expr}, timeout=10)
        body: dict[str, Any] = answer.json()
        return body

    def series_count(self, expr: str) -> int:
        body = self.query(expr)
        if body.get("status") != "success":
            return -1
        return len(body["data"]["result"])

    def rules(self) -> list[dict[str, Any]]:
        body = requests.get(f"{self.base}/rules", timeout=10).json()
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]
