"""A service as a child process, the way the tests, the demo and the benchmarks run one.

`ServiceProcess` starts `sfls <args>` (`ServiceProcess.sfls`) or any argv at once, its stdout and
stderr appended to one log file, with `SFLS_OBSERVABILITY__METRICS_HOST`/`_PORT` pointing its
health server at a free loopback port (`port`). Then it answers what a caller asks of a running
service:

- `alive`, `returncode`, `check_alive()` (raises with the log tail once the child has exited);
- `get(path)`: a GET on that port (`Reply(status, text)`, None when nothing answers);
- `ready()`: /readyz (or `ready_path`) answers 200; `wait_ready(timeout)` is the one wait for it:
  polled until the deadline, it fails at once when the child exits, and its error says what the
  path answered last and ends with the log tail;
- `metric(name, labels)` and `samples()`: /metrics parsed as Prometheus text;
- `terminate(timeout)`: SIGTERM, a deadline, then SIGKILL; returns the exit code. `kill()` is kill
  -9 (a node failure, the OOM killer), `wait(timeout)` awaits an exit by itself;
- `tail(chars)`: the end of the log, also after the child is gone.

The product never imports this module (devstack/ stands apart from shared/ and services/).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from prometheus_client.parser import text_string_to_metric_families

from devstack.kafka import DevstackError, free_port

METRICS_HOST_ENV = "SFLS_OBSERVABILITY__METRICS_HOST"
METRICS_PORT_ENV = "SFLS_OBSERVABILITY__METRICS_PORT"
# Loopback answers never go through a proxy from the environment (http_proxy and friends).
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceProcessError(DevstackError):
    """A child exited while it should run, or was not ready in time; the message ends with its log tail."""


@dataclass(frozen=True)
class Reply:
    """What an HTTP GET answered: the status code and the body as text."""

    status: int
    text: str


def sfls_command() -> list[str]:
    """How to run `sfls` from this interpreter: the venv's script next to it, else the CLI module."""
    script = Path(sys.executable).with_name("sfls")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from services.cli import app; app()"]


def http_get(url: str, timeout: float = 2.0) -> Reply | None:
    """GET `url` (plain HTTP, no proxy): its status and body, error statuses included; None when nothing answers."""
    try:
        with _LOOPBACK.open(url, timeout=timeout) as response:
            return Reply(response.status, response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:  # 4xx and 5xx still carry an answer (e.g. 503 "waiting for Kafka")
        with exc:
            return Reply(exc.code, exc.read().decode(errors="replace"))
    except (OSError, http.client.HTTPException):  # refused, reset, timed out, half an answer
        return None


def sample_key(name: str, labels: Mapping[str, str]) -> str:
    """`name{label=value,...}` with the labels sorted: how `samples()` names a sample."""
    if not labels:
        return name
    return f"{name}{{{','.join(f'{k}={v}' for k, v in sorted(labels.items()))}}}"


class ServiceProcess:
    """One child process with its env, log file and health/metrics port; started by the constructor."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        *,
        port: int | None = None,
        ready_path: str = "/readyz",
        new_session: bool = False,
    ) -> None:
        """Start `command`; `port` defaults to a free one; `new_session` keeps a terminal's Ctrl-C from it."""
        self.name = name
        self.command = list(command)
        self.log = log
        self.port = free_port() if port is None else port
        self.ready_path = ready_path
        child_env = {**env, METRICS_HOST_ENV: "127.0.0.1", METRICS_PORT_ENV: str(self.port)}
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(
                self.command,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )

    @classmethod
    def sfls(
        cls,
        *args: str,
        env: Mapping[str, str],
        log: Path,
        name: str | None = None,
        port: int | None = None,
        new_session: bool = False,
    ) -> ServiceProcess:
        """`sfls <args>` (named after its first argument unless `name` says otherwise)."""
        return cls(
            name or (args[0] if args else "sfls"),
            [*sfls_command(), *args],
            env,
            log,
            port=port,
            new_session=new_session,
        )

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return f"ServiceProcess({self.name!r}, pid={self.pid}, port={self.port}, returncode={self.returncode})"

    # -- the process ------------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited (negative: the signal that ended it), else None."""
        return self.process.poll()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def check_alive(self) -> None:
        """Raise ServiceProcessError, with the log tail, when the child has exited."""
        if not self.alive:
            raise ServiceProcessError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")

    def wait(self, timeout: float) -> int:
        """Await the child's exit by itself; its exit code. ServiceProcessError if it still runs at the deadline."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ServiceProcessError(f"{self.name} still ran after {timeout:g} s:\n{self.tail()}") from None

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; the exit code."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        """kill -9, as a node failure or the OOM killer would; the exit code (-9 unless it had exited)."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(10)

    def tail(self, chars: int = 3000) -> str:
        """The last `chars` bytes of the log, decoded ('' before there is a log)."""
        try:
            with self.log.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(0, size - chars))
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    # -- its health and metrics port --------------------------------------------------------------------
    def get(self, path: str, timeout: float = 2.0) -> Reply | None:
        """GET `path` on the child's port (None while nothing answers there)."""
        return http_get(f"http://127.0.0.1:{self.port}{path}", timeout)

    def ready(self) -> bool:
        """The ready path (/readyz) answers 200."""
        reply = self.get(self.ready_path)
        return reply is not None and reply.status == 200

    def wait_ready(self, timeout: float = 90.0, *, every: float = 0.2) -> Reply:
        """Poll the ready path until it answers 200 (that answer is returned).

        ServiceProcessError at once when the child exits, or at the deadline; it says what the path
        answered last and ends with the log tail.
        """
        deadline = time.monotonic() + timeout
        while True:
            reply = self.get(self.ready_path)
            if reply is not None and reply.status == 200:
                return reply
            seen = "nothing answered" if reply is None else f"{reply.status} {reply.text.strip()[:300]!r}"
            if not self.alive:
                raise ServiceProcessError(
                    f"{self.name} exited with {self.process.returncode} before it was ready "
                    f"({self.ready_path}: {seen}):\n{self.tail()}"
                )
            if time.monotonic() >= deadline:
                raise ServiceProcessError(
                    f"{self.name} was not ready after {timeout:g} s; {self.ready_path} last: {seen}\n{self.tail()}"
                )
            time.sleep(every)

    def samples(self) -> dict[str, float]:
        """Every sample of /metrics keyed `name{label=value,...}` (see `sample_key`); {} while nothing answers."""
        reply = self.get("/metrics", timeout=5.0)
        if reply is None or reply.status != 200:
            return {}
        return {
            sample_key(sample.name, sample.labels): sample.value
            for family in text_string_to_metric_families(reply.text)
            for sample in family.samples
        }

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The sum of the /metrics samples called `name` whose labels include `labels`; None when there is none.

        `metric("sfls_listener_reconnects_total", {"reason": "auth"})`; without labels, every sample of the name.
        """
        reply = self.get("/metrics", timeout=5.0)
        if reply is None or reply.status != 200:
            return None
        wanted = dict(labels or {})
        found = [
            sample.value
            for family in text_string_to_metric_families(reply.text)
            for sample in family.samples
            if sample.name == name and wanted.items() <= sample.labels.items()
        ]
        return sum(found) if found else None
