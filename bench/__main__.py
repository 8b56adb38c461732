"""Run every benchmark and write bench/RESULTS.md (`make bench`).

Each `bench/bench_*.py` module exposes `run() -> list[dict]`; a module that fails is reported in the
table as failed instead of hiding the others. `python -m bench listener syncer` runs a subset and
replaces only those benchmarks' rows in RESULTS.md, keeping the others and the date they were measured.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import machine

ORDER = (
    "emulators",
    "listener",
    "syncer",
    "importer",
    "latency",
    "scaleout",
    "opportunity",
    "reconcile",
    "requests_tab",
)
RESULTS = Path(__file__).with_name("RESULTS.md")
TABLE_HEADER = "| Benchmark | Metric | Value | Unit | Baseline | Baseline value | Ratio |"


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _table_row(item: dict[str, Any]) -> str:
    ratio = f"{item['ratio']:.2f}x" if item.get("ratio") else ""
    return (
        f"| {item['benchmark']} | {item['metric']} | {_fmt(item['value'])} | {item['unit']} | "
        f"{item.get('baseline', '')} | {_fmt(item.get('baseline_value'))} | {ratio} |"
    )


def _merged(previous: list[str], rows: list[dict[str, Any]], table: list[str]) -> tuple[list[str], list[str]]:
    """A subset run's rows in place of the same benchmarks' rows of the previous results; the rest kept."""
    fresh: dict[str, list[str]] = {}
    for item, line in zip(rows, table, strict=True):
        fresh.setdefault(item["benchmark"], []).append(line)
    head = [line for line in previous if line.startswith(("Measured", "Re-measured"))]
    merged: list[str] = []
    for line in previous:
        if not line.startswith("| ") or line == TABLE_HEADER:
            continue
        label = line.split("|")[1].strip()
        if label not in fresh:
            merged.append(line)
        elif fresh[label]:
            merged.extend(fresh[label])
            fresh[label] = []
    merged.extend(line for lines in fresh.values() for line in lines)
    return head, merged


def _arguments(argv: list[str], available: list[str]) -> list[str]:
    """The benchmarks named on the command line, checked before anything runs or is written; `--help` lists them."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run benchmarks and write bench/RESULTS.md; a subset replaces only its own rows.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(available)} (default: all)")
    names: list[str] = parser.parse_args(argv).names
    unknown = [name for name in names if name not in available]
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)} (choose from {', '.join(available)})")
    return names


def main(argv: list[str]) -> int:
    available = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    argv = _arguments(argv, available)
    names = argv or sorted(available, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in names:
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(f"bench.bench_{name}")
            produced = module.run()
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
            continue
        for item in produced:
            print("   " + ", ".join(f"{k}={_fmt(v)}" for k, v in item.items()), flush=True)
        rows.extend(produced)
    table = [_table_row(item) for item in rows]
    if argv and RESULTS.exists():
        head, table = _merged(RESULTS.read_text().splitlines(), rows, table)
        head.append(f"Re-measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench {' '.join(names)}`.")
    else:
        head = [f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` on {machine()}."]
    lines = [
        "# Benchmark results",
        "",
        *head,
        "Each figure has its baseline measured in the same run; the ratio says how many times better "
        "the figure is than the baseline (for latencies: baseline / value).",
        "",
        TABLE_HEADER,
        "|---|---|---:|---|---|---:|---:|",
        *table,
    ]
    if failed:
        lines += ["", "Failed to run: " + ", ".join(failed)]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
