"""The Pub/Sub supervisor: one Subscribe stream per topic, batches handed over, resubscribe on any trouble.

Per topic (every configured channel name is a Pub/Sub topic name):
- GetTopic first (the topic exists and this user may subscribe), then Subscribe from the committed checkpoint:
  CUSTOM with the stored opaque replay id (delivery starts after it), LATEST after an expired id or a switch of
  transport, and with no checkpoint `listener.initial_replay` (-1 LATEST, -2 EARLIEST). The listener is ready
  once every topic's Subscribe got its response headers (the server holds the subscription).
- Flow control: ask for `listener.pubsub_batch_size` (≤ 100) events and top up to it whenever the server's
  `pending_num_requested` falls to half, so a request is always outstanding and the server's 60-second idle
  close never applies. Events wait in one bounded queue (`listener.max_pending_messages`); while it is full
  nothing more is requested.
- A keepalive (an empty response) carries `latest_replay_id`, which may be past the last event: queued behind
  the topic's events, it moves the checkpoint once they are committed, as Salesforce advises.
- The watchdog resubscribes when a topic saw neither an event nor a keepalive for
  `listener.pubsub_watchdog_seconds` (the server sends one within 270 s).
- Errors end the session (every stream is cancelled: a leaked stream would deliver everything twice), and the
  loop of services/listener/supervisor.py builds a new one with backoff. `UNAUTHENTICATED` logs in afresh first.
  A replay id Salesforce no longer accepts (`...replayid.corrupted`, `...validation.failed`) is never sent again:
  the topic resubscribes from LATEST and `on_expired` starts the full resync, as for CometD.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import grpc
import structlog

from services.listener.metrics import PUBSUB_KEEPALIVES, RESYNCS
from services.listener.publisher import Checkpoint
from services.listener.pubsub import pubsub_api_pb2 as pb
from services.listener.pubsub.client import REPLAY_ERRORS, PubSubClient, PubSubError
from services.listener.pubsub.events import PubSubEvent, from_token, replay_number, token
from services.listener.stream import CheckpointReplay
from services.listener.supervisor import RebuildError, Supervisor
from shared.errors import TransientError
from shared.observability import Health
from shared.settings import ListenerSettings

log = structlog.get_logger(__name__)

Handle = Callable[[list[Any], dict[str, Checkpoint]], Awaitable[None]]


@dataclass(frozen=True)
class Keepalive:
    """An empty fetch response's `latest_replay_id`, queued behind the topic's events."""

    topic: str
    replay_id: bytes


class PubSubSupervisor(Supervisor):
    """Runs one Pub/Sub session (a channel and a stream per topic) at a time; hands batches to `handle`."""

    # TransientError: the REST login the metadata comes from failed for now (Salesforce unreachable or 5xx).
    failures = (PubSubError, RebuildError, grpc.aio.AioRpcError, TransientError, OSError, TimeoutError)

    def __init__(
        self,
        settings: ListenerSettings,
        *,
        topics: Iterable[str],
        replay: CheckpointReplay,
        client_factory: Callable[[], PubSubClient],
        handle: Handle,
        on_expired: Callable[[str], Awaitable[None]],
        health: Health | None = None,
        check_interval: float = 1.0,
    ) -> None:
        super().__init__(settings, health)
        self.topics = tuple(topics)
        self.replay = replay
        self._factory = client_factory
        self._handle = handle
        self._on_expired = on_expired
        self._check_interval = check_interval
        self._fresh_login = False
        self._seen: dict[str, float] = {}
        self._opened: set[str] = set()  # topics whose Subscribe the server answered (response headers)

    def reason(self, exc: BaseException) -> str:
        if isinstance(exc, PubSubError | RebuildError):
            return exc.reason
        if isinstance(exc, grpc.aio.AioRpcError):
            return PubSubError.of(exc, "call").reason
        if isinstance(exc, TransientError):
            return "login"
        return "network"

    def rebuilt(self, reason: str) -> None:
        self._fresh_login = reason == "auth"

    async def _session(self, stop: asyncio.Event) -> None:
        client = self._factory()
        # Responses (up to pubsub_batch_size events each) wait here: at most max_pending_messages events.
        responses = max(1, self.settings.max_pending_messages // self.settings.pubsub_batch_size)
        queue: asyncio.Queue[list[PubSubEvent] | Keepalive] = asyncio.Queue(responses)
        tasks: list[asyncio.Task[Any]] = []
        try:
            await client.connect(fresh=self._fresh_login)
            self._fresh_login = False
            for topic in self.topics:
                await client.topic(topic)
            self._seen = dict.fromkeys(self.topics, time.monotonic())
            self._opened = set()
            readers = [asyncio.create_task(self._read(client, topic, queue)) for topic in self.topics]
            stopping = asyncio.create_task(stop.wait())
            tasks += [*readers, stopping]
            getter: asyncio.Task[list[PubSubEvent] | Keepalive] | None = None
            while not stop.is_set():
                if getter is None:
                    getter = asyncio.create_task(queue.get())
                    tasks.append(getter)
                done, _ = await asyncio.wait(
                    {getter, stopping, *readers}, timeout=self._check_interval, return_when=asyncio.FIRST_COMPLETED
                )
                self._tick()
                for reader in readers:
                    if reader.done():
                        reader.result()  # its error ends the session
                        raise RebuildError("stream_closed", "the server ended a subscription")
                if getter in done:
                    items = [getter.result()]
                    getter = None
                    size = _size(items[0])
                    while size < self.settings.max_batch_messages and not queue.empty():
                        items.append(queue.get_nowait())
                        size += _size(items[-1])
                    await self._deliver(items)
                    continue
                self._watchdog()
        finally:
            self._mark_subscribed(False)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(Exception):
                await client.close()

    async def _deliver(self, items: list[list[PubSubEvent] | Keepalive]) -> None:
        events: list[PubSubEvent] = []
        positions: dict[str, Checkpoint] = {}
        for item in items:
            if isinstance(item, list):
                events.extend(item)
                for event in item[:1]:
                    positions.pop(event.topic, None)  # events after the keepalive: their own checkpoint is newer
                continue
            committed = self.replay.checkpoints.get(item.topic)
            if committed is not None and committed.pubsub_replay_id == token(item.replay_id):
                continue
            stamp = committed.commit_timestamp if committed is not None else None
            positions[item.topic] = Checkpoint.at(
                item.topic, replay_number(item.replay_id), stamp, token(item.replay_id)
            )
        if events or positions:
            await self._handle(events, positions)

    def _start(self, topic: str) -> tuple[int, bytes]:
        """Where a topic's subscription starts: (replay preset, replay id)."""
        checkpoint = self.replay.checkpoints.get(topic)
        if self.replay.overrides.get(topic) == -1:
            return pb.LATEST, b""
        if checkpoint is not None and checkpoint.transport == "pubsub" and checkpoint.pubsub_replay_id:
            return pb.CUSTOM, from_token(checkpoint.pubsub_replay_id)
        if checkpoint is None and self.replay.default_id == -2:
            return pb.EARLIEST, b""
        return pb.LATEST, b""

    async def _read(
        self, client: PubSubClient, topic: str, queue: asyncio.Queue[list[PubSubEvent] | Keepalive]
    ) -> None:
        """Subscribe to `topic` and queue what arrives, until an error (raised) or the server ends the stream."""
        while True:
            preset, replay_id = self._start(topic)
            try:
                await self._stream(client, topic, preset, replay_id, queue)
            except PubSubError as exc:
                if exc.error_code not in REPLAY_ERRORS or preset != pb.CUSTOM:
                    raise
                RESYNCS.labels(reason="replay_expired").inc()
                log.error(  # noqa: TRY400 - an expected server answer, not a crash: no traceback
                    "replay id refused by Salesforce: subscribing from new events and starting a full resync",
                    topic=topic,
                    error_code=exc.error_code,
                )
                self.replay.overrides[topic] = -1
                await self._on_expired(topic)
                continue
            return

    async def _stream(
        self,
        client: PubSubClient,
        topic: str,
        preset: int,
        replay_id: bytes,
        queue: asyncio.Queue[list[PubSubEvent] | Keepalive],
    ) -> None:
        batch = self.settings.pubsub_batch_size
        call = client.subscribe()
        try:
            await call.write(
                pb.FetchRequest(topic_name=topic, replay_preset=preset, replay_id=replay_id, num_requested=batch)  # type: ignore[arg-type]
            )
            await call.initial_metadata()  # the server has the subscription (or its error is next)
            self._opened.add(topic)
            if not self.subscribed.is_set() and self._opened.issuperset(self.topics):
                self._mark_subscribed(True)
                log.info("subscribed", transport="pubsub", topics=list(self.topics))
            while True:
                read = await call.read()
                if read is grpc.aio.EOF:  # type: ignore[attr-defined]  # (missing from grpc-stubs)
                    return
                response = cast(pb.FetchResponse, read)
                self._seen[topic] = time.monotonic()
                if response.events:
                    batch_events = []
                    for received in response.events:
                        event = received.event
                        schema = await client.schema(event.schema_id)
                        batch_events.append(
                            PubSubEvent(topic, received.replay_id, event.schema_id, event.payload, schema)
                        )
                    await queue.put(batch_events)
                else:
                    PUBSUB_KEEPALIVES.labels(topic=topic).inc()
                    if response.latest_replay_id:
                        await queue.put(Keepalive(topic, response.latest_replay_id))
                self._seen[topic] = time.monotonic()
                pending = response.pending_num_requested
                if pending <= batch // 2:
                    await call.write(pb.FetchRequest(topic_name=topic, num_requested=batch - pending))
        except grpc.aio.AioRpcError as exc:
            raise PubSubError.of(exc, f"Subscribe {topic}") from None
        finally:
            call.cancel()

    def _watchdog(self) -> None:
        now = time.monotonic()
        for topic, seen in self._seen.items():
            if now - seen > self.settings.pubsub_watchdog_seconds:
                raise RebuildError(
                    "stream_stalled",
                    f"no event and no keepalive on {topic} for {self.settings.pubsub_watchdog_seconds:g}s",
                )


def _size(item: list[PubSubEvent] | Keepalive) -> int:
    return len(item) if isinstance(item, list) else 0
