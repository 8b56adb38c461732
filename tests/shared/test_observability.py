"""Logs are JSON without secrets; the health server answers /metrics, /healthz and /readyz."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from devstack.process import Reply, http_get
from shared.observability import Health, HealthServer, SecretMasker, configure_logging, secret_values
from shared.settings import ObservabilitySettings, Settings


def _get(url: str) -> tuple[int, str]:
    reply = http_get(url, timeout=5)
    assert isinstance(reply, Reply), f"nothing answered {url}"
    return reply.status, reply.text


def test_masker_redacts_secret_keys_and_values() -> None:
    """Values under secret-looking keys and known secret values inside text are both hidden."""
    masker = SecretMasker(["s3cr3t-value"])
    cleaned = masker(
        None,
        "info",
        {
            "event": "login failed for s3cr3t-value",
            "password": "anything",
            "nested": {"client_secret": "x"},
            "count": 3,
        },
    )
    assert cleaned == {
        "event": "login failed for ***",
        "password": "***",
        "nested": {"client_secret": "***"},
        "count": 3,
    }


def test_json_logs_carry_service_and_hide_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    """A log line is one JSON object with the service name, and a configured secret never shows."""
    settings = Settings(logisense={"password": "pw-very-secret"})
    configure_logging("syncer", ObservabilitySettings(), secret_values(settings))
    structlog.get_logger().info("token refused", body="echo pw-very-secret", account_id="001")
    logging.getLogger("thirdparty").warning("lib said pw-very-secret")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    record = json.loads(lines[0])
    assert record["service"] == "syncer"
    assert record["event"] == "token refused"
    assert record["account_id"] == "001"
    assert record["body"] == "echo ***"
    assert all("pw-very-secret" not in line for line in lines)


def test_health_server_endpoints() -> None:
    """/healthz follows loop progress, /readyz the service's word, /metrics is Prometheus text."""
    health = Health(liveness_seconds=60)
    server = HealthServer(health, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert _get(f"{base}/healthz")[0] == 200
        assert _get(f"{base}/readyz") == (503, "starting\n")
        health.set_ready(True, "subscribed")
        assert _get(f"{base}/readyz") == (200, "subscribed\n")
        status, body = _get(f"{base}/metrics")
        assert status == 200
        assert "python_info" in body
        assert _get(f"{base}/nothing")[0] == 404
    finally:
        server.stop()


def test_stalled_loop_fails_liveness() -> None:
    """A loop that stopped ticking is reported dead, and then not ready either."""
    health = Health(liveness_seconds=0.001)
    health.set_ready(True)
    import time

    time.sleep(0.01)
    assert not health.alive
    assert not health.ready
    health._liveness_seconds = 60
    health.tick()
    assert health.alive
