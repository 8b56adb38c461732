"""PromQL as the deployment checks see it: expressions of dashboards and rules, and the metric names they use.

The metric-name extraction is a small lexer, not a PromQL parser: it drops strings, label matchers,
range selectors and grouping clauses, then every identifier not followed by `(` and not a keyword is
a metric name. The real Prometheus server (test_prometheus_e2e) is the parser of record.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
}
# Series every target has, or that the default prometheus-client collectors export.
STANDARD_PREFIXES = ("process_", "python_gc_", "python_info", "scrape_")
STANDARD_NAMES = {"up"}
# Grafana's interval variables, and what the end-to-end test substitutes for them.
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:$.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_NUMBER_SUFFIX = re.compile(r"\b\d+(\.\d+)?(ms|s|m|h|d|w|y)\b")


@dataclass(frozen=True)
class Expression:
    """One PromQL expression and where it comes from (for failure messages)."""

    source: str
    expr: str
    is_alert: bool = False


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    text = _NUMBER_SUFFIX.sub("0", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def is_standard(name: str) -> bool:
    """A series every scrape target or every prometheus-client process exports."""
    return name in STANDARD_NAMES or name.startswith(STANDARD_PREFIXES)


def dashboard_expressions(folder: Path) -> list[Expression]:
    """Every panel target and every query variable of the dashboards in `folder`."""
    found: list[Expression] = []
    for path in sorted(folder.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    where = f"{path.name}: panel {panel.get('id')} {panel.get('title')!r} ref {target.get('refId')}"
                    found.append(Expression(where, target["expr"]))
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable.get("query")
                text = query.get("query", "") if isinstance(query, dict) else str(query)
                series = label_values_selector(text)
                if series:
                    found.append(Expression(f"{path.name}: variable {variable['name']}", series))
    return found


def label_values_selector(query: str) -> str | None:
    """The series selector inside Grafana's `label_values(<selector>, <label>)`."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query, re.DOTALL)
    return match.group(1).strip() if match else None


def iter_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def rule_expressions(rules_file: Path) -> list[Expression]:
    """Every alerting and recording rule expression of a Prometheus rules file."""
    document = yaml.safe_load(rules_file.read_text(encoding="utf-8"))
    found: list[Expression] = []
    for group in document["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            found.append(Expression(f"{rules_file.name}: {group['name']}/{name}", rule["expr"], "alert" in rule))
    return found


def signal_of(expr: str) -> str:
    """An alert expression without its top-level threshold (`X > 0.05` -> `X`), so it returns series when quiet."""
    depth = 0
    text = expr.strip()
    for index in range(len(text) - 1, -1, -1):
        char = text[index]
        if char in ")]}":
            depth += 1
        elif char in "([{":
            depth -= 1
        elif depth == 0 and char in "<>=!" and re.fullmatch(r"\s*(bool\s+)?[0-9.eE+-]+\s*", text[index + 1 :]):
            start = index - 1 if text[index - 1] in "<>=!" else index
            return text[:start].strip()
    return text


def registered_series(*folders: Path) -> dict[str, str]:
    """Every series name the code's prometheus-client metrics expose, mapped to the metric's kind."""
    series: dict[str, str] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)):
                    continue
                kind = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                if kind not in {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"} or not node.args:
                    continue
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    for name in exposed_names(kind, first.value):
                        series[name] = kind
    return series


def exposed_names(kind: str, name: str) -> list[str]:
    """The series prometheus-client exposes for one metric."""
    if kind == "Counter":
        base = name.removesuffix("_total")
        return [f"{base}_total", f"{base}_created"]
    if kind == "Histogram":
        return [f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"]
    if kind == "Summary":
        return [name, f"{name}_sum", f"{name}_count", f"{name}_created"]
    if kind == "Info":
        return [f"{name}_info"]
    return [name]


_SET_OPERATOR = re.compile(r"\b(and|unless|or)\b")
_MODIFIER = re.compile(r"^\s*(on|ignoring|group_left|group_right)\s*(\([^()]*\))?\s*")


def operands(expr: str) -> list[str]:
    """The signals of an alert: split at top-level `and`/`unless`/`or`, each without parentheses or threshold."""
    parts: list[str] = []
    depth = 0
    start = 0
    text = _STRING.sub(lambda m: "_" * len(m.group(0)), expr)
    for match in _SET_OPERATOR.finditer(text):
        depth = sum(1 if c in "([{" else -1 if c in ")]}" else 0 for c in text[: match.start()])
        if depth == 0:
            parts.append(expr[start : match.start()])
            start = match.end()
    parts.append(expr[start:])
    signals = []
    for part in parts:
        body = part.strip()
        while (modifier := _MODIFIER.match(body)) and modifier.group(0):
            body = body[modifier.end() :]
        body = _unwrap(body.strip())
        signals.append(_unwrap(signal_of(body)))
    return signals


def _unwrap(text: str) -> str:
    """Drop parentheses that enclose the whole expression."""
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for index, char in enumerate(text):
            depth += 1 if char == "(" else -1 if char == ")" else 0
            if depth == 0 and index < len(text) - 1:
                return text
        text = text[1:-1].strip()
    return text
