"""Fixtures of the deployment checks: the tools `make tools` installs, and chart rendering."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.process import ServiceProcess
from tests.deploy import promql

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "sfls"
VALUE_SETS = sorted((CHART / "ci").glob("*.yaml"))
KUBE_VERSION = "1.30.0"
# The Prometheus Operator CRDs the chart renders when asked; their API is announced to helm.
CRD_API = "monitoring.coreos.com/v1"

Render = Callable[..., list[dict[str, Any]]]
# The Strimzi CRDs (KafkaTopic, KafkaUser) come from Maven Central's io.strimzi:api test jar, fetched and
# cached by `make strimzi-crds` (deploy/tools.mk, which names the version).
_STRIMZI_PIN = re.search(r"^STRIMZI_API_VERSION \?= (\S+)$", (ROOT / "deploy" / "tools.mk").read_text(), re.MULTILINE)
assert _STRIMZI_PIN, "deploy/tools.mk pins STRIMZI_API_VERSION"
STRIMZI_API_VERSION = _STRIMZI_PIN[1]


def tool(variable: str, name: str) -> str:
    """The path of a tool: from the variable `make` exports, else from PATH; fails with the fix."""
    path = os.environ.get(variable) or shutil.which(name)
    if not path or not Path(path).is_file():
        pytest.fail(f"{name} is not installed ({variable} unset and not on PATH): run `make tools`", pytrace=False)
    return path


@pytest.fixture(scope="session")
def helm() -> str:
    """The pinned helm binary `make tools` built."""
    return tool("SFLS_HELM", "helm")


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool from Debian's prometheus package."""
    return tool("SFLS_PROMTOOL", "promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """The prometheus server binary from Debian's prometheus package."""
    return tool("SFLS_PROMETHEUS", "prometheus")


@pytest.fixture(scope="session")
def sf_cli() -> str:
    """The pinned Salesforce CLI (npm's @salesforce/cli) `make tools` installed."""
    return tool("SFLS_SF", "sf")


@pytest.fixture(scope="session")
def strimzi_crds() -> Path:
    """The folder holding crds/{v1,v1beta2}/*-Crd-kafka{topic,user}.yaml: cached, else fetched now by make."""
    folder = Path(
        os.environ.get("SFLS_STRIMZI_CRDS") or Path.home() / ".cache" / "sfls" / f"strimzi-crds-{STRIMZI_API_VERSION}"
    )
    if not (folder / ".complete").is_file():
        make = shutil.which("make")
        if make is None:
            pytest.fail(
                "make is not installed: install it (apt-get install make), then run `make tools`", pytrace=False
            )
        result = subprocess.run(
            [make, "--no-print-directory", "-C", str(ROOT), "strimzi-crds", f"STRIMZI_CRDS={folder}"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"could not fetch the Strimzi CRDs (`make strimzi-crds`):\n{result.stderr}", pytrace=False)
    return folder


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run helm against the chart with no cluster and no repositories."""
    env = {**os.environ, "HELM_CACHE_HOME": "/nonexistent-helm-cache", "KUBECONFIG": "/dev/null"}
    return subprocess.run([helm, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.fixture(scope="session")
def render(helm: str) -> Render:
    """Render the chart with a value set (and --set overrides) into its parsed documents."""

    def _render(values: Path | None = None, *sets: str, release: str = "demo") -> list[dict[str, Any]]:
        args = ["template", release, str(CHART), "--namespace", "billing", "--kube-version", KUBE_VERSION]
        args += ["--api-versions", CRD_API]
        if values is not None:
            args += ["--values", str(values)]
        for item in sets:
            args += ["--set", item]
        result = run_helm(helm, *args)
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return _render


@pytest.fixture(scope="session")
def expressions() -> list[promql.Expression]:
    """Every PromQL expression of the dashboards and the alert rules."""
    return promql.dashboard_expressions(CHART / "dashboards") + promql.rule_expressions(
        ROOT / "deploy" / "prometheus" / "alerts.yaml"
    )


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    """Every process the test starts, stopped in reverse order at the end (SIGTERM, SIGKILL after 30 s)."""
    started: list[ServiceProcess] = []
    yield started
    for process in reversed(started):
        process.terminate(30)
