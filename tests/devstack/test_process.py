"""devstack.process.ServiceProcess against a tiny Python child serving /readyz and /metrics on its port."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.process import ServiceProcess, ServiceProcessError, sample_key

# The child: serves /readyz (503 until READY_AFTER seconds have passed, then 200) and a fixed /metrics page on
# SFLS_OBSERVABILITY__METRICS_PORT. argv[1] says what it does on SIGTERM ("exit N": exit with N, "ignore": go on),
# or "crash N": exit with N at once, before it ever serves.
CHILD = r"""
import http.server, os, signal, sys, time

METRICS = b'''# HELP demo_requests_total Requests served.
# TYPE demo_requests_total counter
demo_requests_total{route="/a",code="200"} 3.0
demo_requests_total{route="/b",code="200"} 4.0
demo_requests_total{route="/b",code="500"} 1.0
# HELP demo_up Whether it is up.
# TYPE demo_up gauge
demo_up 1.0
'''
mode, code = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
print("child started", mode, flush=True)
if mode == "crash":
    print("boom", flush=True)
    sys.exit(code)
if mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    def stop(signum, frame):
        print("child stopping", flush=True)
        os._exit(code)
    signal.signal(signal.SIGTERM, stop)
started = time.monotonic()
ready_after = float(os.environ.get("READY_AFTER", "0"))

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/readyz":
            ready = time.monotonic() - started >= ready_after
            status, body = (200, b"ready\n") if ready else (503, b"warming up\n")
        elif self.path == "/metrics":
            status, body = 200, METRICS
        else:
            status, body = 404, b"no such page\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

host, port = os.environ["SFLS_OBSERVABILITY__METRICS_HOST"], int(os.environ["SFLS_OBSERVABILITY__METRICS_PORT"])
http.server.ThreadingHTTPServer((host, port), Handler).serve_forever(poll_interval=0.1)
"""


def child(tmp_path: Path, *args: str, ready_after: float = 0.0) -> ServiceProcess:
    """The tiny child as a ServiceProcess, its log in tmp_path."""
    env = {**os.environ, "READY_AFTER": str(ready_after)}
    return ServiceProcess("child", [sys.executable, "-c", CHILD, *args], env, tmp_path / "child.log")


@pytest.fixture
def started() -> Iterator[list[ServiceProcess]]:
    """Children a test starts; killed at the end whatever happened."""
    made: list[ServiceProcess] = []
    yield made
    for process in made:
        process.kill()


def test_ready_and_metrics_of_a_running_child(tmp_path: Path, started: list[ServiceProcess]) -> None:
    """wait_ready returns the 200 once /readyz turns ready; metric sums the samples whose labels match."""
    process = child(tmp_path, "exit", "0", ready_after=0.5)
    started.append(process)
    assert process.wait_ready(30).text == "ready\n"
    assert process.ready()
    assert process.alive
    assert process.returncode is None
    assert process.metric("demo_requests_total") == 8.0
    assert process.metric("demo_requests_total", {"route": "/b"}) == 5.0
    assert process.metric("demo_requests_total", {"route": "/b", "code": "500"}) == 1.0
    assert process.metric("demo_requests_total", {"route": "/c"}) is None
    assert process.metric("demo_up") == 1.0
    assert process.metric("demo_missing") is None
    samples = process.samples()
    assert samples[sample_key("demo_requests_total", {"route": "/a", "code": "200"})] == 3.0
    assert samples["demo_up"] == 1.0
    missing = process.get("/nothing")
    assert missing is not None
    assert (missing.status, missing.text) == (404, "no such page\n")
    assert "child started exit" in process.tail()


def test_answers_before_readiness_are_reported_not_raised(tmp_path: Path, started: list[ServiceProcess]) -> None:
    """A 503 from /readyz is an answer (status and body), and ready() is False while it lasts."""
    process = child(tmp_path, "exit", "0", ready_after=600)
    started.append(process)
    with pytest.raises(ServiceProcessError, match=r"was not ready after 1\.5 s; /readyz last: 503 'warming up'"):
        process.wait_ready(1.5)
    assert not process.ready()
    reply = process.get("/readyz")
    assert reply is not None
    assert (reply.status, reply.text) == (503, "warming up\n")


def test_wait_ready_gives_up_at_the_deadline_with_the_log_tail(tmp_path: Path, started: list[ServiceProcess]) -> None:
    """A child that never turns ready fails wait_ready once the deadline has passed, not before."""
    process = child(tmp_path, "exit", "0", ready_after=600)
    started.append(process)
    began = time.monotonic()
    with pytest.raises(ServiceProcessError) as failure:
        process.wait_ready(2.0)
    assert time.monotonic() - began >= 2.0
    assert "child started exit" in str(failure.value)
    assert process.alive


def test_wait_ready_fails_at_once_when_the_child_exits(tmp_path: Path, started: list[ServiceProcess]) -> None:
    """A child that exits during start-up ends wait_ready at once, naming its exit code and showing its log."""
    process = child(tmp_path, "crash", "3")
    started.append(process)
    began = time.monotonic()
    with pytest.raises(ServiceProcessError, match="exited with 3 before it was ready") as failure:
        process.wait_ready(120)
    assert time.monotonic() - began < 60
    assert "boom" in str(failure.value)
    assert process.returncode == 3
    assert not process.alive
    with pytest.raises(ServiceProcessError, match="child exited with 3"):
        process.check_alive()
    assert process.get("/readyz") is None


@pytest.mark.parametrize("code", [0, 3])
def test_terminate_returns_the_exit_code_of_a_child_that_stops_on_sigterm(
    tmp_path: Path, started: list[ServiceProcess], code: int
) -> None:
    """SIGTERM ends a child that handles it; terminate returns the code it exited with."""
    process = child(tmp_path, "exit", str(code))
    started.append(process)
    process.wait_ready(30)
    assert process.terminate(30) == code
    assert process.returncode == code
    assert "child stopping" in process.tail()
    assert process.terminate(1) == code  # a second call only reports


def test_a_child_ignoring_sigterm_is_killed_after_the_deadline(tmp_path: Path, started: list[ServiceProcess]) -> None:
    """terminate waits its deadline for a child that ignores SIGTERM, then kills it (-9)."""
    process = child(tmp_path, "ignore")
    started.append(process)
    process.wait_ready(30)  # the child ignores SIGTERM from before it serves
    began = time.monotonic()
    assert process.terminate(1.5) == -signal.SIGKILL
    assert time.monotonic() - began >= 1.5
    assert not process.alive


def test_kill_is_kill_9_and_wait_awaits_an_exit(tmp_path: Path, started: list[ServiceProcess]) -> None:
    """kill() ends a running child with -9; wait() fails at its deadline while the child still runs."""
    process = child(tmp_path, "ignore")
    started.append(process)
    process.wait_ready(30)
    with pytest.raises(ServiceProcessError, match=r"still ran after 0\.5 s"):
        process.wait(0.5)
    assert process.kill() == -signal.SIGKILL
    assert process.wait(1) == -signal.SIGKILL


def test_tail_is_the_end_of_the_log(tmp_path: Path, started: list[ServiceProcess]) -> None:
    """tail(chars) is the last chars of the log, still readable after the child is gone."""
    process = child(tmp_path, "crash", "0")
    started.append(process)
    assert process.wait(30) == 0
    assert process.tail(5) == "boom\n"
    assert process.tail() == "child started crash\nboom\n"


def test_sfls_runs_this_interpreters_sfls(tmp_path: Path, started: list[ServiceProcess]) -> None:
    """ServiceProcess.sfls runs the venv's `sfls` with the given arguments, named after the first."""
    process = ServiceProcess.sfls("--help", env=dict(os.environ), log=tmp_path / "help.log")
    started.append(process)
    assert process.name == "--help"
    assert process.wait(120) == 0, process.tail()
    assert "Usage: sfls" in process.tail(chars=1_000_000)  # the whole help, however many commands it lists
