"""Listener fixtures: settings pointing at the emulator and the broker, an in-process listener."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.listener.app import run_listener
from services.listener.publisher import ListenerState, parse_state_record
from shared import kafka
from shared.events import ChangeEvent
from shared.observability import Health
from shared.settings import KafkaSettings, ListenerSettings, ObservabilitySettings, Settings
from tests import waiting
from tests.services.listener.support import change_events, read_committed

# Long polls cycle every 2 s in these tests (Salesforce holds them 110 s), so the watchdog can be short.
COMETD_TIMEOUT_MS = 2000
# Pub/Sub keepalives every second (Salesforce: within 270 s), so its watchdog can be short too.
PUBSUB_KEEPALIVE_SECONDS = 1.0
TRANSPORTS = ("cometd", "pubsub")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on the `emulator` fixture runs on both transports, or on those `@pytest.mark.transports` names."""
    if "transport" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("transports")
        metafunc.parametrize("transport", marker.args if marker is not None else TRANSPORTS)


class OnTransport:
    """The Salesforce emulator fixture whose `settings()` name the transport the test runs the listener on."""

    def __init__(self, emulator: Any, transport: str) -> None:
        self._emulator = emulator
        self.transport = transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._emulator, name)

    def settings(self, **overrides: Any) -> Any:
        return self._emulator.settings(**{"transport": self.transport, **overrides})


def listener_settings(emulator: Any, kafka_settings: KafkaSettings, **listener: Any) -> Settings:
    """Settings for one test: the emulator, the test's topic prefix, fast reconnects."""
    tuned = {
        "transactional_id": f"tx-{uuid.uuid4().hex[:10]}",
        "reconnect_base_seconds": 0.1,
        "reconnect_cap_seconds": 1.0,
        "watchdog_seconds": 8.0,
        "connection_timeout_seconds": 5.0,
        "backfill_batch_size": 50,
        "pubsub_watchdog_seconds": 8.0,
        **listener,
    }
    return Settings(
        kafka=kafka_settings,
        salesforce=emulator.settings(),
        listener=ListenerSettings(**tuned),
        observability=ObservabilitySettings(metrics_port=0, log_format="console"),
    )


class ListenerThread:
    """`run_listener` on its own event loop in a thread; `stop()` is the SIGTERM path."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="listener", daemon=True)
        self._started = threading.Event()
        self.health = Health(liveness_seconds=300)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def body() -> None:
            self._stop = asyncio.Event()
            self._started.set()
            await run_listener(self.settings, self._stop, self.health)

        try:
            self._loop.run_until_complete(body())
        except BaseException as exc:
            self.error = exc
        finally:
            self._loop.close()

    def start(self, *, wait_ready: bool = True) -> ListenerThread:
        self._thread.start()
        self._started.wait(10)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 45.0) -> None:
        """Wait until every channel is subscribed (readiness)."""
        wait_until(
            lambda: (self.health.ready, self.health.reason, self.error),
            timeout,
            "listener readiness",
            until=lambda seen: seen[0] or seen[2] is not None,
        )
        if self.error is not None:
            raise self.error
        transport = self.settings.salesforce.transport
        running = REGISTRY.get_sample_value("sfls_listener_transport", {"transport": transport})
        assert running == 1, f"the listener is not on {transport} (sfls_listener_transport: {running})"

    def stop(self, timeout: float = 30.0) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "listener did not stop"
        if self.error is not None:
            raise self.error

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


@pytest.fixture
def emulator(salesforce_emulator: Any, transport: str) -> Any:
    """The Salesforce emulator with short long polls and keepalives, for a listener on `transport`."""
    salesforce_emulator.admin(
        "POST",
        "/settings",
        {"cometd_timeout_ms": COMETD_TIMEOUT_MS, "pubsub_keepalive_seconds": PUBSUB_KEEPALIVE_SECONDS},
    )
    return OnTransport(salesforce_emulator, transport)


@pytest.fixture
def run_listener_thread(emulator: Any, kafka_settings: KafkaSettings) -> Iterator[Callable[..., ListenerThread]]:
    """Start in-process listeners (stopped at the end): run_listener_thread(**listener_settings)."""
    started: list[ListenerThread] = []

    def start(settings: Settings | None = None, **listener: Any) -> ListenerThread:
        thread = ListenerThread(settings or listener_settings(emulator, kafka_settings, **listener)).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        if thread.alive:
            thread.stop()


def state_of(settings: KafkaSettings) -> ListenerState:
    """The committed checkpoint topic, folded."""
    state = ListenerState()
    topics = kafka.Topics(settings.topic_prefix)
    for message in read_committed(settings, topics.listener_checkpoints):
        parse_state_record(message.key(), message.value(), state)
    return state


def last_replay_id(emulator: Any, channel: str) -> int:
    """The newest replay id the emulator delivered on `channel` (0 if none)."""
    events = emulator.admin("GET", "/cdc/events")["events"]
    ids = [e["replayId"] for e in events if channel in e["channels"]]
    return max(ids, default=0)


def wait_until(
    probe: Callable[[], Any],
    timeout: float = 45.0,
    what: str = "condition",
    *,
    until: Callable[[Any], object] = bool,
    context: Callable[[], str] | None = None,
) -> Any:
    """tests.waiting.wait_until with the listener tests' defaults (45 s, polled every 0.2 s)."""
    return waiting.wait_until(probe, timeout, what, until=until, every=0.2, context=context)


def wait_checkpointed(emulator: Any, settings: KafkaSettings, channel: str, timeout: float = 45.0) -> None:
    """Wait until the listener committed everything the emulator delivered on `channel` so far."""
    target = last_replay_id(emulator, channel)

    def replay_id() -> int | None:
        checkpoint = state_of(settings).checkpoints.get(channel)
        return None if checkpoint is None else checkpoint.replay_id

    def reached(replay: int | None) -> bool:
        return replay is not None and replay >= target

    wait_until(replay_id, timeout, f"checkpoint of {channel} to reach {target}", until=reached)


def events_after_sync(emulator: Any, settings: KafkaSettings, *channels: str) -> list[ChangeEvent]:
    """The committed change events once every channel's last delivered message is checkpointed."""
    for channel in channels or ("/data/AccountChangeEvent",):
        wait_checkpointed(emulator, settings, channel)
    return change_events(settings)
