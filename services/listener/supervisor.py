"""The one reconnect loop of the listener's transports: keep a session, rebuild it on any failure, forever.

A transport (CometD in services/listener/stream.py, the Pub/Sub API in services/listener/pubsub/supervisor.py)
implements `_session` (connect, subscribe, hand batches over until `stop`) and says which exceptions mean
"rebuild" and how each is labelled. Here: the capped, jittered backoff between rebuilds (restarted once a
session got as far as subscribing), the `sfls_listener_reconnects_total{reason}` count, the warning log, and
the readiness that follows the subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import structlog

from services.listener.metrics import CONNECTED, RECONNECTS
from shared.observability import Health
from shared.retry import RetryPolicy
from shared.settings import ListenerSettings

log = structlog.get_logger(__name__)


class RebuildError(Exception):
    """The watchdog (or the handler) asks for a fresh client; `reason` labels the metric."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def rebuild_backoff(settings: ListenerSettings) -> RetryPolicy:
    """Delays between client rebuilds (and resync retries): shared/retry.py's full jitter, never giving up."""
    return RetryPolicy(
        max_attempts=sys.maxsize,
        base_seconds=settings.reconnect_base_seconds,
        cap_seconds=settings.reconnect_cap_seconds,
    )


class Supervisor:
    """Runs one session of a transport at a time until `stop`; rebuilds it after every failure."""

    failures: tuple[type[BaseException], ...] = (RebuildError, OSError, TimeoutError)

    def __init__(self, settings: ListenerSettings, health: Health | None = None) -> None:
        self.settings = settings
        self._health = health
        self._backoff = rebuild_backoff(settings)
        self.subscribed = asyncio.Event()
        self.rebuilds = 0
        self._reached = False  # the current session got as far as subscribing

    async def _session(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    def reason(self, exc: BaseException) -> str:
        """The metric label of why the session is rebuilt."""
        return exc.reason if isinstance(exc, RebuildError) else "network"

    def rebuilt(self, reason: str) -> None:
        """Called before the pause that follows a failed session (e.g. to log in afresh after `auth`)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a subscribed session until `stop` is set; rebuild it on every failure, forever."""
        attempt = 0
        while not stop.is_set():
            self._reached = False
            try:
                await self._session(stop)
            except self.failures as exc:
                reason, error = self.reason(exc), str(exc)[:500]
            else:
                return
            if self._reached:
                attempt = 0  # the last session got as far as subscribing: start the backoff over
            self._mark_subscribed(False)
            attempt += 1
            delay = self._backoff.delay(attempt)
            self.rebuilds += 1
            RECONNECTS.labels(reason=reason).inc()
            self.rebuilt(reason)
            log.warning("streaming_client_rebuilt", reason=reason, error=error, delay_seconds=round(delay, 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    def _tick(self) -> None:
        if self._health is not None:
            self._health.tick()

    def _mark_subscribed(self, subscribed: bool) -> None:
        CONNECTED.set(1 if subscribed else 0)
        if subscribed:
            self.subscribed.set()
            self._reached = True
        else:
            self.subscribed.clear()
        if self._health is not None:
            self._health.set_ready(subscribed, "subscribed" if subscribed else "not subscribed")
