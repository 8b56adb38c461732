"""Importer benchmark: a seeded LogiSense catalogue imported end to end (LogiSense -> Kafka -> Salesforce).

For each size (10,000 and 100,000 catalogue items; `--small`: 1,000 and 10,000) the emulators are
reset (LogiSense seeded with that many items, Salesforce with the importer's schema) and
`sfls import catalogue` runs twice as its own process:
- run 1 lands everything: wall time, items/s, Salesforce API calls, the importer's peak RSS;
- run 2 is identical: wall time and Salesforce writes (the content hash makes them zero).
At the largest size a third, fresh run lands everything with `importer.bulk_threshold=0` (composite
calls only), the baseline for what Bulk API 2.0 saves. The emulator finishes a Bulk job in well under
a second, so jobs are polled every 0.2 s here; real Salesforce takes seconds to minutes per job, so
the Bulk wall time is not a forecast, while the call counts are.
Peak RSS is the importer process's own (VmHWM while it runs), not the emulators'. Flat RSS from the
small to the large size is the goal (streaming, bounded batches).

Kafka: the broker at KAFKA_BOOTSTRAP_SERVERS when set (no extra JVM), otherwise a fresh local
stack (`bench.common.bench_stack`). The emulators always run as their own processes.

    python -m bench.bench_importer [--small]
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import CACHE_DIR, bench_stack, row, run_measured
from devstack.kafka import free_port
from devstack.process import sfls_command
from devstack.stack import Stack
from devstack.tls import ensure_ca
from shared.config_sources import STACK_FILE_ENV

BENCH = "importer"
SIZES = (10_000, 100_000)
SMALL_SIZES = (1_000, 10_000)
PRODUCT_EXTENSIONS = '[{"logisense": "family", "salesforce": "Family"}]'


@contextmanager
def _stack() -> Iterator[tuple[dict[str, Any], Path]]:
    """(stack.json content, state folder): emulators as processes, Kafka reused when configured."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        with bench_stack() as fresh:
            yield fresh.description, fresh.stack.state_dir
        return
    state_dir = Path(tempfile.mkdtemp(prefix="sfls-bench-importer-"))
    stack = Stack(
        state_dir=state_dir,
        cache_dir=CACHE_DIR,
        salesforce_port=free_port(),
        salesforce_pubsub_port=free_port(),
        logisense_port=free_port(),
    )
    ca = ensure_ca(state_dir)
    try:
        stack.salesforce().start(ca.ca_file)
        stack.logisense().start(ca.ca_file)
        description = stack.describe()
        description["kafka"]["bootstrap_servers"] = bootstrap
        stack.stack_file.write_text(json.dumps(description))
        yield description, state_dir
    finally:
        stack.salesforce().stop()
        stack.logisense().stop()


class _Admin:
    def __init__(self, url: str, ca_file: str) -> None:
        self.url = url
        self.context = ssl.create_default_context(cafile=ca_file)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - our own https emulator
            f"{self.url}/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, context=self.context, timeout=300) as response:  # noqa: S310
            return json.loads(response.read() or b"null")


def _schema(env: dict[str, str], state_dir: Path) -> Path:
    """The DX source `sfls import schema --out` writes, which the emulator loads (`POST /__admin/schema-source`)."""
    source = state_dir / "sfls-schema"
    subprocess.run(
        [*sfls_command(), "import", "schema", "--out", str(source)], env=env, check=True, capture_output=True
    )
    return source


def _run_import(env: dict[str, str], log: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one `sfls import catalogue` process, its output appended to `log`."""
    return run_measured([*sfls_command(), "import", "catalogue"], env, log)


def _writes(counters: dict[str, Any]) -> int:
    return sum(counters["sobject_write"].values())


def measure(sizes: tuple[int, ...]) -> dict[int, dict[str, float]]:
    figures: dict[int, dict[str, float]] = {}
    with _stack() as (description, state_dir):
        sf = _Admin(description["salesforce"]["admin_url"], description["salesforce"]["ca_file"])
        ls = _Admin(description["logisense"]["admin_url"], description["logisense"]["ca_file"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
        env |= {
            STACK_FILE_ENV: str(state_dir / "stack.json"),
            "SFLS_MAPPINGS__PRODUCT_EXTENSIONS": PRODUCT_EXTENSIONS,
            "SFLS_OBSERVABILITY__LOG_LEVEL": "WARNING",
            "SFLS_KAFKA__PARTITIONS": "1",
            "SFLS_SALESFORCE__BULK_POLL_SECONDS": "0.2",
        }
        schema = _schema(env, state_dir)
        log = state_dir / "import.log"
        for size in sizes:
            env["SFLS_KAFKA__TOPIC_PREFIX"] = f"bench{uuid.uuid4().hex[:8]}"
            ls.call("POST", "reset", {"seed": 1, "catalogue_size": size})
            sf.call("POST", "reset", {})
            sf.call("POST", "schema-source", {"path": str(schema)})
            first_seconds, first_rss, first_code = _run_import(env, log)
            after_first = sf.call("GET", "counters")
            second_seconds, second_rss, second_code = _run_import(env, log)
            after_second = sf.call("GET", "counters")
            if first_code or second_code:
                raise RuntimeError(
                    f"sfls import catalogue failed at {size} items (exit {first_code}/{second_code}); see {log}"
                )
            figures[size] = {
                "bulk_requests": after_first["bulk"],
                "seconds": first_seconds,
                "items_per_second": size / first_seconds,
                "api_calls": after_first["total"],
                "rss_mib": first_rss,
                "second_seconds": second_seconds,
                "second_rss_mib": second_rss,
                "second_writes": _writes(after_second) - _writes(after_first),
                "second_api_calls": after_second["total"] - after_first["total"],
            }
            print(f"   {size:,} items: {json.dumps(figures[size])}", flush=True)
        largest = max(sizes)
        composite = env | {
            "SFLS_IMPORTER__BULK_THRESHOLD": "0",
            "SFLS_KAFKA__TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
        }
        sf.call("POST", "reset", {})
        sf.call("POST", "schema", schema)
        seconds, _rss, code = _run_import(composite, log)
        if code:
            raise RuntimeError(
                f"sfls import catalogue (composite only) failed at {largest} items (exit {code}); see {log}"
            )
        counters = sf.call("GET", "counters")
        figures[largest] |= {"composite_seconds": seconds, "composite_api_calls": counters["total"]}
        print(f"   {largest:,} items, composite only: {seconds:.1f} s, {counters['total']} calls", flush=True)
    return figures


def run(small: bool = False) -> list[dict[str, Any]]:
    sizes = SMALL_SIZES if small or os.environ.get("SFLS_BENCH_SMALL") else SIZES
    figures = measure(sizes)
    low, high = sizes
    lo, hi = figures[low], figures[high]
    base = f"same run at {low:,} items"
    composite = "composite calls only (bulk_threshold 0), same run"
    return [
        row(
            BENCH,
            f"wall time, {high:,} items",
            hi["seconds"],
            "s",
            baseline=composite,
            baseline_value=hi["composite_seconds"],
            higher_is_better=False,
        ),
        row(
            BENCH,
            f"throughput, {high:,} items",
            hi["items_per_second"],
            "items/s",
            baseline=base,
            baseline_value=lo["items_per_second"],
        ),
        row(
            BENCH,
            f"Salesforce API calls, {high:,} items (of which Bulk API 2.0: {hi['bulk_requests']:,.0f})",
            hi["api_calls"],
            "calls",
            baseline=composite,
            baseline_value=hi["composite_api_calls"],
            higher_is_better=False,
        ),
        row(
            BENCH,
            f"Salesforce API calls, composite only, {high:,} items",
            hi["composite_api_calls"],
            "calls",
            baseline="one REST call per record",
            baseline_value=high,
            higher_is_better=False,
        ),
        row(
            BENCH,
            f"peak RSS, {high:,} items",
            hi["rss_mib"],
            "MiB",
            baseline=base,
            baseline_value=lo["rss_mib"],
            higher_is_better=False,
        ),
        row(BENCH, f"peak RSS, {low:,} items", lo["rss_mib"], "MiB"),
        row(
            BENCH,
            f"second identical run, {high:,} items",
            hi["second_seconds"],
            "s",
            baseline="first run",
            baseline_value=hi["seconds"],
            higher_is_better=False,
        ),
        row(BENCH, f"second run Salesforce writes, {high:,} items", hi["second_writes"], "records"),
        row(BENCH, f"second run Salesforce API calls (reads), {high:,} items", hi["second_api_calls"], "calls"),
        row(BENCH, f"second run peak RSS, {high:,} items", hi["second_rss_mib"], "MiB"),
    ]


if __name__ == "__main__":
    for item in run(small="--small" in sys.argv[1:]):
        print(item)
