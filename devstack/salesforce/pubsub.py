"""The Pub/Sub API (`eventbus.v1.PubSub`, gRPC over TLS) beside CometD, fed by the same event log.

`PubSub.start()` serves GetTopic, GetSchema and Subscribe on a `grpc.aio` server in the emulator's event
loop (Publish, PublishStream and ManagedSubscribe answer UNIMPLEMENTED). Every RPC needs the metadata
`accesstoken` (a token the emulator issued and has not expired), `instanceurl` and `tenantid` (the org id,
15 or 18 characters); otherwise UNAUTHENTICATED. Failures carry the trailers `error-code` (Salesforce's code,
when there is one) and `rpc-id`, and details ending in ` rpcId: <uuid>`.

Topics: `/data/ChangeEvents` and the change event channel of every object the schema knows
(`/data/AccountChangeEvent`, `/data/Thing__ChangeEvent`, ...), case-sensitive. Events are encoded by
`devstack/salesforce/avro.py`; an event keeps the schema its entity had when it was published. Replay ids
on the wire are the log's id as 8 bytes big-endian plus two zero bytes. The stream itself is in
`pubsub_stream.py`.

Faults (`POST /__admin/pubsub/faults`): `{"keepalives": false}` stops keepalives (a silently stalled
stream); `{"fail_next": {"status", "error_code", "details"}}` fails the next GetTopic, GetSchema or
Subscribe RPC (once) with that status; `{"fail_streams": {...same...}}` fails every open Subscribe stream
now; `{"reset": true}` clears them (so does `POST /__admin/reset`, which also ends open streams).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from grpc import aio

from devstack.salesforce.avro import EncodeError, Layout, Registry, encode
from devstack.salesforce.cdc import ALL_CHANNEL, StoredEvent
from devstack.salesforce.pubsub_stream import PubSubError, Stream, replay_bytes, subscribe
from devstack.salesforce.schema import ObjectDef
from devstack.salesforce.state import Emulator
from services.listener.pubsub import pubsub_api_pb2 as pb

SERVICE = "eventbus.v1.PubSub"
AUTH_ERROR = "sfdc.platform.eventbus.grpc.service.auth.error"
AUTH_DETAILS = "An authentication exception occurred. Provide valid authentication via metadata headers."
# Salesforce does not document the status of an unknown topic or schema id: INVALID_ARGUMENT and these codes
# are the emulator's choice.
TOPIC_INVALID = "sfdc.platform.eventbus.grpc.service.topic.invalid"
SCHEMA_INVALID = "sfdc.platform.eventbus.grpc.schema.invalid"
CACHE_SIZE = 100_000
# Salesforce never sends this; it lets one malformed-message scenario run through both transports (the client
# dead-letters what it cannot decode). The bytes start with a string length of 2^31 - 1, so decoding them with
# the schema (whose field 0 is the header, starting with a string) always fails.
UNDECODABLE_PREFIX = b"\xfe\xff\xff\xff\x0f"


def failure_from(spec: Any) -> PubSubError:
    """An admin fault {"status", "error_code", "details"} as a PubSubError; ValueError or TypeError if bad."""
    if not isinstance(spec, dict):
        raise TypeError("a failure is an object with 'status', 'error_code' and 'details'")
    status = str(spec.get("status", "INTERNAL"))
    if status not in grpc.StatusCode.__members__ or status == "OK":
        raise ValueError(f"unknown gRPC status {status!r}")
    code = spec.get("error_code")
    details = str(spec.get("details", "The service is unavailable. Try again later."))
    return PubSubError(grpc.StatusCode[status], details, str(code) if code else None)


@dataclass
class Faults:
    keepalives: bool = True
    fail_next: PubSubError | None = None

    def describe(self) -> dict[str, Any]:
        fail = self.fail_next
        pending = None if fail is None else {"status": fail.code.name, "error_code": fail.error_code}
        return {"keepalives": self.keepalives, "fail_next": pending}


class Codec:
    """Stored events as ConsumerEvents: the schema stamped at publish, payloads encoded once (bounded cache)."""

    def __init__(self, state: Emulator) -> None:
        self.state = state
        self.registry = Registry()
        self._stamps: dict[int, str | None] = {}
        self._cache: dict[int, pb.ConsumerEvent] = {}
        self._uuid_base = uuid.uuid4().int

    def current(self, obj: ObjectDef) -> Layout:
        return self.registry.current(obj)

    def _entity(self, event: StoredEvent) -> ObjectDef | None:
        payload = event.data.get("payload")
        header = payload.get("ChangeEventHeader") if isinstance(payload, dict) else None
        name = header.get("entityName") if isinstance(header, dict) else None
        return self.state.store.schema.get(name) if isinstance(name, str) else None

    def stamp(self, event: StoredEvent) -> None:
        """At publish: remember the schema the event's entity has now (old events keep old schemas)."""
        obj = self._entity(event)
        self._stamps[event.replay_id] = self.current(obj).schema_id if obj is not None else None
        floor = self.state.log.floor
        while self._stamps and next(iter(self._stamps)) < floor:
            del self._stamps[next(iter(self._stamps))]

    def _fallback(self, event: StoredEvent) -> str:
        schema = self.state.store.schema
        for obj in schema.objects.values():
            if obj.change_event_channel in event.channels:
                return self.current(obj).schema_id
        account = schema.get("Account")
        assert account is not None
        return self.current(account).schema_id

    def consumer_event(self, event: StoredEvent) -> pb.ConsumerEvent:
        cached = self._cache.get(event.replay_id)
        if cached is not None:
            return cached
        stamp = self._stamps.get(event.replay_id)
        if stamp is None:
            obj = self._entity(event)
            stamp = self.current(obj).schema_id if obj is not None else None
        layout = self.registry.by_id.get(stamp) if stamp is not None else None
        payload = event.data.get("payload")
        body: bytes | None = None
        if layout is not None:
            try:
                body = encode(layout, payload)
            except EncodeError:
                body = None
        if body is None:
            body = UNDECODABLE_PREFIX + json.dumps(payload, default=str).encode()
        schema_id = layout.schema_id if layout is not None else self._fallback(event)
        event_id = str(uuid.UUID(int=(self._uuid_base + event.replay_id) % (1 << 128), version=4))
        consumer = pb.ConsumerEvent(
            event=pb.ProducerEvent(id=event_id, schema_id=schema_id, payload=body),
            replay_id=replay_bytes(event.replay_id),
        )
        if len(self._cache) >= CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        self._cache[event.replay_id] = consumer
        return consumer


class PubSub:
    """The servicer, its gRPC server, its open streams and faults."""

    def __init__(self, state: Emulator) -> None:
        self.state = state
        self.codec = Codec(state)
        self.faults = Faults()
        self.streams: set[Stream] = set()
        self.server: aio.Server | None = None
        self.port = 0
        state.log.listeners.append(self._on_event)

    @property
    def org_id(self) -> str:
        return self.state.store.org_id

    def _on_event(self, event: StoredEvent) -> None:
        self.codec.stamp(event)
        for stream in list(self.streams):
            stream.wake.set()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        def unary(behaviour: Any, request: Any, response: Any) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                behaviour, request_deserializer=request.FromString, response_serializer=response.SerializeToString
            )

        async def subscribe_rpc(requests: AsyncIterator[pb.FetchRequest], context: Any) -> Any:
            async for response in subscribe(self, requests, context):
                yield response

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "GetTopic": unary(self.get_topic, pb.TopicRequest, pb.TopicInfo),
                "GetSchema": unary(self.get_schema, pb.SchemaRequest, pb.SchemaInfo),
                "Subscribe": grpc.stream_stream_rpc_method_handler(
                    subscribe_rpc,
                    request_deserializer=pb.FetchRequest.FromString,
                    response_serializer=pb.FetchResponse.SerializeToString,
                ),
            },
        )

    async def start(self, host: str, port: int, key_pem: bytes, cert_pem: bytes) -> int:
        """Serve on host:port (0: a free port) with TLS; returns the port."""
        server = aio.server()
        server.add_generic_rpc_handlers((self.handler(),))
        credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)])
        self.port = server.add_secure_port(f"{host}:{port}", credentials)
        await server.start()
        self.server = server
        return self.port

    async def stop(self) -> None:
        self.end_streams(PubSubError(grpc.StatusCode.UNAVAILABLE, "The emulator is shutting down."))
        if self.server is not None:
            await self.server.stop(grace=0.5)
            self.server = None

    # -- admin ---------------------------------------------------------------------------------------

    def end_streams(self, failure: PubSubError) -> int:
        for stream in list(self.streams):
            stream.kill = failure
            stream.wake.set()
        return len(self.streams)

    def drop_connections(self) -> int:
        """Abort every open Subscribe stream as a network reset does."""
        return self.end_streams(PubSubError(grpc.StatusCode.UNAVAILABLE, "RST_STREAM closed stream"))

    def reset(self) -> None:
        self.faults = Faults()
        self.drop_connections()

    def set_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply an admin faults body (module docstring); ValueError on a bad one."""
        failed = 0
        if body.get("reset"):
            self.faults = Faults()
        if "keepalives" in body:
            if not isinstance(body["keepalives"], bool):
                raise ValueError("'keepalives' must be true or false")
            self.faults.keepalives = body["keepalives"]
        if "fail_next" in body:
            self.faults.fail_next = None if body["fail_next"] is None else failure_from(body["fail_next"])
        if "fail_streams" in body:
            failed = self.end_streams(failure_from(body["fail_streams"]))
        return {**self.faults.describe(), "failed_streams": failed}

    # -- RPCs ----------------------------------------------------------------------------------------

    async def fail(self, context: Any, failure: PubSubError) -> NoReturn:
        rpc_id = str(uuid.uuid4())
        trailers = (("error-code", failure.error_code),) if failure.error_code else ()
        await context.abort(
            failure.code, f"{failure.details} rpcId: {rpc_id}", trailing_metadata=(*trailers, ("rpc-id", rpc_id))
        )
        raise AssertionError("abort returns only by raising")  # pragma: no cover

    def begin(self, method: str, context: Any) -> None:
        """Count the RPC, apply an injected failure, check the auth metadata; raises PubSubError."""
        self.state.counters.pubsub[method] += 1
        fail, self.faults.fail_next = self.faults.fail_next, None
        if fail is not None:
            raise fail
        metadata = {str(k).lower(): v for k, v in (context.invocation_metadata() or ())}
        token, instance, tenant = (metadata.get(k) for k in ("accesstoken", "instanceurl", "tenantid"))
        org = self.org_id
        if (
            not isinstance(token, str)
            or not self.state.tokens.valid(token)
            or not instance
            or tenant not in {org, org[:15]}
        ):
            raise PubSubError(grpc.StatusCode.UNAUTHENTICATED, AUTH_DETAILS, AUTH_ERROR)

    def topic(self, name: str) -> Layout:
        """The current schema of a topic (Account's for /data/ChangeEvents); PubSubError if unknown."""
        schema = self.state.store.schema
        obj = schema.get("Account") if name == ALL_CHANNEL else None
        for candidate in schema.objects.values() if obj is None else ():
            if candidate.change_event_channel == name:
                obj = candidate
                break
        if obj is None:
            details = (
                f"An error occurred while getting the metadata for org CORE/prod/{self.org_id} and topic {name}. "
                "Ensure the credentials and topic name are correct."
            )
            raise PubSubError(grpc.StatusCode.INVALID_ARGUMENT, details, TOPIC_INVALID)
        return self.codec.current(obj)

    async def get_topic(self, request: pb.TopicRequest, context: Any) -> pb.TopicInfo:
        try:
            self.begin("GetTopic", context)
            layout = self.topic(request.topic_name)
        except PubSubError as failure:
            await self.fail(context, failure)
        return pb.TopicInfo(
            topic_name=request.topic_name,
            tenant_guid=self.org_id,
            can_publish=False,
            can_subscribe=True,
            schema_id=layout.schema_id,
            rpc_id=str(uuid.uuid4()),
        )

    def schema(self, schema_id: str) -> Layout:
        layout = self.codec.registry.by_id.get(schema_id)
        if layout is None:
            details = f"The schema ID {schema_id!r} is not valid."
            raise PubSubError(grpc.StatusCode.INVALID_ARGUMENT, details, SCHEMA_INVALID)
        return layout

    async def get_schema(self, request: pb.SchemaRequest, context: Any) -> pb.SchemaInfo:
        try:
            self.begin("GetSchema", context)
            layout = self.schema(request.schema_id)
        except PubSubError as failure:
            await self.fail(context, failure)
        return pb.SchemaInfo(schema_json=layout.schema_json, schema_id=layout.schema_id, rpc_id=str(uuid.uuid4()))
