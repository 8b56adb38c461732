"""The Streaming API: Bayeux over long polling at /cometd/NN.N, as Salesforce implements it.

Protocol notes (Salesforce's Streaming API, as aiosfstream-ng and aiocometd-ng expect it):
- Requests and replies are JSON arrays; Bayeux errors come back inside HTTP 200 replies as
  `"error": "<code>::<text>"` with `"successful": false`. A missing or too old version in the
  URL is an HTTP 400.
- A request may batch several messages (a re-handshake sends connect + subscribes in one
  payload). Non-connect messages are answered first; a connect is held (up to the advised
  timeout) only when it came alone, is not the first after the handshake, and nothing is
  queued for its client. Events travel in the
  same reply array as the connect reply.
- Handshake sets the BAYEUX_BROWSER cookie; later messages of that client must carry it.
- A channel exists for the API version of the handshake URL: /data/OpportunityLineItemChangeEvent
  only from 60.0 (older clients are told it does not exist).
- Subscribe takes `ext.replay = {channel: id}`: -1 new events only (also the default), -2 every
  retained event, or an id (events after it); an id outside the retention window is refused with
  Salesforce's exact text (two spaces after "invalid.").
- An unknown clientId (session expired, dropped or idle > 40 s) gets `403::Unknown client` with
  advice handshake; an invalid or expired token gets `401::Authentication invalid` with advice
  none (handshake: `403::Handshake denied` with the reason in ext.sfdc.failureReason).
- Each event a connect reply carries spends one DailyDeliveredPlatformEvents (limits.py), per client.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devstack.salesforce.cdc import ALL_CHANNEL, StoredEvent
from devstack.salesforce.limits import DELIVERED_EVENTS
from devstack.salesforce.state import Emulator

COOKIE = "BAYEUX_BROWSER"
MAX_BODY = 32_768
MAX_EVENTS_PER_REPLY = 1000
STALE_REPLAY = (
    "400::The replayId {{{replay}}} you provided was invalid.  Please provide a valid ID, -2 to replay all events, "
    "or -1 to replay only new events."
)


@dataclass
class Session:
    """One handshaken CometD client."""

    client_id: str
    browser: str
    subscriptions: set[str] = field(default_factory=set)
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    waiters: set[asyncio.Event] = field(default_factory=set)
    last_seen: float = field(default_factory=time.monotonic)
    connected: bool = False  # the first connect after a handshake is answered at once
    version: float = 0.0  # the API version of the handshake URL; channels and events depend on it

    def wake(self) -> None:
        for waiter in self.waiters:
            waiter.set()


class CometD:
    """CometD sessions, their subscriptions and queued events; the /cometd request handler."""

    def __init__(self, state: Emulator) -> None:
        self.state = state
        self.sessions: dict[str, Session] = {}
        self.held: dict[asyncio.Event, web.Request] = {}
        self.aborted: set[asyncio.Event] = set()
        self._last_sweep = 0.0
        state.log.listeners.append(self.on_event)

    # ---- fan-out -------------------------------------------------------------------------------
    def on_event(self, event: StoredEvent) -> None:
        for session in self.sessions.values():
            if event.min_version > session.version:
                continue
            delivered = False
            for channel in session.subscriptions:
                if channel in event.channels:
                    session.queue.append({"data": event.data, "channel": channel})
                    delivered = True
            if delivered:
                session.wake()

    # ---- admin ---------------------------------------------------------------------------------
    def expire_sessions(self) -> int:
        count = len(self.sessions)
        sessions = list(self.sessions.values())
        self.sessions.clear()
        for session in sessions:
            session.wake()
        return count

    def drop_connections(self) -> int:
        """Abort every held long poll: its connection is closed and nothing is drained from the queue."""
        dropped = 0
        for waiter, request in list(self.held.items()):
            self.aborted.add(waiter)
            if request.transport is not None:
                request.transport.close()
            waiter.set()
            dropped += 1
        return dropped

    def reset(self) -> None:
        self.expire_sessions()

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < 1.0:
            return
        self._last_sweep = now
        idle = self.state.tunables.session_idle_seconds
        for client_id, session in list(self.sessions.items()):
            if not session.waiters and now - session.last_seen > idle:
                del self.sessions[client_id]

    # ---- request ---------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        version = request.match_info.get("version", "")
        if not version:
            return _http_error(400, "API version in the URI is mandatory. URI format: '/cometd/66.0'")
        if not re.fullmatch(r"\d+\.\d", version) or float(version) < 37.0:
            return _http_error(400, "Unsupported API version. Only versions 37.0 and above are supported.")
        raw = await request.read()
        if len(raw) > MAX_BODY:
            return web.json_response([{"successful": False, "error": "413::Maximum Request Size Exceeded"}])
        try:
            payload = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _http_error(400, "Invalid JSON in the request body")
        messages = payload if isinstance(payload, list) else [payload]
        if not messages or not all(isinstance(m, dict) and isinstance(m.get("channel"), str) for m in messages):
            return _http_error(400, "Each Bayeux message must be a JSON object with a channel")
        self._sweep()
        header = request.headers.get("Authorization", "")
        token = header.split(" ", 1)[1].strip() if " " in header else None
        authorized = self.state.tokens.valid(token)
        replies: dict[int, dict[str, Any]] = {}
        cookie: str | None = None
        connects = [i for i, m in enumerate(messages) if m["channel"] == "/meta/connect"]
        for index, message in enumerate(messages):
            if index in connects:
                continue
            reply, new_cookie = self._message(message, request, token, authorized=authorized)
            replies[index] = reply
            cookie = new_cookie or cookie
        events: list[dict[str, Any]] = []
        for index in connects:
            reply, drained = await self._connect(messages[index], request, authorized, hold=len(messages) == 1)
            replies[index] = reply
            events.extend(drained)
        response = web.Response(
            text=json.dumps([replies[i] for i in range(len(messages))] + events, separators=(",", ":")),
            content_type="application/json",
        )
        if cookie:
            response.set_cookie(COOKIE, cookie, path="/", secure=True, httponly=True)
        return response

    def _base(self, message: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = {"channel": message["channel"]}
        if "id" in message:
            reply["id"] = message["id"]
        if "clientId" in message:
            reply["clientId"] = message["clientId"]
        return reply

    def _session(
        self, message: dict[str, Any], request: web.Request, authorized: bool
    ) -> tuple[Session | None, dict[str, Any] | None]:
        """The message's session, or the error reply that explains why there is none."""
        reply = self._base(message)
        if not authorized:
            reply.update(
                successful=False, error="401::Authentication invalid", advice={"reconnect": "none", "interval": 0}
            )
            return None, reply
        session = self.sessions.get(str(message.get("clientId")))
        if session is None:
            reply.update(
                successful=False, error="403::Unknown client", advice={"interval": 0, "reconnect": "handshake"}
            )
            return None, reply
        if request.cookies.get(COOKIE) != session.browser:
            reply.update(
                successful=False,
                error=f"400::Client {session.client_id} has established a session, but no {COOKIE} cookie present",
            )
            return None, reply
        session.last_seen = time.monotonic()
        return session, None

    def _message(
        self, message: dict[str, Any], request: web.Request, token: str | None, *, authorized: bool
    ) -> tuple[dict[str, Any], str | None]:
        channel = message["channel"]
        counters = self.state.counters.cometd
        counters[channel.removeprefix("/meta/") if channel.startswith("/meta/") else "publish"] += 1
        if channel == "/meta/handshake":
            return self._handshake(message, request, token, authorized)
        session, error = self._session(message, request, authorized)
        if error is not None:
            if "subscription" in message:
                error["subscription"] = message["subscription"]
            return error, None
        assert session is not None
        reply = self._base(message)
        if channel == "/meta/subscribe":
            return self._subscribe(session, message, reply), None
        if channel == "/meta/unsubscribe":
            subscription = message.get("subscription")
            session.subscriptions.discard(str(subscription))
            reply.update(subscription=subscription, successful=True)
            return reply, None
        if channel == "/meta/disconnect":
            self.sessions.pop(session.client_id, None)
            session.wake()
            reply["successful"] = True
            return reply, None
        reply.update(successful=False, error=f"403::Publish to {channel} is not allowed")
        return reply, None

    def _handshake(
        self, message: dict[str, Any], request: web.Request, token: str | None, authorized: bool
    ) -> tuple[dict[str, Any], str | None]:
        reply = self._base(message)
        if not authorized:
            reason = "401::Authentication invalid" if token else "401::Request requires authentication"
            reply.update(
                successful=False,
                error="403::Handshake denied",
                ext={"sfdc": {"failureReason": reason}},
                advice={"reconnect": "none"},
            )
            return reply, None
        types = message.get("supportedConnectionTypes") or []
        if "long-polling" not in types:
            reply.update(successful=False, error=f"400::Invalid connection type {types}")
            return reply, None
        browser = request.cookies.get(COOKIE) or secrets.token_urlsafe(18)
        client_id = secrets.token_hex(13)
        self.sessions[client_id] = Session(client_id, browser, version=float(request.match_info["version"]))
        reply.update(
            ext={"replay": True, "payload.format": True},
            minimumVersion="1.0",
            clientId=client_id,
            supportedConnectionTypes=["long-polling"],
            version="1.0",
            successful=True,
            reestablish=False,
        )
        return reply, browser

    def _subscribe(self, session: Session, message: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        subscription = message.get("subscription")
        reply["subscription"] = subscription
        if not isinstance(subscription, str) or not subscription.startswith("/"):
            reply.update(successful=False, error="400::Channel subscriptions must start with a leading '/'")
            return reply
        if not self._channel_exists(subscription, session.version):
            reply.update(
                successful=False,
                error=f"400::The channel you requested to subscribe to doesn't exist {{{subscription}}}",
            )
            return reply
        ext = message.get("ext") or {}
        replay = ext.get("replay", {}).get(subscription, -1) if isinstance(ext.get("replay"), dict) else -1
        if not isinstance(replay, int) or isinstance(replay, bool):
            reply.update(successful=False, error=STALE_REPLAY.format(replay=replay))
            return reply
        log = self.state.log
        if replay not in (-1, -2) and not log.valid(replay):
            reply.update(successful=False, error=STALE_REPLAY.format(replay=replay))
            return reply
        session.subscriptions.add(subscription)
        if replay != -1:
            for event in log.after(subscription, replay):
                if event.min_version > session.version:
                    continue
                session.queue.append({"data": event.data, "channel": subscription})
            session.wake()
        reply["successful"] = True
        return reply

    def _channel_exists(self, channel: str, version: float) -> bool:
        if channel == ALL_CHANNEL:
            return True
        return any(
            obj.change_event_channel == channel and obj.cdc_min_version <= version
            for obj in self.state.store.schema.objects.values()
        )

    async def _connect(
        self, message: dict[str, Any], request: web.Request, authorized: bool, *, hold: bool
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        self.state.counters.cometd["connect"] += 1
        session, error = self._session(message, request, authorized)
        if error is not None:
            return error, []
        assert session is not None
        if message.get("connectionType", "long-polling") != "long-polling":
            reply = self._base(message)
            reply.update(successful=False, error=f"400::Invalid connection type {message.get('connectionType')}")
            return reply, []
        timeout_ms = self.state.tunables.cometd_timeout_ms
        first, session.connected = not session.connected, True
        if hold and not first and not session.queue:
            waiter = asyncio.Event()
            session.waiters.add(waiter)
            self.held[waiter] = request
            try:
                await asyncio.wait_for(waiter.wait(), timeout_ms / 1000)
            except TimeoutError:
                pass
            finally:
                session.waiters.discard(waiter)
                self.held.pop(waiter, None)
                session.last_seen = time.monotonic()
            if waiter in self.aborted:
                self.aborted.discard(waiter)
                return self._base(message), []
            if self.sessions.get(session.client_id) is not session:
                reply = self._base(message)
                reply.update(
                    successful=False, error="403::Unknown client", advice={"interval": 0, "reconnect": "handshake"}
                )
                return reply, []
        drained = [session.queue.popleft() for _ in range(min(len(session.queue), MAX_EVENTS_PER_REPLY))]
        if drained:
            self.state.limits.consume(DELIVERED_EVENTS, len(drained))
        reply = self._base(message)
        reply.update(successful=True, advice={"interval": 0, "timeout": timeout_ms, "reconnect": "retry"})
        return reply, drained


def _http_error(status: int, text: str) -> web.Response:
    return web.json_response([{"errorCode": str(status), "message": text}], status=status)
