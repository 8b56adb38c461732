"""The Grafana dashboards: valid, importable by hand, and built only from metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import promql
from tests.deploy.conftest import CHART, ROOT
from tests.scripts import load_script

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_dashboards_exist() -> None:
    """The chart ships at least the overview dashboard."""
    assert "sfls-overview.json" in {path.name for path in DASHBOARDS}


def test_checked_in_json_is_the_generator_output() -> None:
    """The JSON in the chart is what scripts/build_dashboards.py writes (edit the script, not the JSON)."""
    rendered = load_script("build_dashboards").render()
    assert sorted(rendered) == [path.name for path in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text(encoding="utf-8") == rendered[path.name], (
            f"run python scripts/build_dashboards.py ({path.name})"
        )


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboard_is_importable(path: Path) -> None:
    """A stable uid, no numeric id, a datasource variable, and no `__inputs` to map on import."""
    dashboard = load(path)
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert dashboard["id"] is None
    assert "__inputs" not in dashboard
    assert dashboard["schemaVersion"] >= 39
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_uids_are_unique_across_dashboards() -> None:
    """No two dashboards share a uid (Grafana would overwrite one with the other)."""
    uids = [load(path)["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_panels_are_well_formed(path: Path) -> None:
    """Panel ids are unique, every query panel uses the datasource variable, and ref ids are unique per panel."""
    panels = promql.iter_panels(load(path))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    queries = [panel for panel in panels if panel["type"] != "row"]
    assert len(queries) >= 10, f"only {len(queries)} query panels in {path.name}"
    for panel in queries:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(target["datasource"] == panel["datasource"] for target in panel["targets"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_queries_use_rate_interval_and_namespace(path: Path) -> None:
    """Rates use `$__rate_interval` (no fixed window) and every selector filters on `$namespace`."""
    expressions = [
        expression
        for expression in promql.dashboard_expressions(path.parent)
        if expression.source.startswith(path.name) and "variable" not in expression.source
    ]
    assert len(expressions) >= 10, f"only {len(expressions)} panel queries found in {path.name}"
    assert any("$__rate_interval" in expression.expr for expression in expressions)
    for expression in expressions:
        for window in re.findall(r"\b(?:rate|irate)\([^\[]*\[([^\]]+)\]", expression.expr):
            assert window == "$__rate_interval", expression.source
        selectors = re.findall(r"\b([a-z_:][a-z0-9_:]*)\{([^}]*)\}", expression.expr)
        assert selectors, expression.source
        for name, matchers in selectors:
            assert 'namespace=~"$namespace"' in matchers, f"{expression.source}: {name}"


def test_overview_covers_the_pipeline() -> None:
    """The overview shows events in/out, coalescing, LogiSense latency/errors, dead letters, lag, listener, imports."""
    path = CHART / "dashboards" / "sfls-overview.json"
    names: set[str] = set()
    for expression in promql.dashboard_expressions(path.parent):
        if expression.source.startswith(path.name):
            names |= promql.metric_names(expression.expr)
    required = {
        "sfls_listener_cdc_messages_total",
        "sfls_syncer_events_total",
        "sfls_syncer_coalescing_ratio",
        "sfls_logisense_request_duration_seconds_bucket",
        "sfls_logisense_requests_total",
        "sfls_dead_letters_total",
        "sfls_syncer_consumer_lag",
        "sfls_listener_connected",
        "sfls_importer_items_total",
        "sfls_importer_last_success_timestamp_seconds",
    }
    assert required <= names, sorted(required - names)
    rows = [panel["title"] for panel in load(path)["panels"] if panel["type"] == "row"]
    assert {"Listener", "Syncer", "Importer"} <= set(rows)


def test_every_metric_used_exists_in_the_code(expressions: list[promql.Expression]) -> None:
    """Each metric a dashboard or an alert names is registered in shared/ or services/, or is a standard series."""
    registered = promql.registered_series(ROOT / "shared", ROOT / "services")
    assert "sfls_dead_letters_total" in registered, "the metric scan found nothing: check registered_series()"
    unknown = {}
    for expression in expressions:
        for name in promql.metric_names(expression.expr):
            if name not in registered and not promql.is_standard(name):
                unknown.setdefault(name, expression.source)
    assert not unknown, f"metrics not exported by any service: {unknown}"


def test_metric_name_lexer() -> None:
    """The lexer finds metric names and skips functions, keywords, label names, strings and durations."""
    expr = (
        'sum by (namespace, le) (rate(a_total{x="b_total", y=~"$namespace"}[$__rate_interval])) '
        "/ on (job) group_left (service) b_info > 0.5 and time() - c_seconds offset 5m unless d"
    )
    assert promql.metric_names(expr) == {"a_total", "b_info", "c_seconds", "d"}
