"""The Salesforce emulator's Pub/Sub API, driven by a client written only from the public contract.

The client side here is plain grpc.aio (no generated service stubs): method paths `/eventbus.v1.PubSub/<Rpc>`,
the proto messages, TLS trusting the local CA, the three auth metadata keys from an OAuth password grant,
fastavro's schemaless reader with the schema from GetSchema, and a small bitmap decoder of its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import fastavro
import grpc
import pytest
import pytest_asyncio
from grpc import aio

from devstack.stack import Stack
from services.listener.pubsub import pubsub_api_pb2 as pb
from tests.fixtures.salesforce import SalesforceEmulator, SalesforceProcess

# One event loop for the module: grpc.aio's completion queue outlives a closed per-test loop badly.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ACCOUNT = "/data/AccountChangeEvent"
DEADLINE = 10.0


def decode(schema_json: str, payload: bytes) -> dict[str, Any]:
    record = fastavro.schemaless_reader(io.BytesIO(payload), json.loads(schema_json), None)
    assert isinstance(record, dict)
    return record


def field_names(schema_json: str, bitmaps: list[str]) -> list[str]:
    """Names from Pub/Sub bitmaps: `0x..` over the top-level fields, `p-0x..` over compound p's record."""
    schema = json.loads(schema_json)
    top = schema["fields"]
    named: dict[str, dict[str, Any]] = {}
    for spec in top:
        for branch in spec["type"] if isinstance(spec["type"], list) else []:
            if isinstance(branch, dict) and branch.get("type") == "record":
                named[f"{schema['namespace']}.{branch['name']}"] = branch
    names: list[str] = []
    for text in bitmaps:
        if text.startswith("0x"):
            value = int(text, 16)
            names += [spec["name"] for i, spec in enumerate(top) if value >> i & 1]
            continue
        position, _, hex_bits = text.partition("-")
        parent = top[int(position)]
        branch = next(b for b in parent["type"] if b != "null")
        record = named[branch] if isinstance(branch, str) else branch
        value = int(hex_bits, 16)
        names += [f"{parent['name']}.{f['name']}" for j, f in enumerate(record["fields"]) if value >> j & 1]
    return list(dict.fromkeys(names))


def trailers(error: aio.AioRpcError) -> dict[str, str]:
    metadata: Any = error.trailing_metadata() or ()  # grpc.aio.Metadata iterates as (key, value) pairs
    return {str(k): str(v) for k, v in metadata}


class Client:
    """A Pub/Sub client over one TLS channel, with the auth metadata of one password grant."""

    def __init__(self, emulator: SalesforceEmulator) -> None:
        grant = emulator.password_grant()
        self.org_id = str(grant["id"]).rstrip("/").split("/")[-2]
        self.metadata = [
            ("accesstoken", str(grant["access_token"])),
            ("instanceurl", str(grant["instance_url"])),
            ("tenantid", self.org_id),
        ]
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(emulator.ca_file).read_bytes())
        self.channel = aio.secure_channel(emulator.pubsub_endpoint, credentials)
        self.emulator = emulator

    def _unary(self, method: str, request_type: Any, response_type: Any) -> Any:
        return self.channel.unary_unary(
            f"/eventbus.v1.PubSub/{method}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )

    async def get_topic(self, name: str, metadata: list[tuple[str, str]] | None = None) -> pb.TopicInfo:
        call = self._unary("GetTopic", pb.TopicRequest, pb.TopicInfo)
        info: pb.TopicInfo = await call(
            pb.TopicRequest(topic_name=name), metadata=metadata or self.metadata, timeout=DEADLINE
        )
        return info

    async def get_schema(self, schema_id: str) -> pb.SchemaInfo:
        call = self._unary("GetSchema", pb.SchemaRequest, pb.SchemaInfo)
        info: pb.SchemaInfo = await call(
            pb.SchemaRequest(schema_id=schema_id), metadata=self.metadata, timeout=DEADLINE
        )
        return info

    def subscribe(
        self,
        topic: str = ACCOUNT,
        preset: Any = pb.ReplayPreset.LATEST,
        replay_id: bytes = b"",
        num_requested: int = 100,
        metadata: list[tuple[str, str]] | None = None,
    ) -> Subscription:
        first = pb.FetchRequest(
            topic_name=topic, replay_preset=preset, replay_id=replay_id, num_requested=num_requested
        )
        return Subscription(self, first, metadata or self.metadata)

    async def close(self) -> None:
        await self.channel.close(None)


class Subscription:
    """One Subscribe call: requests go through a queue, responses are read with a deadline."""

    def __init__(self, client: Client, first: pb.FetchRequest, metadata: list[tuple[str, str]]) -> None:
        self.client = client
        self.queue: asyncio.Queue[pb.FetchRequest] = asyncio.Queue()
        self.queue.put_nowait(first)
        method = client.channel.stream_stream(
            "/eventbus.v1.PubSub/Subscribe",
            request_serializer=pb.FetchRequest.SerializeToString,
            response_deserializer=pb.FetchResponse.FromString,
        )
        self.call = method(self._requests(), metadata=metadata)
        # One reader for the whole call: a read cancelled by a timeout would cancel the call itself.
        self.responses: asyncio.Queue[pb.FetchResponse | BaseException | None] = asyncio.Queue()
        self._pump = asyncio.ensure_future(self._read())
        self.schemas: dict[str, str] = {}

    async def _requests(self) -> AsyncIterator[pb.FetchRequest]:
        while True:
            yield await self.queue.get()

    async def _read(self) -> None:
        try:
            while isinstance(response := await self.call.read(), pb.FetchResponse):  # else the end (grpc.aio.EOF)
                self.responses.put_nowait(response)
            self.responses.put_nowait(None)
        except aio.AioRpcError as error:
            self.responses.put_nowait(error)

    def request(self, num_requested: int, topic: str = "") -> None:
        self.queue.put_nowait(pb.FetchRequest(topic_name=topic, num_requested=num_requested))

    async def outcome(self, seconds: float = DEADLINE) -> pb.FetchResponse | BaseException | None:
        """The next response, the error that ended the call, or None when it ended with OK."""
        return await asyncio.wait_for(self.responses.get(), seconds)

    async def next(self, seconds: float = DEADLINE) -> pb.FetchResponse:
        response = await self.outcome(seconds)
        if isinstance(response, BaseException):
            raise response
        assert response is not None, "the stream ended"
        return response

    async def ready(self) -> pb.FetchResponse:
        """The first keepalive: the server has read the first request (tests set a short keepalive)."""
        response = await self.next()
        assert not response.events
        return response

    async def events(self, count: int, seconds: float = DEADLINE) -> list[pb.ConsumerEvent]:
        found: list[pb.ConsumerEvent] = []
        async with asyncio.timeout(seconds):
            while len(found) < count:
                found += (await self.next()).events
        return found

    async def error(self, seconds: float = DEADLINE) -> aio.AioRpcError:
        """The error that ends the call (responses before it are skipped)."""
        async with asyncio.timeout(seconds):
            while isinstance(outcome := await self.outcome(), pb.FetchResponse):
                pass
        assert isinstance(outcome, aio.AioRpcError), f"the call ended without an error: {outcome!r}"
        return outcome

    async def decoded(self, event: pb.ConsumerEvent) -> tuple[dict[str, Any], str]:
        schema_id = event.event.schema_id
        if schema_id not in self.schemas:
            self.schemas[schema_id] = (await self.client.get_schema(schema_id)).schema_json
        return decode(self.schemas[schema_id], event.event.payload), self.schemas[schema_id]

    def cancel(self) -> None:
        self.call.cancel()
        self._pump.cancel()


@pytest_asyncio.fixture(loop_scope="module")
async def pubsub(salesforce_emulator: SalesforceEmulator) -> AsyncIterator[Client]:
    salesforce_emulator.tune(pubsub_keepalive_seconds=0.3)
    client = Client(salesforce_emulator)
    yield client
    await client.close()


def replay_number(replay_id: bytes) -> int:
    assert len(replay_id) == 10
    assert replay_id[8:] == b"\x00\x00"
    return int.from_bytes(replay_id[:8], "big")


def replay_bytes(number: int) -> bytes:
    return number.to_bytes(8, "big") + b"\x00\x00"


async def test_topics_and_schemas(pubsub: Client, salesforce_emulator: SalesforceEmulator) -> None:
    """GetTopic names the tenant and the current schema; GetSchema returns its Avro JSON, id = its hash."""
    assert pubsub.org_id == salesforce_emulator.org_id
    assert len(pubsub.org_id) == 18
    for topic in (ACCOUNT, "/data/ContactChangeEvent", "/data/OpportunityLineItemChangeEvent", "/data/ChangeEvents"):
        info = await pubsub.get_topic(topic)
        assert (info.topic_name, info.tenant_guid, info.can_subscribe, info.can_publish) == (
            topic,
            pubsub.org_id,
            True,
            False,
        )
        assert len(info.schema_id) == 22
        assert info.rpc_id
        schema_info = await pubsub.get_schema(info.schema_id)
        schema = json.loads(schema_info.schema_json)
        canonical = json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
        assert base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()[:16]).decode().rstrip("=") == info.schema_id
        assert schema["namespace"] == "com.sforce.eventbus"
        assert schema["fields"][0]["name"] == "ChangeEventHeader"
    account = json.loads((await pubsub.get_schema((await pubsub.get_topic(ACCOUNT)).schema_id)).schema_json)
    fields = {f["name"]: f for f in account["fields"]}
    assert account["name"] == "AccountChangeEvent"
    assert (await pubsub.get_topic("/data/ChangeEvents")).schema_id
    assert not {"Id", "IsDeleted", "SystemModstamp", "BillingCity"} & set(fields)
    assert fields["BillingAddress"]["type"][1]["name"] == "Address"
    assert fields["ShippingAddress"]["type"] == ["null", "com.sforce.eventbus.Address"]
    assert fields["LastModifiedDate"] == {
        "name": "LastModifiedDate",
        "type": ["null", "long"],
        "default": None,
        "doc": "LastModifiedDate:DateTime",
    }
    fastavro.parse_schema(account)

    with pytest.raises(aio.AioRpcError) as caught:
        await pubsub.get_topic("/data/accountchangeevent")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"org CORE/prod/{pubsub.org_id} and topic /data/accountchangeevent" in str(caught.value.details())
    assert trailers(caught.value)["error-code"] == "sfdc.platform.eventbus.grpc.service.topic.invalid"
    with pytest.raises(aio.AioRpcError) as caught:
        await pubsub.get_schema("nope")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailers(caught.value)["error-code"] == "sfdc.platform.eventbus.grpc.schema.invalid"


async def test_authentication(pubsub: Client, salesforce_emulator: SalesforceEmulator) -> None:
    """Bad token, wrong tenant or no instanceurl: UNAUTHENTICATED with trailers; expiry spares open streams."""
    token, instance, tenant = pubsub.metadata
    for metadata in (
        [("accesstoken", "00D!nope"), instance, tenant],
        [token, instance, ("tenantid", "00D000000000000AAA")],
        [token, tenant],
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await pubsub.get_topic(ACCOUNT, metadata)
        error = caught.value
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        found = trailers(error)
        assert found["error-code"] == "sfdc.platform.eventbus.grpc.service.auth.error"
        assert str(error.details()) == (
            "An authentication exception occurred. Provide valid authentication via metadata headers. "
            f"rpcId: {found['rpc-id']}"
        )
    assert (await pubsub.get_topic(ACCOUNT, [token, instance, ("tenantid", pubsub.org_id[:15])])).schema_id
    error = await pubsub.subscribe(metadata=[("accesstoken", "bad"), instance, tenant]).error()
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED

    stream = pubsub.subscribe()
    await stream.ready()
    salesforce_emulator.admin("POST", "sessions/expire")
    with pytest.raises(aio.AioRpcError) as caught:
        await pubsub.get_topic(ACCOUNT)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    salesforce_emulator.admin("POST", "cdc/gap", {"entity": "Account", "changeType": "GAP_UPDATE", "recordIds": ["x"]})
    assert len(await stream.events(1)) == 1
    stream.cancel()


async def test_rest_update_arrives_with_bitmaps(pubsub: Client, sf: Any) -> None:
    """A REST create and update: CREATE with every value, UPDATE with changed/nulled bitmaps incl. a compound."""
    stream = pubsub.subscribe()
    await stream.ready()
    account_id = sf.Account.create({"Name": "Acme", "Phone": "1", "BillingCity": "Paris"})["id"]
    sf.Account.update(account_id, {"Phone": None, "BillingCity": "Lyon", "Type": "Customer"})
    create, update = await stream.events(2)
    record, schema_json = await stream.decoded(create)
    header = record["ChangeEventHeader"]
    assert (header["changeType"], header["recordIds"], header["changedFields"]) == ("CREATE", [account_id], [])
    assert record["Name"] == "Acme"
    assert record["BillingAddress"]["City"] == "Paris"
    assert isinstance(record["CreatedDate"], int)
    assert record["CreatedDate"] > 1_600_000_000_000

    record, schema_json = await stream.decoded(update)
    header = record["ChangeEventHeader"]
    top = [f["name"] for f in json.loads(schema_json)["fields"]]
    assert header["changeType"] == "UPDATE"
    assert f"{top.index('BillingAddress')}-0x02" in header["changedFields"]
    assert header["changedFields"][0].startswith("0x")
    assert set(field_names(schema_json, header["changedFields"])) == {
        "Type",
        "Phone",
        "BillingAddress.City",
        "LastModifiedDate",
    }
    assert field_names(schema_json, header["nulledFields"]) == ["Phone"]
    assert header["diffFields"] == []
    assert record["Phone"] is None
    assert record["Type"] == "Customer"
    assert record["Name"] is None
    assert record["BillingAddress"] == {
        "Street": None,
        "City": "Lyon",
        "State": None,
        "PostalCode": None,
        "Country": None,
    }
    assert replay_number(update.replay_id) == replay_number(create.replay_id) + 1
    stream.cancel()


async def test_replay_presets(pubsub: Client, salesforce_emulator: SalesforceEmulator) -> None:
    """EARLIEST replays what is retained, CUSTOM starts strictly after the id, LATEST only sees new events."""
    rest = salesforce_emulator.rest()
    for name in ("A", "B", "C"):
        rest.create("Account", {"Name": name})
    ids = [e["replayId"] for e in salesforce_emulator.events()]
    earliest = pubsub.subscribe(preset=pb.ReplayPreset.EARLIEST)
    assert [replay_number(e.replay_id) for e in await earliest.events(3)] == ids
    custom = pubsub.subscribe(preset=pb.ReplayPreset.CUSTOM, replay_id=replay_bytes(ids[0]))
    assert [replay_number(e.replay_id) for e in await custom.events(2)] == ids[1:]
    latest = pubsub.subscribe()
    keepalive = await latest.ready()
    assert replay_number(keepalive.latest_replay_id) == ids[-1]
    rest.create("Account", {"Name": "D"})
    (event,) = await latest.events(1)
    assert replay_number(event.replay_id) == ids[-1] + 1
    for stream in (earliest, custom, latest):
        stream.cancel()


async def test_flow_control_and_keepalive(pubsub: Client, salesforce_emulator: SalesforceEmulator) -> None:
    """Request 2, get at most 2; pending counts down; with events pending and none new, keepalives carry the tip."""
    salesforce_emulator.tune(pubsub_keepalive_seconds=60)
    rest = salesforce_emulator.rest()
    for index in range(5):
        rest.create("Account", {"Name": f"N{index}"})
    stream = pubsub.subscribe(preset=pb.ReplayPreset.EARLIEST, num_requested=2)
    first = await stream.next()
    assert len(first.events) == 2
    assert first.pending_num_requested == 0
    assert first.latest_replay_id == first.events[-1].replay_id
    with pytest.raises(TimeoutError):
        await stream.next(1.0)  # nothing is asked for: nothing comes
    stream.request(1)
    second = await stream.next()
    assert len(second.events) == 1
    assert second.pending_num_requested == 0
    salesforce_emulator.tune(pubsub_keepalive_seconds=0.3)
    stream.request(10)
    third = await stream.next()
    assert len(third.events) == 2
    assert third.pending_num_requested == 8
    salesforce_emulator.admin("POST", "cdc/gap", {"entity": "Contact", "changeType": "GAP_UPDATE", "recordIds": ["c"]})
    keepalive = await stream.next()
    assert not keepalive.events
    assert keepalive.pending_num_requested == 8
    tip = salesforce_emulator.admin("GET", "cdc/events")["last"]
    assert replay_number(keepalive.latest_replay_id) == tip > replay_number(third.latest_replay_id)
    stream.cancel()


async def test_idle_stream_closes(pubsub: Client, salesforce_emulator: SalesforceEmulator) -> None:
    """With nothing pending and no new request for pubsub_idle_close_seconds, the server ends the call (OK)."""
    salesforce_emulator.tune(pubsub_idle_close_seconds=0.5)
    salesforce_emulator.rest().create("Account", {"Name": "Idle"})
    stream = pubsub.subscribe(preset=pb.ReplayPreset.EARLIEST, num_requested=1)
    assert len((await stream.next()).events) == 1
    assert await stream.outcome() is None
    assert await stream.call.code() == grpc.StatusCode.OK


async def test_bad_requests_fail_the_stream(pubsub: Client, salesforce_emulator: SalesforceEmulator) -> None:
    """num_requested 0, a corrupted or expired replay id, an unknown or switched topic: INVALID_ARGUMENT."""
    requested = "sfdc.platform.eventbus.grpc.subscription.fetch.requested.events.invalid"
    corrupted = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
    error = await pubsub.subscribe(num_requested=0).error()
    assert (error.code(), trailers(error)["error-code"]) == (grpc.StatusCode.INVALID_ARGUMENT, requested)
    assert str(error.details()).endswith(f"rpcId: {trailers(error)['rpc-id']}")
    stream = pubsub.subscribe()
    await stream.ready()
    stream.request(-1)
    assert trailers(await stream.error())["error-code"] == requested

    rest = salesforce_emulator.rest()
    for name in ("A", "B", "C"):
        rest.create("Account", {"Name": name})
    ids = [e["replayId"] for e in salesforce_emulator.events()]
    salesforce_emulator.admin("POST", "retention", {"oldest_replay_id": ids[1]})
    for replay_id in (b"12907414", ids[0].to_bytes(8, "big"), replay_bytes(ids[0]), replay_bytes(ids[-1] + 5)):
        error = await pubsub.subscribe(preset=pb.ReplayPreset.CUSTOM, replay_id=replay_id).error()
        assert (error.code(), trailers(error)["error-code"]) == (grpc.StatusCode.INVALID_ARGUMENT, corrupted)
        assert str(error.details()).startswith("The Replay ID validation failed.")
    kept = pubsub.subscribe(preset=pb.ReplayPreset.CUSTOM, replay_id=replay_bytes(ids[1]))
    assert [replay_number(e.replay_id) for e in await kept.events(1)] == ids[2:]

    error = await pubsub.subscribe(topic="/data/NopeChangeEvent").error()
    assert trailers(error)["error-code"] == "sfdc.platform.eventbus.grpc.service.topic.invalid"
    kept.request(1, topic=ACCOUNT)  # the same topic again is fine
    kept.request(1, topic="/data/ContactChangeEvent")
    error = await kept.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rpc-id" in trailers(error)


async def test_admin_faults(pubsub: Client, salesforce_emulator: SalesforceEmulator) -> None:
    """connections/drop ends streams with UNAVAILABLE; keepalives can stop; fail_next and fail_streams inject."""
    stream = pubsub.subscribe()
    await stream.ready()
    assert salesforce_emulator.admin("POST", "connections/drop")["pubsub_streams"] == 1
    error = await stream.error()
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, error.details())
    assert "RST_STREAM closed stream" in str(error.details())

    salesforce_emulator.admin("POST", "pubsub/faults", {"keepalives": False})
    stalled = pubsub.subscribe()
    with pytest.raises(TimeoutError):
        await stalled.next(1.5)  # a silently stalled stream: no keepalive at 0.3 s
    salesforce_emulator.admin("POST", "pubsub/faults", {"reset": True})
    assert not (await stalled.next()).events

    unavailable = "sfdc.platform.eventbus.grpc.service.unavailable"
    fault = {"status": "INTERNAL", "error_code": unavailable, "details": "The service is unavailable. Try again later."}
    salesforce_emulator.admin("POST", "pubsub/faults", {"fail_next": fault})
    with pytest.raises(aio.AioRpcError) as caught:
        await pubsub.get_topic(ACCOUNT)
    assert (caught.value.code(), trailers(caught.value)["error-code"]) == (grpc.StatusCode.INTERNAL, unavailable)
    assert (await pubsub.get_topic(ACCOUNT)).schema_id  # only the next one failed
    assert salesforce_emulator.admin("POST", "pubsub/faults", {"fail_streams": fault})["failed_streams"] == 1
    error = await stalled.error()
    assert (error.code(), trailers(error)["error-code"]) == (grpc.StatusCode.INTERNAL, unavailable)
    counters = salesforce_emulator.counters()
    assert counters["pubsub"]["Subscribe"] == 2
    assert counters["pubsub"]["GetTopic"] == 2


async def test_schema_change_gives_a_new_id(pubsub: Client, salesforce_emulator: SalesforceEmulator) -> None:
    """Adding a field makes a new schema id; the old id still resolves and old events keep it."""
    rest = salesforce_emulator.rest()
    rest.create("Account", {"Name": "Before"})
    old = (await pubsub.get_topic(ACCOUNT)).schema_id
    field = {"name": "Tier__c", "type": "string"}
    salesforce_emulator.admin("POST", "schema", {"fields": {"Account": [field]}})
    new = (await pubsub.get_topic(ACCOUNT)).schema_id
    assert new != old
    assert "Tier__c" not in (await pubsub.get_schema(old)).schema_json
    rest.create("Account", {"Name": "After", "Tier__c": "Gold"})
    stream = pubsub.subscribe(preset=pb.ReplayPreset.EARLIEST)
    before, after = await stream.events(2)
    assert (before.event.schema_id, after.event.schema_id) == (old, new)
    assert (await stream.decoded(after))[0]["Tier__c"] == "Gold"
    stream.cancel()


async def test_all_change_events_gaps_and_malformed(pubsub: Client, salesforce_emulator: SalesforceEmulator) -> None:
    """/data/ChangeEvents carries every entity; gap and overflow are header only; a malformed message is undecodable."""
    rest = salesforce_emulator.rest()
    account_id = rest.create("Account", {"Name": "Acme"})
    rest.create("Contact", {"LastName": "Lovelace", "FirstName": "Ada", "AccountId": account_id})
    salesforce_emulator.admin("POST", "cdc/gap", {"entity": "Account", "changeType": "GAP_UPDATE", "recordIds": ["x"]})
    salesforce_emulator.admin("POST", "cdc/overflow", {"entity": "Contact"})
    stream = pubsub.subscribe(topic="/data/ChangeEvents", preset=pb.ReplayPreset.EARLIEST)
    account, contact, gap, overflow = await stream.events(4)
    assert account.event.schema_id != contact.event.schema_id
    record, _ = await stream.decoded(contact)
    assert record["Name"] == {"Salutation": None, "FirstName": "Ada", "LastName": "Lovelace"}
    for event, change_type in ((gap, "GAP_UPDATE"), (overflow, "GAP_OVERFLOW")):
        record, _ = await stream.decoded(event)
        assert record["ChangeEventHeader"]["changeType"] == change_type
        assert all(value is None for name, value in record.items() if name != "ChangeEventHeader")
    # A malformed message (here: no header) still arrives, with the channel's schema id, and cannot be decoded.
    accounts = pubsub.subscribe(preset=pb.ReplayPreset.CUSTOM, replay_id=overflow.replay_id)
    bad = {"channel": ACCOUNT, "data": {"schema": "x", "payload": {"Name": "no header"}, "event": {}}}
    salesforce_emulator.admin("POST", "cdc/publish", {"message": bad})
    (malformed,) = await accounts.events(1)
    assert malformed.event.schema_id == account.event.schema_id
    schema_json = (await pubsub.get_schema(account.event.schema_id)).schema_json
    with pytest.raises(EOFError):
        decode(schema_json, malformed.event.payload)
    assert salesforce_emulator.counters()["pubsub_events"] == 5
    stream.cancel()
    accounts.cancel()


async def test_subprocess_emulator_serves_pubsub(salesforce_process: Callable[..., SalesforceProcess]) -> None:
    """`python -m devstack.salesforce --pubsub-port N` serves the API; stack.json names endpoint and org id."""
    client = Client(salesforce_process())
    try:
        assert (await client.get_topic(ACCOUNT)).tenant_guid == client.org_id
    finally:
        await client.close()
    stack = Stack(state_dir=Path("/nonexistent"), cache_dir=Path("/nonexistent"), salesforce_pubsub_port=7999)
    described = stack.describe()["salesforce"]
    assert (described["pubsub_endpoint"], described["org_id"]) == ("localhost:7999", client.org_id)
