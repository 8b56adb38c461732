"""The alert rules: promtool-valid, identical in the plain file and the chart, covering the failure modes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy import promql
from tests.deploy.conftest import CHART, ROOT, Render

RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
CHART_RULES = CHART / "files" / "alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"


@pytest.mark.integration  # runs promtool or helm
def test_promtool_check_rules(promtool: str) -> None:
    """`promtool check rules` accepts the rules file."""
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.integration  # runs promtool or helm
def test_promtool_rule_unit_tests(promtool: str) -> None:
    """`promtool test rules` runs the alert unit tests: each alert fires on its failure and stays quiet otherwise."""
    result = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULE_TESTS.parent,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.integration  # runs promtool or helm
def test_chart_ships_the_same_rules(render: Render) -> None:
    """The chart's rule file is byte-identical to the plain one; the PrometheusRule holds those rules."""
    assert CHART_RULES.read_bytes() == RULES.read_bytes(), "copy deploy/prometheus/alerts.yaml to the chart's files/"
    docs = render(None, "metrics.prometheusRule.enabled=true")
    (rule,) = [doc for doc in docs if doc["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))


def test_required_alerts_exist() -> None:
    """Listener disconnected, stale checkpoint, growing lag, dead letters, LogiSense errors, failed imports, an org
    below sfls's reserve, sfls paused for budget, and a stalled or rejected Requests tab alert."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = {rule["alert"]: rule for group in document["groups"] for rule in group["rules"] if "alert" in rule}
    assert {
        "SflsListenerDisconnected",
        "SflsReplayCheckpointStale",
        "SflsConsumerLagGrowing",
        "SflsDeadLettersAppearing",
        "SflsLogisenseErrorRate",
        "SflsImporterJobFailed",
        "SflsSalesforceBelowReserve",
        "SflsPausedForBudget",
        "SflsRequestsTabStalled",
        "SflsRequestsTabRejecting",
    } <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name


def test_signal_strips_only_the_top_level_threshold() -> None:
    """An alert's signal drops the final comparison; its operands split at top-level set operators."""
    assert promql.signal_of("max by (a) (x) == 0") == "max by (a) (x)"
    assert promql.signal_of("sum(rate(x[5m])) / sum(rate(y[5m])) > 0.05") == "sum(rate(x[5m])) / sum(rate(y[5m]))"
    assert promql.signal_of("(x > 1)") == "(x > 1)"
    assert promql.operands("(a > 1) and on (n) (b > 0)") == ["a", "b"]
    assert promql.operands("x unless on (e) y") == ["x", "y"]
    assert promql.operands("a_total > 0") == ["a_total"]


def test_rule_unit_tests_cover_every_alert() -> None:
    """Every alert has at least one promtool unit test that expects it to fire."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = {rule["alert"] for group in document["groups"] for rule in group["rules"] if "alert" in rule}
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts <= fired, sorted(alerts - fired)


def test_rule_files_path() -> None:
    """The unit tests load the plain rules file, so the tested rules are the shipped ones."""
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert [Path(RULE_TESTS.parent, name).resolve() for name in tests["rule_files"]] == [RULES.resolve()]
