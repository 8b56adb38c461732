"""One Pub/Sub `Subscribe` call: replay start, pull flow control, keepalives, idle close, errors.

- The first FetchRequest names the topic, the replay preset and id; later ones only add `num_requested`
  (a later, different non-empty `topic_name` fails the call with INVALID_ARGUMENT).
- LATEST starts after the log's tip, EARLIEST at the oldest retained event, CUSTOM strictly after the given id,
  which must be 10 bytes (8 big-endian + 2 zero) naming a retained id, else INVALID_ARGUMENT `...replayid.corrupted`.
- At most 100 events are outstanding (`num_requested` adds, capped); `num_requested <= 0` fails the call.
  Events go out in batches of up to the outstanding count as soon as the log has them (streams are woken by
  the log's listener, and read the log from their position by bisection: a backlog drains in O(n)).
- While events are pending and nothing is new, an empty FetchResponse every `pubsub_keepalive_seconds` carries
  the log's tip as `latest_replay_id` (it may be past the last delivered event). With nothing pending and no
  request for `pubsub_idle_close_seconds` after the last response, the call ends (status OK).
- Each event sent spends one DailyDeliveredPlatformEvents (limits.py), per stream; beyond Max it is still sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from devstack.salesforce.limits import DELIVERED_EVENTS
from services.listener.pubsub import pubsub_api_pb2 as pb

if TYPE_CHECKING:
    from devstack.salesforce.pubsub import PubSub

MAX_PENDING = 100
REPLAY_CORRUPTED = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
REPLAY_DETAILS = (
    "The Replay ID validation failed. Ensure that the replay_id field value in FetchRequest is valid and refers "
    "to an event that is within the retention window."
)
REQUESTED_INVALID = "sfdc.platform.eventbus.grpc.subscription.fetch.requested.events.invalid"
REQUESTED_DETAILS = "The requested number of events in a fetch request must be greater than zero."
# No error code for a changed topic is documented; the call fails with INVALID_ARGUMENT and only an rpc-id.
TOPIC_CHANGED = "The topic name of a FetchRequest can't differ from the topic of the first FetchRequest."


class PubSubError(Exception):
    """A gRPC status to end the RPC with; `error_code` becomes the `error-code` trailer."""

    def __init__(self, code: grpc.StatusCode, details: str, error_code: str | None = None) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.error_code = error_code


def replay_bytes(replay_id: int) -> bytes:
    """The wire form of a log replay id: 8 bytes big-endian and two zero bytes."""
    return replay_id.to_bytes(8, "big") + b"\x00\x00"


def parse_replay(value: bytes) -> int | None:
    if len(value) != 10 or value[8:] != b"\x00\x00":
        return None
    return int.from_bytes(value[:8], "big")


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return


class Stream:
    """The state of one Subscribe call; `wake` is set on new events, requests and kills."""

    def __init__(self, service: PubSub, topic: str, cursor: int) -> None:
        self.service = service
        self.topic = topic
        self.cursor = cursor  # events after this id are still to be scanned
        self.pending = 0
        self.wake = asyncio.Event()
        self.kill: PubSubError | None = None
        self.last_sent = self.last_request = time.monotonic()

    def request(self, request: pb.FetchRequest) -> None:
        if request.topic_name and request.topic_name != self.topic:
            raise PubSubError(grpc.StatusCode.INVALID_ARGUMENT, TOPIC_CHANGED)
        if request.num_requested <= 0:
            raise PubSubError(grpc.StatusCode.INVALID_ARGUMENT, REQUESTED_DETAILS, REQUESTED_INVALID)
        self.pending = min(MAX_PENDING, self.pending + request.num_requested)
        self.last_request = time.monotonic()

    async def read(self, requests: AsyncIterator[pb.FetchRequest]) -> None:
        """Take the later FetchRequests; a bad one ends the call through `kill`."""
        try:
            async for request in requests:
                try:
                    self.request(request)
                except PubSubError as failure:
                    self.kill = failure
                    return
                finally:
                    self.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the client went away; the call ends on its own
            return

    def _response(self, events: list[pb.ConsumerEvent], latest: bytes) -> pb.FetchResponse:
        self.last_sent = time.monotonic()
        return pb.FetchResponse(
            events=events, latest_replay_id=latest, rpc_id=str(uuid.uuid4()), pending_num_requested=self.pending
        )

    async def responses(self) -> AsyncIterator[pb.FetchResponse]:
        state, codec = self.service.state, self.service.codec
        while True:
            if self.kill is not None:
                raise self.kill
            self.wake.clear()
            if self.pending > 0:
                stored, self.cursor = state.log.scan(self.topic, self.cursor, self.pending)
                if stored:
                    events = [codec.consumer_event(e) for e in stored]
                    self.pending -= len(events)
                    state.counters.pubsub_events += len(events)
                    state.limits.consume(DELIVERED_EVENTS, len(events))
                    yield self._response(events, events[-1].replay_id)
                    continue
            now = time.monotonic()
            due: float | None
            if self.pending > 0:
                keepalives = self.service.faults.keepalives
                due = self.last_sent + state.tunables.pubsub_keepalive_seconds if keepalives else None
            else:
                due = max(self.last_sent, self.last_request) + state.tunables.pubsub_idle_close_seconds
            if due is not None and now >= due:
                if self.pending == 0:
                    return
                yield self._response([], replay_bytes(state.log.last_id))
                continue
            # Waking at least every second picks up changed tunables and faults.
            await _wait(self.wake, 1.0 if due is None else min(1.0, due - now))


def open_stream(service: PubSub, first: pb.FetchRequest) -> Stream:
    """A stream from the first FetchRequest; PubSubError for an unknown topic, a bad replay id or count."""
    service.topic(first.topic_name)
    log = service.state.log
    log.prune()
    if first.replay_preset == pb.ReplayPreset.EARLIEST:
        cursor = log.floor - 1
    elif first.replay_preset == pb.ReplayPreset.CUSTOM:
        replay_id = parse_replay(first.replay_id)
        if replay_id is None or not log.valid(replay_id):
            raise PubSubError(grpc.StatusCode.INVALID_ARGUMENT, REPLAY_DETAILS, REPLAY_CORRUPTED)
        cursor = replay_id
    else:
        cursor = log.last_id
    stream = Stream(service, first.topic_name, cursor)
    stream.request(first)
    return stream


async def subscribe(
    service: PubSub, requests: AsyncIterator[pb.FetchRequest], context: Any
) -> AsyncIterator[pb.FetchResponse]:
    """The Subscribe RPC's behaviour (an async generator of FetchResponses)."""
    try:
        # The first request is read before anything can fail: a client still sending it would see its write fail
        # (INTERNAL) instead of the status.
        first = await anext(requests)
    except StopAsyncIteration:
        return
    try:
        service.begin("Subscribe", context)
        stream = open_stream(service, first)
    except PubSubError as failure:
        await service.fail(context, failure)
    service.streams.add(stream)
    # The response headers go out once the subscription is registered (its LATEST cursor taken): a client that
    # awaits them knows no event published afterwards can be missed.
    await context.send_initial_metadata(())
    reader = asyncio.create_task(stream.read(requests))
    try:
        async for response in stream.responses():
            yield response
    except PubSubError as failure:
        await service.fail(context, failure)
    finally:
        service.streams.discard(stream)
        reader.cancel()
