"""aiosfstream-ng, unmodified, through services.listener.streaming's subclasses, against the emulator's CometD."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiosfstream_ng.exceptions import AuthenticationError, ServerError
from aiosfstream_ng.replay import DefaultMappingStorage, ReplayMarker, ReplayOption

from services.listener.streaming import StreamingClient, streaming_client
from tests.fixtures.salesforce import SalesforceEmulator
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
ACCOUNT_CHANNEL = "/data/AccountChangeEvent"


async def _receive(client: StreamingClient, wait: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(wait):
        message: dict[str, Any] = await client.receive()
    return message


async def _create_account(emulator: SalesforceEmulator, name: str) -> str:
    rest = emulator.rest()
    return await asyncio.to_thread(rest.create, "Account", {"Name": name})


async def test_receives_cdc_event_caused_by_rest_update(salesforce_emulator: SalesforceEmulator) -> None:
    """A REST update made after subscribing arrives as an UPDATE event on the entity channel."""
    rest = salesforce_emulator.rest()
    account_id = await asyncio.to_thread(rest.create, "Account", {"Name": "Before"})
    async with streaming_client(salesforce_emulator.settings(), ReplayOption.NEW_EVENTS) as client:
        await client.subscribe(ACCOUNT_CHANNEL)
        await asyncio.to_thread(rest.update, "Account", account_id, {"Name": "After"})
        message = await _receive(client)
    assert message["channel"] == ACCOUNT_CHANNEL
    payload = message["data"]["payload"]
    header = payload["ChangeEventHeader"]
    assert header["changeType"] == "UPDATE"
    assert header["recordIds"] == [account_id]
    assert header["changedFields"] == ["Name", "LastModifiedDate"]
    assert header["changeOrigin"] == "com/salesforce/api/rest/62.0;client=sfls"
    assert payload["Name"] == "After"
    assert isinstance(message["data"]["event"]["replayId"], int)


async def test_client_uses_the_configured_api_version(salesforce_emulator: SalesforceEmulator) -> None:
    """The CometD URL carries settings.api_version, not the library's hard-coded 45.0."""
    async with streaming_client(salesforce_emulator.settings(api_version="58.0"), ReplayOption.NEW_EVENTS) as client:
        assert client.url == f"{salesforce_emulator.instance_url}/cometd/58.0"
        await client.subscribe(ACCOUNT_CHANNEL)
    assert salesforce_emulator.counters()["cometd"]["handshake"] == 1


async def test_resumes_after_a_stored_replay_id(salesforce_emulator: SalesforceEmulator) -> None:
    """Subscribing with a stored replay id delivers exactly the retained events after it."""
    for name in ("one", "two", "three"):
        await _create_account(salesforce_emulator, name)
    events = salesforce_emulator.events()
    first = events[0]["replayId"]
    storage = {ACCOUNT_CHANNEL: ReplayMarker(date="0", replay_id=first)}
    async with streaming_client(salesforce_emulator.settings(), storage) as client:
        await client.subscribe(ACCOUNT_CHANNEL)
        received = [await _receive(client), await _receive(client)]
        async with client.replay_storage(received[-1]):
            pass
    names = [m["data"]["payload"]["Name"] for m in received]
    assert names == ["two", "three"]
    assert storage[ACCOUNT_CHANNEL].replay_id == events[2]["replayId"]


async def test_replay_all_retained_events(salesforce_emulator: SalesforceEmulator) -> None:
    """-2 replays every retained event, then new ones follow on the same subscription."""
    await _create_account(salesforce_emulator, "old")
    async with streaming_client(salesforce_emulator.settings(), ReplayOption.ALL_EVENTS) as client:
        await client.subscribe("/data/ChangeEvents")
        replayed = await _receive(client)
        await _create_account(salesforce_emulator, "new")
        live = await _receive(client)
    assert replayed["channel"] == "/data/ChangeEvents"
    assert [replayed["data"]["payload"]["Name"], live["data"]["payload"]["Name"]] == ["old", "new"]
    assert live["data"]["event"]["replayId"] > replayed["data"]["event"]["replayId"]


async def test_stale_replay_id_is_refused_with_salesforce_error(salesforce_emulator: SalesforceEmulator) -> None:
    """A replay id older than the retention floor gets Salesforce's 400 error on subscribe."""
    for name in ("a", "b"):
        await _create_account(salesforce_emulator, name)
    events = salesforce_emulator.events()
    salesforce_emulator.admin("POST", "retention", {"oldest_replay_id": events[1]["replayId"]})
    stale = events[0]["replayId"]
    storage = DefaultMappingStorage({ACCOUNT_CHANNEL: ReplayMarker("0", stale)}, ReplayOption.NEW_EVENTS)
    async with streaming_client(salesforce_emulator.settings(), storage) as client:
        with pytest.raises(ServerError) as caught:
            await client.subscribe(ACCOUNT_CHANNEL)
    response = caught.value.response
    assert response["successful"] is False
    assert response["error"] == (
        f"400::The replayId {{{stale}}} you provided was invalid.  Please provide a valid ID, "
        "-2 to replay all events, or -1 to replay only new events."
    )


async def test_stale_replay_id_falls_back_to_all_events(salesforce_emulator: SalesforceEmulator) -> None:
    """With replay_fallback=ALL_EVENTS the client resubscribes and gets what is still retained."""
    for name in ("gone", "kept"):
        await _create_account(salesforce_emulator, name)
    events = salesforce_emulator.events()
    salesforce_emulator.admin("POST", "retention", {"oldest_replay_id": events[1]["replayId"]})
    storage = {ACCOUNT_CHANNEL: ReplayMarker("0", events[0]["replayId"])}
    settings = salesforce_emulator.settings()
    async with streaming_client(settings, storage, replay_fallback=ReplayOption.ALL_EVENTS) as client:
        await client.subscribe(ACCOUNT_CHANNEL)
        message = await _receive(client)
    assert message["data"]["payload"]["Name"] == "kept"


async def test_recovers_from_session_expiry(salesforce_emulator: SalesforceEmulator) -> None:
    """After sessions and tokens expire, the client re-authenticates, re-handshakes and resumes."""
    async with streaming_client(salesforce_emulator.settings(), {}) as client:
        await client.subscribe(ACCOUNT_CHANNEL)
        await _create_account(salesforce_emulator, "first")
        first = await _receive(client)
        async with client.replay_storage(first):
            pass
        tokens_before = salesforce_emulator.counters()["token"]
        expired = salesforce_emulator.admin("POST", "sessions/expire")
        assert expired["expired_sessions"] == 1
        await _create_account(salesforce_emulator, "second")
        second = await _receive(client, wait=15)
        assert client.subscriptions == {ACCOUNT_CHANNEL}
    counters = salesforce_emulator.counters()
    assert second["data"]["payload"]["Name"] == "second"
    assert counters["token"] > tokens_before
    assert counters["cometd"]["handshake"] == 2


async def test_resumes_after_dropped_connection(salesforce_emulator: SalesforceEmulator) -> None:
    """A dropped long poll loses no event: the client reconnects and the queued event arrives."""
    async with streaming_client(salesforce_emulator.settings(), {}, connection_timeout=0) as client:
        await client.subscribe(ACCOUNT_CHANNEL)
        # The first /meta/connect answers at once, the next one is held: wait for it (off this event loop,
        # which runs the client's connect loop), so the drop below has a long poll to drop.
        await asyncio.to_thread(
            wait_until,
            lambda: salesforce_emulator.counters()["cometd"],
            15,
            "a second /meta/connect (a held long poll)",
            until=lambda cometd: cometd.get("connect", 0) >= 2,
            every=0.05,
        )
        dropped = salesforce_emulator.admin("POST", "connections/drop")
        await _create_account(salesforce_emulator, "after-drop")
        message = await _receive(client, wait=15)
    assert dropped["dropped"] >= 1
    assert message["data"]["payload"]["Name"] == "after-drop"


async def test_wrong_credentials_raise_authentication_error(salesforce_emulator: SalesforceEmulator) -> None:
    """A refused login surfaces as aiosfstream's AuthenticationError with the OAuth error body."""
    client = streaming_client(salesforce_emulator.settings(password="wrong"), ReplayOption.NEW_EVENTS)
    with pytest.raises(AuthenticationError) as caught:
        await client.open()
    await client.close()
    assert caught.value.args[1] == {"error": "invalid_grant", "error_description": "authentication failure"}
    assert "wrong" not in repr(client.auth)


async def test_refresh_token_authentication(salesforce_emulator: SalesforceEmulator) -> None:
    """The refresh-token variant of the authenticator gets a token and a working stream."""
    refresh = salesforce_emulator.refresh_token()
    settings = salesforce_emulator.settings(auth="refresh_token", refresh_token=refresh, password="")
    async with streaming_client(settings, ReplayOption.NEW_EVENTS) as client:
        await client.subscribe(ACCOUNT_CHANNEL)
        await _create_account(salesforce_emulator, "via-refresh")
        message = await _receive(client)
    assert message["data"]["payload"]["Name"] == "via-refresh"
