"""Write the Grafana dashboards the Helm chart ships (deploy/helm/sfls/dashboards/*.json).

The JSON is checked in (pretty-printed, keys sorted) so it can be imported by hand; this script is
how it is edited: change a panel here, run `python scripts/build_dashboards.py`, commit both.
tests/deploy checks the checked-in files equal this script's output.

Every query filters on the `$namespace` variable and uses `$__rate_interval`; the datasource is a
variable, so the dashboard imports into any Grafana without mapping inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "sfls" / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"


class Board:
    """Lays panels out on Grafana's 24-column grid, row by row."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._next_id = 1
        self._y = 0
        self._x = 0
        self._row_height = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
                "id": self._take_id(),
                "panels": [],
                "title": title,
                "type": "row",
            }
        )
        self._y += 1

    def stat(self, title: str, expr: str, unit: str, description: str, *, thresholds: list[Any] | None = None) -> None:
        steps = thresholds or [{"color": "green", "value": None}]
        self._add(
            {
                "type": "stat",
                "title": title,
                "description": description,
                "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}},
                "options": {
                    "colorMode": "value",
                    "graphMode": "area",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                },
                "targets": [target(expr, "", "A")],
            },
            width=4,
            height=4,
        )

    def series(self, title: str, unit: str, description: str, *queries: tuple[str, str], width: int = 12) -> None:
        self._add(
            {
                "type": "timeseries",
                "title": title,
                "description": description,
                "fieldConfig": {"defaults": {"unit": unit, "custom": {"fillOpacity": 10, "lineWidth": 1}}},
                "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}},
                "targets": [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)],
            },
            width=width,
            height=8,
        )

    def _add(self, panel: dict[str, Any], *, width: int, height: int) -> None:
        if self._x + width > 24:
            self._newline()
        panel["id"] = self._take_id()
        panel["datasource"] = DS
        panel["gridPos"] = {"h": height, "w": width, "x": self._x, "y": self._y}
        self.panels.append(panel)
        self._x += width
        self._row_height = max(self._row_height, height)

    def _newline(self) -> None:
        self._y += self._row_height
        self._x = 0
        self._row_height = 0

    def _take_id(self) -> int:
        panel_id = self._next_id
        self._next_id += 1
        return panel_id


def target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "range": True, "refId": ref}


def requests_tab_row(b: Board) -> None:
    """The Requests tab writer (services/requests_tab/), and the syncer's Account link beside it."""
    b.row("Requests tab")
    b.series(
        "Records landed",
        "ops",
        "Request records and dead letters the Requests tab writer handled, by Salesforce object and outcome "
        "(created, updated, skipped by requests_tab.mode, rejected, malformed, created_from_dead_letter).",
        (
            f"sum by (object, outcome) (rate(sfls_requests_tab_records_total{{{NS}}}[{RATE}]))",
            "{{object}} {{outcome}}",
        ),
        width=8,
    )
    b.series(
        "Rejected by Salesforce",
        "short",
        "Records Salesforce refused per interval, by object and error code (never retried; the log line "
        "requests_tab_record_refused names the record and fields).",
        (
            f"sum by (object, code) (increase(sfls_requests_tab_rejected_total{{{NS}}}[{RATE}]))",
            "{{object}} {{code}}",
        ),
        width=8,
    )
    b.series(
        "Lag by topic",
        "short",
        "Records of the request log and the dead-letter topics the writer has not landed yet.",
        (f"sum by (topic) (sfls_requests_tab_consumer_lag{{{NS}}})", "{{topic}}"),
        width=8,
    )
    b.series(
        "Time since last landing",
        "s",
        "Seconds since the writer last landed a batch (SflsRequestsTabStalled: over 15 minutes while records wait).",
        (f"time() - max(sfls_requests_tab_last_landing_timestamp_seconds{{{NS}}})", "since last landing"),
        width=6,
    )
    b.series(
        "Batches and landing time",
        "short",
        "Batches per second by outcome (committed, or failed and retried), and the p95 time to land one in Salesforce.",
        (f"sum by (outcome) (rate(sfls_requests_tab_batches_total{{{NS}}}[{RATE}]))", "batches {{outcome}}"),
        (
            f"histogram_quantile(0.95, sum by (le) (rate(sfls_requests_tab_landing_seconds_bucket{{{NS}}}[{RATE}])))",
            "landing p95 (s)",
        ),
        width=6,
    )
    b.series(
        "Retention purge",
        "short",
        "Requests deleted in the last hour for being older than requests_tab.retention_days (their error logs go "
        "with them), and purges that failed (retried at the next interval).",
        (f"sum(increase(sfls_requests_tab_purged_total{{{NS}}}[1h]))", "purged"),
        (f"sum(increase(sfls_requests_tab_purge_failures_total{{{NS}}}[1h]))", "failed purges"),
        width=6,
    )
    b.series(
        "Account link (syncer)",
        "ops",
        "The syncer's writes of the LogiSense id and sync status on Salesforce Accounts, by outcome (written, "
        "refused by Salesforce, failed as a call); sync.account_link switches them off.",
        (f"sum by (outcome) (rate(sfls_syncer_account_link_total{{{NS}}}[{RATE}]))", "{{outcome}}"),
        width=6,
    )


def overview() -> dict[str, Any]:
    """sfls — overview: the whole pipeline on one page, then a row per service."""
    b = Board()
    b.row("Overview")
    b.stat(
        "Listener connected",
        f"min(sfls_listener_connected{{{NS}}})",
        "bool_yes_no",
        "1 while the listener is subscribed to every configured CDC channel.",
        thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
    )
    b.stat(
        "Changes in /s",
        f"sum(rate(sfls_listener_events_published_total{{{NS}}}[{RATE}]))",
        "ops",
        "Change events the listener commits to the changes topic.",
    )
    b.stat(
        "Changes synced /s",
        f'sum(rate(sfls_syncer_events_total{{{NS}, outcome="synced"}}[{RATE}]))',
        "ops",
        "Change events the syncers delivered to LogiSense.",
    )
    b.stat(
        "Consumer lag",
        f"sum(sfls_syncer_consumer_lag{{{NS}}})",
        "short",
        "Records on the changes topic the syncers have not consumed yet.",
    )
    b.stat(
        "Dead letters (1h)",
        f"sum(increase(sfls_dead_letters_total{{{NS}}}[1h]))",
        "short",
        "Records written to a dead-letter topic in the last hour (`sfls dlq list`).",
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
    )
    b.stat(
        "Last import",
        f"time() - min(sfls_importer_last_success_timestamp_seconds{{{NS}}})",
        "s",
        "Time since the least recently imported entity last imported completely.",
        thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 172800}],
    )
    b.series(
        "Events in and out",
        "ops",
        "CDC messages received, change events published by the listener, change events synced by the syncers.",
        (f"sum(rate(sfls_listener_cdc_messages_total{{{NS}}}[{RATE}]))", "CDC messages in"),
        (f"sum(rate(sfls_listener_events_published_total{{{NS}}}[{RATE}]))", "change events published"),
        (f"sum by (outcome) (rate(sfls_syncer_events_total{{{NS}}}[{RATE}]))", "synced: {{outcome}}"),
    )
    b.series(
        "Coalescing",
        "short",
        "Change events per account synced: how many changes each LogiSense write absorbs.",
        (
            f"sum(rate(sfls_syncer_batch_events_sum{{{NS}}}[{RATE}])) / "
            f"sum(rate(sfls_syncer_batch_accounts_sum{{{NS}}}[{RATE}]))",
            "events per account",
        ),
        (f"max(sfls_syncer_coalescing_ratio{{{NS}}})", "last batch"),
    )
    b.series(
        "LogiSense latency",
        "s",
        "Request duration quantiles of every LogiSense call (syncer and importer).",
        *[
            (
                f"histogram_quantile({q}, sum by (le) "
                f"(rate(sfls_logisense_request_duration_seconds_bucket{{{NS}}}[{RATE}])))",
                f"p{int(q * 100)}",
            )
            for q in (0.5, 0.95, 0.99)
        ],
    )
    b.series(
        "LogiSense requests by status",
        "reqps",
        "Requests per second by status class; 5xx, timeout and error are retried with backoff.",
        (f"sum by (status_class) (rate(sfls_logisense_requests_total{{{NS}}}[{RATE}]))", "{{status_class}}"),
    )
    b.series(
        "Dead letters",
        "short",
        "Records dead-lettered per interval by service, topic and error class.",
        (
            f"sum by (service, topic, error_class) (increase(sfls_dead_letters_total{{{NS}}}[{RATE}]))",
            "{{service}} {{topic}} {{error_class}}",
        ),
    )
    b.series(
        "Consumer lag by partition",
        "short",
        "Records behind the high watermark of the changes topic, per partition.",
        (f"max by (partition) (sfls_syncer_consumer_lag{{{NS}}})", "partition {{partition}}"),
    )

    b.row("Listener")
    b.series(
        "CDC messages by change type",
        "ops",
        "CDC messages received per channel and change type (GAP_* and GAP_OVERFLOW become resyncs).",
        (
            f"sum by (channel, change_type) (rate(sfls_listener_cdc_messages_total{{{NS}}}[{RATE}]))",
            "{{channel}} {{change_type}}",
        ),
        width=8,
    )
    b.series(
        "Change events published by source",
        "ops",
        "Change events committed per entity and source (cdc, gap, overflow, backfill, replay).",
        (
            f"sum by (entity, source) (rate(sfls_listener_events_published_total{{{NS}}}[{RATE}]))",
            "{{entity}} {{source}}",
        ),
        width=8,
    )
    b.series(
        "Changes filtered out",
        "ops",
        "Record changes not published, by reason (no trigger field changed, own echo, ...).",
        (f"sum by (reason) (rate(sfls_listener_changes_dropped_total{{{NS}}}[{RATE}]))", "{{reason}}"),
        width=8,
    )
    b.series(
        "Connection state",
        "short",
        "1 while subscribed; reconnects and resyncs by reason.",
        (f"min(sfls_listener_connected{{{NS}}})", "connected"),
        (f"sum by (reason) (increase(sfls_listener_reconnects_total{{{NS}}}[{RATE}]))", "reconnect: {{reason}}"),
        (f"sum by (reason) (increase(sfls_listener_resyncs_total{{{NS}}}[{RATE}]))", "resync: {{reason}}"),
        width=8,
    )
    b.series(
        "Replay checkpoint age",
        "s",
        "Time since the commit timestamp of the last checkpointed CDC message, per channel.",
        (f"time() - max by (channel) (sfls_listener_last_event_timestamp_seconds{{{NS}}})", "{{channel}}"),
        width=8,
    )
    b.series(
        "Kafka transactions",
        "ops",
        "Publish-and-checkpoint transactions by outcome.",
        (f"sum by (outcome) (rate(sfls_listener_transactions_total{{{NS}}}[{RATE}]))", "{{outcome}}"),
        width=8,
    )
    b.series(
        "Transport",
        "short",
        "The transport change events arrive over (1 = in use: cometd or pubsub); Pub/Sub API errors by gRPC status "
        "and Salesforce error code; Pub/Sub keepalives (empty responses) by topic.",
        (f"max by (transport) (sfls_listener_transport{{{NS}}})", "transport: {{transport}}"),
        (
            f"sum by (status, error_code) (increase(sfls_listener_pubsub_errors_total{{{NS}}}[{RATE}]))",
            "error: {{status}} {{error_code}}",
        ),
        (f"sum by (topic) (increase(sfls_listener_pubsub_keepalives_total{{{NS}}}[{RATE}]))", "keepalive: {{topic}}"),
        width=24,
    )

    b.row("Syncer")
    b.series(
        "Batch duration",
        "s",
        "Time to process, dead-letter and commit one batch.",
        *[
            (
                f"histogram_quantile({q}, sum by (le) "
                f"(rate(sfls_syncer_batch_duration_seconds_bucket{{{NS}}}[{RATE}])))",
                f"p{int(q * 100)}",
            )
            for q in (0.5, 0.95)
        ],
        width=8,
    )
    b.series(
        "Batches and accounts",
        "ops",
        "Batches by outcome, account syncs by outcome.",
        (f"sum by (outcome) (rate(sfls_syncer_batches_total{{{NS}}}[{RATE}]))", "batches {{outcome}}"),
        (f"sum by (outcome) (rate(sfls_syncer_accounts_total{{{NS}}}[{RATE}]))", "accounts {{outcome}}"),
        width=8,
    )
    b.series(
        "LogiSense writes",
        "ops",
        "Creates, updates and deletes the syncers made in LogiSense, by kind.",
        (f"sum by (kind) (rate(sfls_syncer_logisense_writes_total{{{NS}}}[{RATE}]))", "{{kind}}"),
        width=8,
    )
    b.series(
        "Retries and Salesforce reads",
        "ops",
        "LogiSense retries by resource; SOQL queries for batch snapshots.",
        (f"sum by (resource) (rate(sfls_syncer_retries_total{{{NS}}}[{RATE}]))", "retry {{resource}}"),
        (f"sum(rate(sfls_syncer_salesforce_queries_total{{{NS}}}[{RATE}]))", "SOQL queries"),
        width=8,
    )
    b.series(
        "Time since last batch",
        "s",
        "Seconds since the last committed batch (at most the sync interval when changes wait).",
        (f"time() - max(sfls_syncer_last_batch_timestamp_seconds{{{NS}}})", "since last batch"),
        width=8,
    )
    b.series(
        "LogiSense errors by resource",
        "reqps",
        "Failed LogiSense requests (4xx, 5xx, timeouts, connection errors) by resource and method.",
        (
            f"sum by (resource, method, status_class) "
            f'(rate(sfls_logisense_requests_total{{{NS}, status_class!="2xx"}}[{RATE}]))',
            "{{method}} {{resource}} {{status_class}}",
        ),
        width=8,
    )

    b.row("Importer")
    b.series(
        "Items in the last run",
        "short",
        "Items of the last import run per entity and outcome (pushed by each run to the Pushgateway).",
        (f"sum by (entity, outcome) (sfls_importer_items_total{{{NS}}})", "{{entity}} {{outcome}}"),
        width=6,
    )
    b.series(
        "Run duration",
        "s",
        "Duration of the last import of each entity.",
        (f"max by (entity) (sfls_importer_run_duration_seconds{{{NS}}})", "{{entity}}"),
        width=6,
    )
    b.series(
        "Time since last complete import",
        "s",
        "Per entity: time since every record last landed in Salesforce.",
        (f"time() - max by (entity) (sfls_importer_last_success_timestamp_seconds{{{NS}}})", "{{entity}}"),
        width=6,
    )
    b.series(
        "Bulk API jobs in the last run",
        "short",
        "Bulk API 2.0 ingest jobs per entity: complete, or failed as a whole by Salesforce (entities with "
        "importer.bulk_threshold or more changed records).",
        (f"sum by (entity, outcome) (sfls_importer_bulk_jobs_total{{{NS}}})", "{{entity}} {{outcome}}"),
        width=6,
    )

    b.row("Reconcile")
    b.series(
        "Drift found by the last run",
        "short",
        "Differences `sfls reconcile` found between Salesforce and LogiSense, by kind (pushed by its runs).",
        (f"max by (kind) (sfls_reconcile_drift{{{NS}}})", "{{kind}}"),
        width=8,
    )
    b.series(
        "Records compared",
        "short",
        "What the last reconcile run read from each system; accounts resynced by --repair.",
        (f"max by (system) (sfls_reconcile_records{{{NS}}})", "{{system}}"),
        (f"max(sfls_reconcile_repaired_accounts{{{NS}}})", "repaired"),
        width=8,
    )
    b.series(
        "Since the last run",
        "s",
        "Time since the last reconcile run finished, and how long it took.",
        (f"time() - max(sfls_reconcile_last_run_timestamp_seconds{{{NS}}})", "since the last run"),
        (f"max(sfls_reconcile_run_duration_seconds{{{NS}}})", "run duration"),
        width=8,
    )

    requests_tab_row(b)

    b.row("API budgets")
    b.series(
        "Salesforce allocations left",
        "percentunit",
        "What the org has left of each allocation in its rolling 24-hour window (Sforce-Limit-Info and /limits, "
        "read by every sfls process), and the reserve sfls's bulk work leaves to the org's other integrations.",
        (
            f"min by (limit) (sfls_salesforce_limit_remaining{{{NS}}} / sfls_salesforce_limit_max{{{NS}}})",
            "{{limit}} left",
        ),
        (
            f"max by (limit) (sfls_salesforce_limit_reserve{{{NS}}} / sfls_salesforce_limit_max{{{NS}}})",
            "{{limit}} reserve",
        ),
        width=6,
    )
    b.series(
        "Daily API requests: everyone and sfls",
        "short",
        "Daily API requests the org used (every integration), and sfls's own calls in the last 24 hours by service.",
        (f'max(sfls_salesforce_limit_used{{{NS}, limit="DailyApiRequests"}})', "used by everyone"),
        (f'max(sfls_salesforce_limit_max{{{NS}, limit="DailyApiRequests"}})', "allocation"),
        (f"sum by (service) (increase(sfls_salesforce_api_calls_total{{{NS}}}[24h]))", "sfls {{service}}"),
        width=6,
    )
    b.series(
        "Waiting for Salesforce budget",
        "short",
        "1 while a call of the service waits for budget; waits per second by reason (reserve: bulk work at the "
        "reserve; floor: essential work at the floor; limit_exceeded: Salesforce said REQUEST_LIMIT_EXCEEDED).",
        (f"max by (service) (sfls_salesforce_budget_paused{{{NS}}})", "{{service}} paused"),
        (
            f"sum by (service, reason) (rate(sfls_salesforce_budget_pauses_total{{{NS}}}[{RATE}]))",
            "{{service}} {{reason}}",
        ),
        width=6,
    )
    b.series(
        "LogiSense rate",
        "reqps",
        "Requests per second to LogiSense by every sfls process, the per-process limit "
        "(logisense.rate_limit_per_second, 0: none), 429 answers, and seconds per second spent waiting for either.",
        (f"sum(rate(sfls_logisense_requests_total{{{NS}}}[{RATE}]))", "requests"),
        (f"max(sfls_logisense_rate_limit_per_second{{{NS}}})", "limit per process"),
        (f"sum(rate(sfls_logisense_throttled_total{{{NS}}}[{RATE}]))", "429 answers"),
        (f"sum(rate(sfls_logisense_throttle_wait_seconds_total{{{NS}}}[{RATE}]))", "waiting"),
        width=6,
    )

    b.row("Processes")
    b.series(
        "Resident memory",
        "bytes",
        "Resident memory of each sfls process.",
        (
            f"process_resident_memory_bytes{{{NS}}} * on (job, instance) group_left (service) sfls_build_info{{{NS}}}",
            "{{service}} {{instance}}",
        ),
    )
    b.series(
        "CPU",
        "percentunit",
        "CPU time per second of each sfls process.",
        (
            f"rate(process_cpu_seconds_total{{{NS}}}[{RATE}]) "
            f"* on (job, instance) group_left (service) sfls_build_info{{{NS}}}",
            "{{service}} {{instance}}",
        ),
    )

    return {
        "annotations": {"list": []},
        "description": "sfls: Salesforce CDC -> Kafka -> LogiSense, and the LogiSense catalogue import.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": b.panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["sfls", "kafka", "salesforce", "logisense"],
        "templating": {
            "list": [
                {
                    "current": {},
                    "hide": 0,
                    "includeAll": False,
                    "label": "Data source",
                    "multi": False,
                    "name": "datasource",
                    "options": [],
                    "query": "prometheus",
                    "refresh": 1,
                    "regex": "",
                    "type": "datasource",
                },
                {
                    "allValue": ".*",
                    "current": {},
                    "datasource": DS,
                    "definition": "label_values(sfls_build_info, namespace)",
                    "hide": 0,
                    "includeAll": True,
                    "label": "Namespace",
                    "multi": True,
                    "name": "namespace",
                    "options": [],
                    "query": {"query": "label_values(sfls_build_info, namespace)", "refId": "namespace"},
                    "refresh": 2,
                    "regex": "",
                    "sort": 1,
                    "type": "query",
                },
            ]
        },
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "sfls — overview",
        "uid": "sfls-overview",
        "version": 1,
    }


DASHBOARDS = {"sfls-overview.json": overview}


def render() -> dict[str, str]:
    """File name -> the JSON text to check in."""
    return {
        name: json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {OUT / name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
