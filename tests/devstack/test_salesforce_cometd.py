"""The emulator's Bayeux wire protocol, driven message by message."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.fixtures.salesforce import TEST_COMETD_TIMEOUT_MS, SalesforceEmulator

pytestmark = pytest.mark.integration


class Bayeux:
    """A minimal long-polling client: one requests session (cookies kept), explicit messages."""

    def __init__(self, emulator: SalesforceEmulator, version: str = "62.0") -> None:
        self.emulator = emulator
        self.url = f"{emulator.instance_url}/cometd/{version}"
        self.token = emulator.rest().sf.session_id
        self.client_id = ""
        self.ids = 0

    def send(self, *messages: dict[str, Any], token: str | None = None) -> list[dict[str, Any]]:
        for message in messages:
            self.ids += 1
            message.setdefault("id", str(self.ids))
            if self.client_id and message["channel"] != "/meta/handshake":
                message.setdefault("clientId", self.client_id)
        response = self.emulator.http.post(
            self.url, json=list(messages), headers={"Authorization": f"Bearer {token or self.token}"}, timeout=30
        )
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/json")
        body: list[dict[str, Any]] = response.json()
        return body

    def handshake(self) -> dict[str, Any]:
        reply = self.send(
            {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
        )
        self.client_id = reply[0]["clientId"]
        return reply[0]

    def connect(self) -> list[dict[str, Any]]:
        return self.send({"channel": "/meta/connect", "connectionType": "long-polling"})

    def subscribe(self, channel: str, replay: int | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"channel": "/meta/subscribe", "subscription": channel}
        if replay is not None:
            message["ext"] = {"replay": {channel: replay}}
        return self.send(message)[0]


def test_handshake_connect_subscribe_shapes(salesforce_emulator: SalesforceEmulator) -> None:
    """Replies echo channel and id; handshake offers long-polling with replay; connect carries advice."""
    bayeux = Bayeux(salesforce_emulator)
    handshake = bayeux.handshake()
    assert handshake["successful"] is True
    assert handshake["supportedConnectionTypes"] == ["long-polling"]
    assert handshake["ext"]["replay"] is True
    assert handshake["id"] == "1"
    assert "BAYEUX_BROWSER" in salesforce_emulator.http.cookies
    first = bayeux.connect()
    assert first[0]["advice"] == {"interval": 0, "timeout": TEST_COMETD_TIMEOUT_MS, "reconnect": "retry"}
    subscribed = bayeux.subscribe("/data/AccountChangeEvent")
    assert subscribed == {
        "channel": "/meta/subscribe",
        "id": "3",
        "clientId": bayeux.client_id,
        "subscription": "/data/AccountChangeEvent",
        "successful": True,
    }


def test_connect_holds_then_returns_events_in_the_same_array(salesforce_emulator: SalesforceEmulator) -> None:
    """An idle connect is held for the advised timeout; queued events ride in the connect reply."""
    bayeux = Bayeux(salesforce_emulator)
    bayeux.handshake()
    bayeux.connect()
    bayeux.subscribe("/data/ChangeEvents")
    started = time.monotonic()
    idle = bayeux.connect()
    assert time.monotonic() - started >= TEST_COMETD_TIMEOUT_MS / 1000 * 0.9
    assert [m["channel"] for m in idle] == ["/meta/connect"]
    salesforce_emulator.rest().create("Account", {"Name": "Evented"})
    busy = bayeux.connect()
    assert busy[0]["channel"] == "/meta/connect"
    assert busy[0]["successful"] is True
    assert busy[1]["channel"] == "/data/ChangeEvents"
    assert busy[1]["data"]["payload"]["Name"] == "Evented"


def test_batched_connect_and_subscribe_with_replay(salesforce_emulator: SalesforceEmulator) -> None:
    """A re-handshake batch (connect + subscribe with replay -2) gets both replies and the replayed events."""
    salesforce_emulator.rest().create("Account", {"Name": "Retained"})
    bayeux = Bayeux(salesforce_emulator)
    bayeux.handshake()
    replies = bayeux.send(
        {"channel": "/meta/connect", "connectionType": "long-polling"},
        {
            "channel": "/meta/subscribe",
            "subscription": "/data/AccountChangeEvent",
            "ext": {"replay": {"/data/AccountChangeEvent": -2}},
        },
    )
    assert [m["channel"] for m in replies] == ["/meta/connect", "/meta/subscribe", "/data/AccountChangeEvent"]
    assert replies[2]["data"]["payload"]["Name"] == "Retained"


def test_replay_after_id_is_exclusive(salesforce_emulator: SalesforceEmulator) -> None:
    """Subscribing with an id delivers only events after it."""
    rest = salesforce_emulator.rest()
    for name in ("a", "b", "c"):
        rest.create("Account", {"Name": name})
    second = salesforce_emulator.events()[1]["replayId"]
    bayeux = Bayeux(salesforce_emulator)
    bayeux.handshake()
    bayeux.connect()
    assert bayeux.subscribe("/data/AccountChangeEvent", second)["successful"] is True
    delivered = bayeux.connect()[1:]
    assert [m["data"]["payload"]["Name"] for m in delivered] == ["c"]


def test_stale_replay_and_bad_channels(salesforce_emulator: SalesforceEmulator) -> None:
    """Out-of-window replay ids, unknown channels and missing slashes fail as Salesforce says."""
    rest = salesforce_emulator.rest()
    rest.create("Account", {"Name": "x"})
    rest.create("Account", {"Name": "y"})
    events = salesforce_emulator.events()
    salesforce_emulator.admin("POST", "retention", {"oldest_replay_id": events[1]["replayId"]})
    bayeux = Bayeux(salesforce_emulator)
    bayeux.handshake()
    stale = bayeux.subscribe("/data/AccountChangeEvent", events[0]["replayId"])
    assert stale["successful"] is False
    assert stale["subscription"] == "/data/AccountChangeEvent"
    assert stale["error"] == (
        f"400::The replayId {{{events[0]['replayId']}}} you provided was invalid.  "
        "Please provide a valid ID, -2 to replay all events, or -1 to replay only new events."
    )
    assert bayeux.subscribe("/data/AccountChangeEvent", events[1]["replayId"])["successful"] is True
    unknown = bayeux.subscribe("/data/NopeChangeEvent")
    assert unknown["error"] == "400::The channel you requested to subscribe to doesn't exist {/data/NopeChangeEvent}"
    assert bayeux.subscribe("data/ChangeEvents")["error"] == "400::Channel subscriptions must start with a leading '/'"


def test_session_and_token_errors(salesforce_emulator: SalesforceEmulator) -> None:
    """Unknown clients get 403 with advice handshake; bad tokens 401 (connect) or 403 Handshake denied."""
    bayeux = Bayeux(salesforce_emulator)
    bayeux.handshake()
    salesforce_emulator.admin("POST", "sessions/expire", {"tokens": False})
    unknown = bayeux.connect()[0]
    assert unknown["error"] == "403::Unknown client"
    assert unknown["advice"] == {"interval": 0, "reconnect": "handshake"}
    revoked = bayeux.send({"channel": "/meta/connect", "connectionType": "long-polling"}, token="bogus")[0]
    assert revoked["error"] == "401::Authentication invalid"
    assert revoked["advice"]["reconnect"] == "none"
    denied = bayeux.send({"channel": "/meta/handshake", "supportedConnectionTypes": ["long-polling"]}, token="bogus")[0]
    assert denied["error"] == "403::Handshake denied"
    assert denied["ext"] == {"sfdc": {"failureReason": "401::Authentication invalid"}}


def test_missing_cookie_is_refused(salesforce_emulator: SalesforceEmulator) -> None:
    """A client that drops the BAYEUX_BROWSER cookie cannot use its session."""
    bayeux = Bayeux(salesforce_emulator)
    bayeux.handshake()
    salesforce_emulator.http.cookies.clear()
    reply = bayeux.connect()[0]
    assert reply["successful"] is False
    assert reply["error"].startswith("400::Client ")
    assert "no BAYEUX_BROWSER cookie present" in reply["error"]


def test_version_is_mandatory(salesforce_emulator: SalesforceEmulator) -> None:
    """/cometd without a version, or before 37.0, is an HTTP 400, not a Bayeux reply."""
    base = f"{salesforce_emulator.instance_url}/cometd"
    missing = salesforce_emulator.http.post(base, json=[{"channel": "/meta/handshake"}], timeout=10)
    assert missing.status_code == 400
    assert "API version in the URI is mandatory" in missing.text
    old = salesforce_emulator.http.post(f"{base}/36.0", json=[{"channel": "/meta/handshake"}], timeout=10)
    assert old.status_code == 400


def test_malformed_bayeux_payloads(salesforce_emulator: SalesforceEmulator) -> None:
    """Garbage bodies get an HTTP 400 JSON error, never a traceback."""
    url = f"{salesforce_emulator.instance_url}/cometd/62.0"
    for body in (b"{not json", b"[1, 2]", b"[]"):
        response = salesforce_emulator.http.post(url, data=body, timeout=10)
        assert response.status_code == 400
        assert "Traceback" not in response.text
        assert isinstance(response.json(), list)


def test_disconnect_ends_the_session(salesforce_emulator: SalesforceEmulator) -> None:
    """After /meta/disconnect the client id is unknown."""
    bayeux = Bayeux(salesforce_emulator)
    bayeux.handshake()
    assert bayeux.send({"channel": "/meta/disconnect"})[0]["successful"] is True
    assert bayeux.connect()[0]["error"] == "403::Unknown client"
    counters = salesforce_emulator.counters()["cometd"]
    assert counters == {"handshake": 1, "disconnect": 1, "connect": 1}


def test_unsubscribe_stops_delivery(salesforce_emulator: SalesforceEmulator) -> None:
    """After unsubscribe, new events are no longer queued for the client."""
    bayeux = Bayeux(salesforce_emulator)
    bayeux.handshake()
    bayeux.connect()
    bayeux.subscribe("/data/AccountChangeEvent")
    reply = bayeux.send({"channel": "/meta/unsubscribe", "subscription": "/data/AccountChangeEvent"})[0]
    assert reply["successful"] is True
    salesforce_emulator.rest().create("Account", {"Name": "unseen"})
    assert [m["channel"] for m in bayeux.connect()] == ["/meta/connect"]


def test_requests_session_keeps_cookie_for_localhost(salesforce_emulator: SalesforceEmulator) -> None:
    """The emulator is addressed as localhost, so standard cookie jars keep BAYEUX_BROWSER."""
    assert salesforce_emulator.instance_url.startswith("https://localhost:")
    bayeux = Bayeux(salesforce_emulator)
    bayeux.handshake()
    jar = salesforce_emulator.http.cookies
    assert isinstance(jar, requests.cookies.RequestsCookieJar)
    assert jar.get("BAYEUX_BROWSER")
