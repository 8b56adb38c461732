"""The LogiSense emulator's requests-per-second limit (devstack/logisense/ratelimit.py), driven over HTTP."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.logisense.ratelimit import RateLimit
from tests.fixtures.logisense import LogisenseEmulator
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

RESOURCE = "Account/StatusType"
LOGIN = "/AuthorizationServer/api/v10/Access/Login"


def _tls(emu: LogisenseEmulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=emu.ca_file)


def _login_form(emu: LogisenseEmulator) -> dict[str, str]:
    return {"grant_type": "password", "client_id": emu.client_id, "username": emu.username, "password": emu.password}


@pytest.fixture
def http(logisense_emulator: LogisenseEmulator) -> Iterator[httpx.Client]:
    """A plain client on the emulator's base URL (admin answers are not turned into errors)."""
    with httpx.Client(base_url=logisense_emulator.base_url, verify=_tls(logisense_emulator), trust_env=False) as client:
        yield client


@pytest.fixture
def token(logisense_emulator: LogisenseEmulator, http: httpx.Client) -> str:
    """A bearer token, taken before any limit is set (the token endpoint is limited too)."""
    return str(http.post(LOGIN, data=_login_form(logisense_emulator)).json()["access_token"])


def _limit(emu: LogisenseEmulator, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = emu.admin("POST", "rate-limit", body)
    return result


def _state(emu: LogisenseEmulator) -> dict[str, Any]:
    result: dict[str, Any] = emu.admin("GET", "rate-limit")
    return result


async def _burst(emu: LogisenseEmulator, token: str, n: int) -> list[httpx.Response]:
    """`n` concurrent GETs over connections opened beforehand, so the burst lands well inside one second."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(
        base_url=emu.base_url, verify=_tls(emu), trust_env=False, limits=limits, timeout=30.0
    ) as client:
        await asyncio.gather(*(client.get("/__admin/health") for _ in range(n)))  # admin: never limited
        headers = {"Authorization": f"Bearer {token}"}
        url = f"/ResourceServer/api/v10/{RESOURCE}"
        return list(await asyncio.gather(*(client.get(url, headers=headers) for _ in range(n))))


def test_off_by_default(logisense_emulator: LogisenseEmulator) -> None:
    """A fresh emulator has no limit and counts nothing."""
    assert _state(logisense_emulator) == {
        "requests_per_second": None,
        "retry_after": 1.0,
        "accepted": 0,
        "refused": 0,
        "peak": 0,
    }


async def test_a_burst_gets_the_limit_and_429s_with_retry_after(
    logisense_emulator: LogisenseEmulator, token: str
) -> None:
    """10/s and 30 concurrent requests: exactly 10 pass, 20 get 429 with Retry-After and the fault's body."""
    assert _limit(logisense_emulator, requests_per_second=10, retry_after=2)["requests_per_second"] == 10
    responses = await _burst(logisense_emulator, token, 30)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [429] * 20
    refused = [r for r in responses if r.status_code == 429]
    assert {r.headers.get("Retry-After") for r in refused} == {"2"}
    body = refused[0].json()
    assert body["trackingId"]
    assert [e["code"] for e in body["errors"]] == [1000]
    assert "429" in body["errors"][0]["message"]
    assert _state(logisense_emulator) == {
        "requests_per_second": 10,
        "retry_after": 2.0,
        "accepted": 10,
        "refused": 20,
        "peak": 10,
    }
    assert logisense_emulator.count(resource=RESOURCE, status=429) == 20
    assert logisense_emulator.count(resource=RESOURCE, status=200) == 10


async def test_requests_pass_again_once_the_window_moves_on(
    logisense_emulator: LogisenseEmulator, token: str, http: httpx.Client
) -> None:
    """After a refused burst, a request within the next second or so is accepted again."""
    _limit(logisense_emulator, requests_per_second=10)
    await _burst(logisense_emulator, token, 30)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/ResourceServer/api/v10/{RESOURCE}"
    wait_until(lambda: http.get(url, headers=headers).status_code, 10, "an accepted request", until=lambda s: s == 200)
    state = _state(logisense_emulator)
    assert state["accepted"] >= 11
    assert state["peak"] == 10


def test_the_token_endpoint_is_limited(logisense_emulator: LogisenseEmulator, http: httpx.Client) -> None:
    """With the second's one request used, a login is answered 429 and counted under Access/Login."""
    _limit(logisense_emulator, requests_per_second=1, retry_after=5)
    form = _login_form(logisense_emulator)
    answers = [http.post(LOGIN, data=form) for _ in range(3)]
    assert answers[0].status_code == 200
    assert [a.status_code for a in answers[1:]] == [429, 429]
    assert answers[1].headers["Retry-After"] == "5"
    assert answers[1].json()["errors"][0]["code"] == 1000
    assert logisense_emulator.count(resource="Access/Login", status=429) == 2


def test_peak_stays_within_the_limit_under_sustained_load(
    logisense_emulator: LogisenseEmulator, token: str, http: httpx.Client
) -> None:
    """Requests as fast as one client can send them for 2.5 s at 5/s: peak 5, at most 15 accepted."""
    _limit(logisense_emulator, requests_per_second=5)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/ResourceServer/api/v10/{RESOURCE}"
    sent = 0
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        http.get(url, headers=headers)
        sent += 1
        assert _state(logisense_emulator)["peak"] <= 5
    state = _state(logisense_emulator)
    assert state["peak"] == 5
    assert 10 <= state["accepted"] <= 15
    assert state["accepted"] + state["refused"] == sent


async def test_turning_it_off_accepts_everything(logisense_emulator: LogisenseEmulator, token: str) -> None:
    """null or 0 turns the limit off: a burst passes whole and nothing is counted."""
    for off in (None, 0):
        _limit(logisense_emulator, requests_per_second=2)
        assert _limit(logisense_emulator, requests_per_second=off)["requests_per_second"] is None
        responses = await _burst(logisense_emulator, token, 20)
        assert [r.status_code for r in responses] == [200] * 20
        assert _state(logisense_emulator)["accepted"] == 0


async def test_clearing_counters_keeps_the_limit(logisense_emulator: LogisenseEmulator, token: str) -> None:
    """DELETE rate-limit/counters zeroes accepted, refused and peak; the limit (and its window) stays."""
    _limit(logisense_emulator, requests_per_second=10)
    await _burst(logisense_emulator, token, 12)
    cleared = logisense_emulator.admin("DELETE", "rate-limit/counters")
    assert cleared == {"requests_per_second": 10, "retry_after": 1.0, "accepted": 0, "refused": 0, "peak": 0}
    responses = await _burst(logisense_emulator, token, 15)
    state = _state(logisense_emulator)
    assert state["accepted"] == sum(r.status_code == 200 for r in responses)
    assert state["refused"] == sum(r.status_code == 429 for r in responses)
    assert state["peak"] <= 10


async def test_reset_turns_the_limit_off(logisense_emulator: LogisenseEmulator, token: str) -> None:
    """POST /__admin/reset drops the limit and its counters."""
    _limit(logisense_emulator, requests_per_second=3, retry_after=4)
    await _burst(logisense_emulator, token, 6)
    logisense_emulator.reset()
    assert _state(logisense_emulator) == {
        "requests_per_second": None,
        "retry_after": 1.0,
        "accepted": 0,
        "refused": 0,
        "peak": 0,
    }


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"requests_per_second": -1}, "requests_per_second"),
        ({"requests_per_second": 2.5}, "requests_per_second"),
        ({"requests_per_second": "20"}, "requests_per_second"),
        ({"requests_per_second": True}, "requests_per_second"),
        ({"requests_per_second": 20, "retry_after": -1}, "retry_after"),
        ({"requests_per_second": 20, "retry_after": "soon"}, "retry_after"),
        ({"requests_per_second": 20, "burst": 5}, "burst"),
        ({"retry_after": 1}, "requests_per_second"),
        ([20], "requests_per_second"),
    ],
)
def test_bad_settings_are_refused_by_name(
    logisense_emulator: LogisenseEmulator, http: httpx.Client, body: Any, key: str
) -> None:
    """A bad value answers 400 naming the key, and the limit stays as it was."""
    _limit(logisense_emulator, requests_per_second=7)
    response = http.post("/__admin/rate-limit", json=body)
    assert response.status_code == 400
    assert key in response.json()["error"]
    assert _state(logisense_emulator)["requests_per_second"] == 7


def test_the_window_is_open_on_the_left() -> None:
    """A timestamp exactly one second old no longer counts; peak is the most accepted in any (t-1, t]."""
    now = [100.0]
    limit = RateLimit(clock=lambda: now[0])
    limit.configure({"requests_per_second": 2})
    assert [limit.admit(), limit.admit(), limit.admit()] == [True, True, False]
    now[0] = 100.5
    assert not limit.admit()
    now[0] = 101.0
    assert [limit.admit(), limit.admit(), limit.admit()] == [True, True, False]
    limit.clear_counters()
    now[0] = 101.5
    assert not limit.admit()
    now[0] = 102.0
    assert limit.admit()
    assert (limit.accepted, limit.refused, limit.peak) == (1, 1, 1)
