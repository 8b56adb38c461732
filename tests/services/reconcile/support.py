"""Running `sfls reconcile` as a process, for the reconcile tests."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from devstack.process import sfls_command
from shared.settings import Settings
from tests.services.syncer.e2e import subprocess_env


def run_reconcile(settings: Settings, *args: str, **env: str) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """`sfls reconcile --format json ARGS` as a process (with `env` added): (exit code, drift lines, summary)."""
    done = subprocess.run(
        [*sfls_command(), "reconcile", "--format", "json", *args],
        env=subprocess_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode in (0, 1), f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"no output:\n{done.stderr}"
    assert "summary" in lines[-1], lines[-1]
    return done.returncode, lines[:-1], lines[-1]["summary"]
