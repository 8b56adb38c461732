"""A thin grpc.aio client of the Salesforce Pub/Sub API (`eventbus.v1.PubSub`, from pubsub_api.proto beside it).

- TLS only: the server certificate is checked against `salesforce.ca_file` when set, grpc's bundled roots otherwise.
- Every call carries the auth metadata `accesstoken`, `instanceurl` and `tenantid` (lower-case keys: grpcio refuses
  others) from the REST client's OAuth session (shared/salesforce.py `SalesforceRest.credentials`); `refresh`
  logs in again, which the supervisor does after an `UNAUTHENTICATED` answer.
- Schemas are cached by schema id (an object's schema id changes when its fields change, and one topic may carry
  several); GetSchema is asked only for ids not seen yet.
- A failed call raises PubSubError with the gRPC status, the `error-code` trailer Salesforce adds and the rpc id,
  never the token.
The RPCs are called by their method paths, so only the generated message classes are needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import structlog

from services.listener.metrics import PUBSUB_ERRORS
from services.listener.pubsub import pubsub_api_pb2 as pb
from services.listener.pubsub.events import Schema
from shared.salesforce_auth import Credentials
from shared.settings import SalesforceSettings

log = structlog.get_logger(__name__)

SERVICE = "/eventbus.v1.PubSub/"
AUTH_ERROR = "sfdc.platform.eventbus.grpc.service.auth.error"
AUTH_ERRORS = frozenset({AUTH_ERROR, "sfdc.platform.eventbus.grpc.service.auth.refresh.invalid"})
REPLAY_ERRORS = frozenset(
    {
        "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted",
        "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed",
    }
)
LIMIT_ERRORS = frozenset(
    {
        "sfdc.platform.eventbus.grpc.subscription.limit.exceeded",
        "sfdc.platform.eventbus.grpc.concurrent.client.limit.exceeded",
    }
)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a batch of 100 large records can pass grpc's 4 MB default

FetchCall = grpc.aio.StreamStreamCall[pb.FetchRequest, pb.FetchResponse]


@dataclass(frozen=True)
class PubSubError(Exception):
    """A Pub/Sub call that failed: the gRPC status, Salesforce's `error-code` trailer and what it said."""

    status: str
    error_code: str
    details: str
    rpc_id: str = ""

    def __str__(self) -> str:
        code = f" ({self.error_code})" if self.error_code else ""
        return f"Pub/Sub API {self.status}{code}: {self.details}"

    @property
    def reason(self) -> str:
        """The label a rebuild after it is counted under."""
        if self.status == "UNAUTHENTICATED" or self.error_code in AUTH_ERRORS:
            return "auth"
        if self.error_code in REPLAY_ERRORS:
            return "replay_invalid"
        if self.error_code in LIMIT_ERRORS:
            return "limit_exceeded"
        return f"grpc_{self.status.lower()}"

    @classmethod
    def of(cls, exc: grpc.aio.AioRpcError, what: str) -> PubSubError:
        """The PubSubError of a failed call (counted in sfls_listener_pubsub_errors_total)."""
        pairs: Any = exc.trailing_metadata() or ()
        trailers = {str(key).lower(): value for key, value in pairs}
        error_code = str(trailers.get("error-code") or "")
        status = exc.code().name if exc.code() is not None else "UNKNOWN"
        PUBSUB_ERRORS.labels(status=status, error_code=error_code or "none").inc()
        error = cls(status, error_code, f"{what}: {exc.details() or ''}"[:500], str(trailers.get("rpc-id") or ""))
        log.warning("pubsub_error", status=status, error_code=error_code, details=error.details, rpc_id=error.rpc_id)
        return error


class PubSubClient:
    """One gRPC channel to the Pub/Sub API, its auth metadata and the schema cache."""

    def __init__(
        self,
        settings: SalesforceSettings,
        credentials: Callable[[bool], Awaitable[Credentials]],
        schemas: dict[str, Schema | None] | None = None,
    ) -> None:
        self.settings = settings
        self._credentials = credentials
        self._metadata: tuple[tuple[str, str], ...] = ()
        self.schemas: dict[str, Schema | None] = schemas if schemas is not None else {}
        root = None
        if settings.ca_file:
            with open(settings.ca_file, "rb") as pem:
                root = pem.read()
        self.channel = grpc.aio.secure_channel(
            settings.pubsub_endpoint,
            grpc.ssl_channel_credentials(root_certificates=root),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
        )
        self._get_topic = self.channel.unary_unary(
            SERVICE + "GetTopic",
            request_serializer=pb.TopicRequest.SerializeToString,
            response_deserializer=pb.TopicInfo.FromString,
        )
        self._get_schema = self.channel.unary_unary(
            SERVICE + "GetSchema",
            request_serializer=pb.SchemaRequest.SerializeToString,
            response_deserializer=pb.SchemaInfo.FromString,
        )
        self._subscribe = self.channel.stream_stream(
            SERVICE + "Subscribe",
            request_serializer=pb.FetchRequest.SerializeToString,
            response_deserializer=pb.FetchResponse.FromString,
        )

    def __repr__(self) -> str:
        return f"PubSubClient(endpoint={self.settings.pubsub_endpoint!r})"

    async def connect(self, *, fresh: bool = False) -> None:
        """Take the current OAuth session (a new one when `fresh`) as the calls' metadata."""
        session = await self._credentials(fresh)
        self._metadata = (
            ("accesstoken", session.access_token),
            ("instanceurl", session.instance_url),
            ("tenantid", session.org_id),
        )

    async def topic(self, name: str) -> Any:
        """TopicInfo of `name`; PubSubError when the topic is unknown or not subscribable."""
        try:
            info = await self._get_topic(pb.TopicRequest(topic_name=name), metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise PubSubError.of(exc, f"GetTopic {name}") from None
        if not info.can_subscribe:
            raise PubSubError("PERMISSION_DENIED", "", f"topic {name} cannot be subscribed to by this user")
        return info

    async def schema(self, schema_id: str) -> Schema | None:
        """The schema of `schema_id` (cached); None when the server does not know it."""
        if schema_id in self.schemas:
            return self.schemas[schema_id]
        try:
            info = await self._get_schema(pb.SchemaRequest(schema_id=schema_id), metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            error = PubSubError.of(exc, f"GetSchema {schema_id}")
            if exc.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                raise error from None
            self.schemas[schema_id] = None
            return None
        schema = await asyncio.to_thread(Schema.from_json, schema_id, info.schema_json)
        self.schemas[schema_id] = schema
        return schema

    def subscribe(self) -> FetchCall:
        """A new Subscribe stream; the caller writes its FetchRequests."""
        return self._subscribe(None, metadata=self._metadata)

    async def close(self) -> None:
        await self.channel.close(None)
