"""The `sfls` command as a user runs it: help, settings errors, the local broker's lifecycle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.kafka import free_port

SFLS = [sys.executable, "-c", "from services.cli import app; app(prog_name='sfls')"]


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
    return subprocess.run(
        [*SFLS, *args], capture_output=True, text=True, env={**base, **(env or {})}, timeout=timeout, check=False
    )


def test_help_lists_the_subcommands() -> None:
    """`sfls --help` names every subcommand a user needs."""
    result = _run("--help")
    assert result.returncode == 0
    for command in ("listener", "syncer", "import", "backfill", "dlq", "requests", "test-connection", "devstack"):
        assert command in result.stdout, command


# The product's own commands, as a deployment runs them.
PRODUCT_COMMANDS = [
    ["--help"],
    ["listener", "--help"],
    ["backfill", "--help"],
    ["syncer", "--help"],
    ["dlq", "list", "--help"],
    ["requests", "--help"],
    ["import", "--help"],
    ["import", "all", "--help"],
    ["test-connection", "--help"],
]
# `import devstack` raises ImportError from here on, as where the local stack is not installed.
WITHOUT_LOCAL_STACK = [
    sys.executable,
    "-c",
    "import sys; sys.modules['devstack'] = None; from services.cli import app; app(prog_name='sfls')",
]


@pytest.mark.parametrize("args", PRODUCT_COMMANDS, ids=" ".join)
def test_product_commands_never_import_the_local_stack(args: list[str]) -> None:
    """Every product command works where `devstack` cannot be imported at all."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
    result = subprocess.run(
        [*WITHOUT_LOCAL_STACK, *args], capture_output=True, text=True, env=base, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Usage: sfls" in result.stdout


def test_devstack_without_the_local_stack_says_how_to_install_it() -> None:
    """`sfls devstack up` where the local stack is missing: one line naming the fix, exit code 1."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
    result = subprocess.run(
        [*WITHOUT_LOCAL_STACK, "devstack", "up"], capture_output=True, text=True, env=base, timeout=60, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not installed here" in result.stderr
    assert "pip install -e . -e ./devstack" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_devstack_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    """SFLS_DEVSTACK__KAFKA_PORT=abc stops `sfls devstack status` with exit 2 and the variable named."""
    result = _run(
        "devstack", "status", env={"SFLS_DEVSTACK__STATE_DIR": str(tmp_path), "SFLS_DEVSTACK__KAFKA_PORT": "abc"}
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SFLS_DEVSTACK__KAFKA_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_setting_exits_non_zero_naming_the_variable(tmp_path: Path) -> None:
    """Any command with SFLS_SYNC_INTERVAL_MINUTES=abc exits 2 and names the variable."""
    result = _run(
        "devstack", "status", env={"SFLS_SYNC_INTERVAL_MINUTES": "abc", "SFLS_DEVSTACK__STATE_DIR": str(tmp_path)}
    )
    assert result.returncode == 2
    assert "SFLS_SYNC_INTERVAL_MINUTES" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_port_is_one_line(tmp_path: Path) -> None:
    """An impossible broker port gives one error line and exit code 1."""
    result = _run("devstack", "kafka", "up", "--port", "70000", env={"SFLS_DEVSTACK__STATE_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: Kafka port 70000 is not a TCP port (1-65535)"]


def test_missing_java_is_one_line(tmp_path: Path) -> None:
    """A missing Java names the problem and the fix in one line."""
    result = _run(
        "devstack",
        "kafka",
        "up",
        env={"SFLS_DEVSTACK__STATE_DIR": str(tmp_path), "SFLS_DEVSTACK__JAVA": "no-such-java"},
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "Java not found" in lines[0]
    assert "SFLS_DEVSTACK__JAVA" in lines[0]


@pytest.mark.integration
def test_kafka_up_status_down(tmp_path: Path) -> None:
    """`sfls devstack kafka up` starts a broker that serves clients; `down` stops it; a busy port is refused."""
    from confluent_kafka.admin import AdminClient

    port, controller = free_port(), free_port()
    env = {
        "SFLS_DEVSTACK__STATE_DIR": str(tmp_path),
        "SFLS_DEVSTACK__KAFKA_PORT": str(port),
        "SFLS_DEVSTACK__KAFKA_CONTROLLER_PORT": str(controller),
    }
    up = _run("devstack", "kafka", "up", env=env, timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{port}" in up.stdout
        metadata = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
        assert 1 in metadata.brokers
        status = _run("devstack", "kafka", "status", env=env)
        assert status.returncode == 0
        assert "running" in status.stdout
        other = tmp_path / "other"
        busy = _run("devstack", "kafka", "up", env={**env, "SFLS_DEVSTACK__STATE_DIR": str(other)})
        assert busy.returncode == 1
        assert f"port {port} on 127.0.0.1 is already in use" in busy.stderr
    finally:
        down = _run("devstack", "kafka", "down", env=env)
    assert down.returncode == 0
    assert "Kafka stopped" in down.stdout
    assert _run("devstack", "kafka", "status", env=env).returncode == 1


def test_the_syncer_and_the_importer_never_load_the_streaming_client() -> None:
    """aiosfstream-ng and aiohttp are the listener's (services/listener/streaming.py); the others do without."""
    script = (
        "import sys\n"
        "import services.syncer.app, services.syncer.commands, services.importer.app, services.importer.commands\n"
        "print(sorted(m for m in ('aiosfstream_ng', 'aiocometd_ng', 'aiohttp') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
