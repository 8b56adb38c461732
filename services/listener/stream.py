"""The aiosfstream-ng supervisor: subscribe, hand batches over, rebuild on any trouble, forever.

aiosfstream-ng 0.7.5 (aiosfstream 0.5.0 renamed) has defects we survive without patching it;
each is handled here or in services/listener/streaming.py:

- CometD URL pinned to API 45.0, older than `changedFields`: the StreamingClient subclass in
  services/listener/streaming.py overrides `get_cometd_url` with `salesforce.api_version`.
- Authenticators post to login/test.salesforce.com only: the StreamingAuthenticator subclass
  posts to `{instance_url}/services/oauth2/token` (My Domain or the emulator) with our CA.
- Any network blip makes `receive()` raise TransportTimeoutError at once (a stale `loop=`
  argument in `_wait_connection_timeout`): the supervisor closes the client, waits a capped
  exponential backoff and builds a new one, which resumes from our checkpoint.
- A rejected automatic re-subscribe (stale replay id after a re-handshake) drops the channel
  from `client.subscriptions` silently and the client idles for ever: the watchdog rebuilds
  when a configured channel is missing from the subscriptions, or when no `/meta/connect`
  reply arrived for `listener.watchdog_seconds`.
- The AUTOMATIC replay policy stores a marker before the handler runs: we use the MANUAL
  policy and never call the library's storing context manager. CheckpointReplay below answers
  the library's "which replay id?" question from our committed Kafka checkpoint only; the
  pipeline updates it after each committed transaction.
- `advice.interval` is read as seconds, not milliseconds: Salesforce sends 0 (and so does the
  emulator); the only non-zero case known is the `multiple-clients` advice, which the watchdog
  turns into a rebuild if it stalls the client past `watchdog_seconds`.

Session expiry: a 401/403 reply makes the library re-authenticate by itself; if the server
says `reconnect: none` the client raises ServerError and the rebuild re-authenticates.
If Salesforce refuses our replay id as no longer retained, the channel is subscribed from new
events (-1) and `on_expired` starts the full resync (loudly: error log and metric).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import aiohttp
import structlog
from aiosfstream_ng.exceptions import AiosfstreamException, AuthenticationError, ServerError, TransportError
from aiosfstream_ng.replay import ReplayMarker, ReplayMarkerStorage

from services.listener.metrics import RESYNCS
from services.listener.publisher import Checkpoint
from services.listener.supervisor import RebuildError, Supervisor, rebuild_backoff
from shared.observability import Health
from shared.settings import ListenerSettings

__all__ = ["CheckpointReplay", "Message", "RebuildError", "StreamSupervisor", "is_replay_rejected", "rebuild_backoff"]

log = structlog.get_logger(__name__)

META_CONNECT = "/meta/connect"
META_SUBSCRIBE = "/meta/subscribe"
_REPLAY_REJECTED = re.compile(r"replayId \{.*\} you provided was invalid", re.IGNORECASE | re.DOTALL)

Message = dict[str, Any]
ClientFactory = Callable[["CheckpointReplay"], Any]


class CheckpointReplay(ReplayMarkerStorage):
    """Replay ids for subscribe requests, taken from our committed checkpoints only.

    The library asks `get_replay_id` on every `/meta/subscribe` (the first one and every
    automatic re-subscribe after a re-handshake). `set_replay_marker` does nothing: the MANUAL
    policy never calls it, and our checkpoint moves only when Kafka committed the events.
    It also watches incoming meta replies, for the watchdog.
    """

    def __init__(self, checkpoints: Mapping[str, Checkpoint], default_id: int) -> None:
        super().__init__()
        self.checkpoints: dict[str, Checkpoint] = dict(checkpoints)
        self.default_id = default_id
        self.overrides: dict[str, int] = {}  # e.g. -1 after our replay id expired
        self.last_connect = time.monotonic()
        self.rejected: dict[str, str] = {}

    def committed(self, checkpoint: Checkpoint) -> None:
        """The pipeline committed events up to this replay id."""
        self.checkpoints[checkpoint.channel] = checkpoint
        self.overrides.pop(checkpoint.channel, None)

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        checkpoint = self.checkpoints.get(subscription)
        if checkpoint is None:
            return None
        return ReplayMarker(date=str(checkpoint.commit_timestamp or 0), replay_id=checkpoint.replay_id)

    async def get_replay_id(self, subscription: str) -> int:
        if subscription in self.overrides:
            return self.overrides[subscription]
        marker = await self.get_replay_marker(subscription)
        return marker.replay_id if marker is not None else self.default_id

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        return

    async def incoming(self, payload: list[Message], headers: Any = None) -> None:
        for message in payload:
            channel = message.get("channel")
            if channel == META_CONNECT and message.get("successful"):
                self.last_connect = time.monotonic()
            elif channel == META_SUBSCRIBE and message.get("successful") is False:
                self.rejected[str(message.get("subscription"))] = str(message.get("error"))


def is_replay_rejected(exc: BaseException) -> bool:
    """True for the subscribe error Salesforce gives for a replay id it no longer retains."""
    return isinstance(exc, ServerError) and bool(_REPLAY_REJECTED.search(str(exc.error or "")))


def reason_of(exc: BaseException) -> str:
    """The metric label of why the client is rebuilt."""
    if isinstance(exc, RebuildError):
        return exc.reason
    if isinstance(exc, AuthenticationError):
        return "auth"
    if isinstance(exc, ServerError):
        return "server_error"
    if isinstance(exc, TransportError):
        return "transport"
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return "network"
    return "error"


class StreamSupervisor(Supervisor):
    """Runs one aiosfstream-ng client at a time; hands each batch of messages to `handle`."""

    failures = (TimeoutError, AiosfstreamException, RebuildError, aiohttp.ClientError, OSError)

    def __init__(
        self,
        settings: ListenerSettings,
        *,
        channels: Iterable[str],
        replay: CheckpointReplay,
        client_factory: ClientFactory,
        handle: Callable[[list[Message]], Awaitable[None]],
        on_expired: Callable[[str], Awaitable[None]],
        health: Health | None = None,
        check_interval: float = 1.0,
    ) -> None:
        super().__init__(settings, health)
        self.channels = tuple(channels)
        self.replay = replay
        self._factory = client_factory
        self._handle = handle
        self._on_expired = on_expired
        self._check_interval = check_interval
        self._last_progress = time.monotonic()

    def reason(self, exc: BaseException) -> str:
        return reason_of(exc)

    async def _session(self, stop: asyncio.Event) -> None:
        client = self._factory(self.replay)
        receive: asyncio.Task[Message] | None = None
        stopping = asyncio.create_task(stop.wait())
        try:
            await client.open()
            self.replay.last_connect = time.monotonic()
            self.replay.rejected.clear()
            for channel in self.channels:
                await self._subscribe(client, channel)
            self._mark_subscribed(True)
            log.info("subscribed", channels=list(self.channels))
            missing_before = False
            while not stop.is_set():
                if receive is None:
                    receive = asyncio.create_task(client.receive())
                done, _ = await asyncio.wait(
                    {receive, stopping}, timeout=self._check_interval, return_when=asyncio.FIRST_COMPLETED
                )
                self._tick()
                if receive in done:
                    first, receive = receive.result(), None
                    batch = [first]
                    while client.pending_count > 0 and len(batch) < self.settings.max_batch_messages:
                        batch.append(await client.receive())
                    await self._handle(batch)
                    self._last_progress = time.monotonic()
                    continue
                missing_before = self._watchdog(client, missing_before)
        finally:
            self._mark_subscribed(False)
            stopping.cancel()
            if receive is not None:
                receive.cancel()
                with contextlib.suppress(BaseException):
                    await receive
            with contextlib.suppress(Exception):
                await client.close()

    def _watchdog(self, client: Any, missing_before: bool) -> bool:
        """Raise RebuildError when the client silently stopped working; return 'channels missing'."""
        missing = set(self.channels) - set(client.subscriptions)
        if missing and missing_before:
            raise RebuildError(
                "subscriptions_dropped",
                f"channels {sorted(missing)} were dropped (rejected: {self.replay.rejected or 'unknown'})",
            )
        idle_since = max(self.replay.last_connect, self._last_progress)
        if time.monotonic() - idle_since > self.settings.watchdog_seconds:
            raise RebuildError("connect_stalled", f"no /meta/connect reply for {self.settings.watchdog_seconds}s")
        return bool(missing)

    async def _subscribe(self, client: Any, channel: str) -> None:
        try:
            await client.subscribe(channel)
        except ServerError as exc:
            if not is_replay_rejected(exc):
                raise
            checkpoint = self.replay.checkpoints.get(channel)
            RESYNCS.labels(reason="replay_expired").inc()
            log.error(  # noqa: TRY400 - an expected server answer, not a crash: no traceback
                "replay id no longer retained by Salesforce: subscribing from new events and starting a full resync",
                channel=channel,
                replay_id=checkpoint.replay_id if checkpoint else None,
                error=str(exc.error),
            )
            self.replay.overrides[channel] = -1
            await client.subscribe(channel)
            await self._on_expired(channel)
