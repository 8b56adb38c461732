"""What every benchmark needs: a fresh local stack on free ports, timing, memory, result rows.

Services run as devstack.process.ServiceProcess children (the tests' and the demo's runner).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from devstack.kafka import default_cache_dir, free_port
from devstack.process import ServiceProcess
from devstack.stack import Stack

CACHE_DIR = default_cache_dir()
LOGISENSE_API = "ResourceServer/api/v10"
LOGISENSE_LOGIN_PATH = "AuthorizationServer/api/v10/Access/Login"

_Job = TypeVar("_Job")
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class BenchStack:
    """A running stack (Kafka + both emulators as their own processes) and its stack.json content."""

    stack: Stack
    description: dict[str, Any]

    @property
    def bootstrap_servers(self) -> str:
        return str(self.description["kafka"]["bootstrap_servers"])

    def env(self, **extra: str) -> dict[str, str]:
        """Environment that points an `sfls` process at this stack."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
        env.update(self.stack.environment)
        env.update(extra)
        return env


@contextmanager
def bench_stack(**stack_args: Any) -> Iterator[BenchStack]:
    """Start Kafka and both emulators on free loopback ports in a temporary folder; stop them after."""
    state_dir = Path(tempfile.mkdtemp(prefix="sfls-bench-"))
    stack = Stack(
        state_dir=state_dir,
        cache_dir=CACHE_DIR,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        salesforce_port=free_port(),
        salesforce_pubsub_port=free_port(),
        logisense_port=free_port(),
        **stack_args,
    )
    try:
        description = stack.up()
        yield BenchStack(stack, description)
    finally:
        stack.down()


def row(
    benchmark: str,
    metric: str,
    value: float,
    unit: str,
    *,
    baseline: str = "",
    baseline_value: float | None = None,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """One line of bench/RESULTS.md; the ratio reads as 'how many times better than the baseline'."""
    ratio = None
    if baseline_value:
        ratio = value / baseline_value if higher_is_better else baseline_value / value if value else None
    return {
        "benchmark": benchmark,
        "metric": metric,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
    }


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of a non-empty list."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def peak_rss_mib(pid: int | None = None) -> float:
    """Peak resident memory (VmHWM) of a live process, or of this process when pid is None."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a live process has used so far, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces; fields[0] is field 3
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5), in clock ticks
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def in_own_process(function: Callable[[_Job], _Result], job: _Job) -> _Result:
    """`function(job)` in a fresh (spawned) process, so a floor does not share this one's GIL with the
    emulators' threads; `function` must be a module-level function and `job` picklable."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, job).result()


@asynccontextmanager
async def logisense_http(
    base_url: str, ca_file: str, credentials: Mapping[str, str], *, connections: int = 32
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A plain httpx client on a LogiSense (no sfls code), logged in with the OAuth password grant, and
    the headers every Resource Server call needs; paths are relative to the server's root."""
    async with httpx.AsyncClient(
        base_url=base_url,
        verify=ca_file,
        trust_env=False,
        timeout=60,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    ) as http:
        login = await http.post(
            f"/{LOGISENSE_LOGIN_PATH}",
            data={
                "grant_type": "password",
                "client_id": credentials["client_id"],
                "username": credentials["username"],
                "password": credentials["password"],
            },
        )
        login.raise_for_status()
        yield http, {"Authorization": f"Bearer {login.json()['access_token']}", "Accept": "application/json"}


def run_measured(command: Sequence[str], env: Mapping[str, str], log: Path) -> tuple[float, float, int]:
    """Run a process to its end, its output appended to `log`: (wall seconds, its own peak RSS in MiB, exit code).

    The peak is read from /proc (VmHWM) while it runs: rusage's ru_maxrss of a child also counts the
    memory of the parent it was forked from, which would credit a large benchmark runner to it.
    """
    started = time.perf_counter()
    process = ServiceProcess(log.stem, command, env, log)
    peak = 0.0
    while process.alive:
        with contextlib.suppress(OSError, ValueError):  # it exited between the check and the read
            peak = max(peak, peak_rss_mib(process.pid))
        time.sleep(0.05)
    return time.perf_counter() - started, peak, process.wait(0)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
