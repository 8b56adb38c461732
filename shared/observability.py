"""Logs, metrics and health: the hooks every service hangs its telemetry on.

- Logs are JSON lines from structlog with `service` and `event`; correlation ids (`event_id`,
  `account_id`) are bound by the caller. Every value under a secret-looking key is redacted, and
  every known secret value is masked wherever it appears in a log line.
- Metrics live in the default prometheus-client registry, named `sfls_<service>_...`.
- One small HTTP server per process serves /metrics, /healthz (the loop ticked recently) and
  /readyz (the service said it is ready).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from pydantic import SecretStr

from shared.config_sources import SECRET_KEY_PATTERN
from shared.settings import ObservabilitySettings, Settings

REDACTED = "***"
BUILD_INFO = Gauge("sfls_build_info", "Build information (always 1).", ["service", "version"])


class SecretMasker:
    """A structlog processor: redacts secret keys and masks known secret values anywhere in the line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _clean(self, key: str, value: Any) -> Any:
        if SECRET_KEY_PATTERN.search(key) and value not in (None, ""):
            return REDACTED
        if isinstance(value, SecretStr):
            return REDACTED
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        return value

    def __call__(self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            event_dict[key] = self._clean(key, event_dict[key])
        return event_dict


def secret_values(settings: Settings) -> list[str]:
    """Every secret value configured, so logs can mask it even inside free text."""
    values = [
        settings.salesforce.client_secret,
        settings.salesforce.password,
        settings.salesforce.security_token,
        settings.salesforce.refresh_token,
        settings.logisense.client_secret,
        settings.logisense.password,
    ]
    found = [v.get_secret_value() for v in values]
    for key, value in (settings.kafka.model_extra or {}).items():
        if SECRET_KEY_PATTERN.search(key):
            found.append(value.get_secret_value() if isinstance(value, SecretStr) else str(value))
    return [v for v in found if v]


class _CurrentStderr:
    """Writes to whatever sys.stderr is when a line is written, not when logging was configured.

    Embedding code and test runners swap sys.stderr; holding the original object would write to a
    closed stream afterwards.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(service: str, settings: ObservabilitySettings, secrets: Iterable[str] = ()) -> None:
    """JSON lines on stderr (or console rendering for humans), every line tagged with the service."""
    masker = SecretMasker(secrets)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    level = logging.getLevelNamesMapping()[settings.log_level]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            masker,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Third-party loggers (aiohttp, simple-salesforce, aiocometd) go through the same masking.
    logging.basicConfig(level=level, stream=_CurrentStderr(), format="%(message)s", force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_MaskingFilter(masker))


class _MaskingFilter(logging.Filter):
    def __init__(self, masker: SecretMasker) -> None:
        super().__init__()
        self._masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._masker.mask(record.getMessage())
        record.args = None
        return True


class Health:
    """Liveness from loop progress, readiness from the service's own word."""

    def __init__(self, liveness_seconds: float) -> None:
        self._liveness_seconds = liveness_seconds
        self._last_tick = time.monotonic()
        self._ready = False
        self.reason = "starting"

    def tick(self) -> None:
        """Call once per loop iteration."""
        self._last_tick = time.monotonic()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self._ready = ready
        self.reason = reason or ("ready" if ready else "not ready")

    @property
    def alive(self) -> bool:
        return time.monotonic() - self._last_tick < self._liveness_seconds

    @property
    def ready(self) -> bool:
        return self._ready and self.alive


class HealthServer:
    """Serves /metrics, /healthz and /readyz from a daemon thread."""

    def __init__(self, health: Health, host: str, port: int) -> None:
        handler = _handler_for(health)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok = health.alive
                self._send(200 if ok else 503, b"ok\n" if ok else b"loop stalled\n")
            elif self.path == "/readyz":
                ok = health.ready
                self._send(200 if ok else 503, f"{health.reason}\n".encode())
            else:
                self._send(404, b"not found\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def start_observability(service: str, settings: Settings) -> tuple[Health, HealthServer]:
    """Configure logs, publish build info, and start the health server for a long-running service."""
    from importlib.metadata import version

    configure_logging(service, settings.observability, secret_values(settings))
    BUILD_INFO.labels(service=service, version=version("sf-logisense-sync")).set(1)
    health = Health(settings.observability.liveness_seconds)
    server = HealthServer(health, settings.observability.metrics_host, settings.observability.metrics_port).start()
    return health, server


def push_metrics(url: str | None, job: str) -> None:
    """Push this process's metrics to a Prometheus Pushgateway (the Jobs: `sfls import`, `sfls reconcile`), when
    `url` is set; a gateway that cannot be reached is a warning, never the run's failure."""
    if not url:
        return
    from prometheus_client import REGISTRY, push_to_gateway

    try:
        push_to_gateway(url, job=job, registry=REGISTRY)
    except OSError as exc:
        structlog.get_logger(__name__).warning("metrics_push_failed", job=job, error=str(exc))
