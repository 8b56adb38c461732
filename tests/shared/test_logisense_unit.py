"""The LogiSense client's mapping of answers to errors, without a server (httpx MockTransport)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from shared.errors import MappingError, PermanentError, RejectedError, RetriesExhaustedError, TransientError
from shared.logisense import LogisenseClient, RequestOutcome, status_class
from shared.logisense_wire import (
    Condition,
    condition_json,
    error_messages,
    order_json,
    package_not_on_sale,
    retry_after_seconds,
)
from shared.retry import RetryPolicy
from shared.settings import LogisenseSettings

SETTINGS = LogisenseSettings(base_url="https://ls.example", username="u", password=SecretStr("pw-secret-value"))
ONE_TRY = RetryPolicy(max_attempts=1)
TOKEN = {"access_token": "tok-abc", "refresh_token": "ref-abc", "expires_in": 1800, "token_type": "bearer"}

Handler = Callable[[httpx.Request], httpx.Response]


def client_with(handler: Handler, **kwargs: Any) -> LogisenseClient:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Access/Login"):
            return httpx.Response(200, json=TOKEN)
        return handler(request)

    kwargs.setdefault("retry", ONE_TRY)
    return LogisenseClient(kwargs.pop("settings", SETTINGS), transport=httpx.MockTransport(route), **kwargs)


def test_condition_and_order_shapes() -> None:
    """Conditions and orderings accept dataclasses, tuples, dicts and '-name' strings."""
    expected = {"name": "sfdcid", "operator": "eq", "value": "001"}
    assert condition_json(Condition("sfdcid", "eq", "001")) == expected
    assert condition_json(("sfdcid", "eq", "001")) == expected
    assert condition_json({"name": "sfdcid", "value": "001"}) == expected
    assert order_json("-created") == {"name": "created", "direction": "desc"}
    assert order_json(("name", "asc")) == {"name": "name", "direction": "asc"}


def test_retry_after_forms() -> None:
    """Retry-After is read as seconds or as an HTTP date; garbage is ignored."""
    assert retry_after_seconds("2.5") == 2.5
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after_seconds(later) or 0) <= 30
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_status_classes() -> None:
    """Status classes are 2xx/4xx/5xx, timeout or error."""
    assert [status_class(201, None), status_class(404, "HTTP 404"), status_class(503, None)] == ["2xx", "4xx", "5xx"]
    assert status_class(None, "timeout") == "timeout"
    assert status_class(None, "connection: ConnectError") == "error"


def test_error_messages_drop_the_trailer() -> None:
    """The readable messages skip LogiSense's 2000 roll-back entry and fall back to message/error."""
    body = {
        "errors": [{"code": 10400000, "message": "'Name' is required."}, {"code": 2000, "message": "Errors found."}]
    }
    assert error_messages(body) == ["'Name' is required."]
    assert error_messages({"message": "Authorization has been denied."}) == ["Authorization has been denied."]
    assert error_messages({"error": "invalid_grant", "error_description": "bad"}) == ["invalid_grant: bad"]


async def test_request_shape_and_headers() -> None:
    """Calls go to /ResourceServer/api/v10/ with the bearer token, Accept JSON and the Pagination header."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        page = {"pagination": {}, "pagedResults": {"totalCount": 1, "items": [{"identity": 1}]}}
        return httpx.Response(200, json=page)

    async with client_with(handler) as client:
        assert [i async for i in client.paged("Usage/Rate/Plan", page_size=5)] == [{"identity": 1}]
    [request] = seen
    assert str(request.url) == "https://ls.example/ResourceServer/api/v10/Usage/Rate/Plan/Paged"
    assert request.headers["Authorization"] == "Bearer tok-abc"
    assert request.headers["Accept"] == "application/json"
    assert json.loads(request.headers["Pagination"]) == {"pageNumber": 1, "pageSize": 5}


async def test_non_json_502_is_transient() -> None:
    """A gateway's HTML 502 is a TransientError with its status."""
    async with client_with(lambda _r: httpx.Response(502, text="<html>bad gateway</html>")) as client:
        with pytest.raises(RetriesExhaustedError) as caught:
            await client.list("Account")
    assert isinstance(caught.value.last, TransientError)
    assert caught.value.last.status == 502


async def test_connection_errors_are_transient_and_reported() -> None:
    """A refused connection is retried as transient and reported to on_request with status None."""
    outcomes: list[RequestOutcome] = []

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with client_with(handler, on_request=outcomes.append, retry=RetryPolicy(2, 0.001, 0.001)) as client:
        with pytest.raises(RetriesExhaustedError) as caught:
            await client.get("Account", 7)
    assert "ConnectError" in str(caught.value.last)
    account = [(o.resource, o.status, o.attempt) for o in outcomes if o.resource == "Account"]
    assert account == [("Account", None, 1), ("Account", None, 2)]
    assert all(o.error and o.error.startswith("connection") for o in outcomes if o.resource == "Account")


async def test_400_is_a_validation_error_with_excerpt() -> None:
    """A 400 becomes RejectedError with the messages joined and a bounded excerpt of the body."""
    body = {
        "trackingId": "t",
        "errors": [
            {"code": 10400000, "message": "'Name' is required for 'Account'."},
            {"code": 13100000, "message": "'CurrencyId' (9) does not exist in 'Currency' for 'Account'."},
            {"code": 2000, "message": "Errors found. Transaction rolled back."},
        ],
        "padding": "x" * 2000,
    }
    async with client_with(lambda _r: httpx.Response(400, json=body)) as client:
        with pytest.raises(RejectedError) as caught:
            await client.create("Account", {"currencyId": 9})
    assert str(caught.value) == (
        "LogiSense POST Account rejected: 'Name' is required for 'Account'.; "
        "'CurrencyId' (9) does not exist in 'Currency' for 'Account'."
    )
    assert len(caught.value.response_excerpt) == 500


@pytest.mark.parametrize("status", [404, 405, 409])
async def test_other_4xx_are_permanent(status: int) -> None:
    """404, 405 and 409 are permanent and not retried."""
    calls = 0

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, json={"errors": [{"code": 1, "message": "nope"}]})

    async with client_with(handler, retry=RetryPolicy(5, 0.001, 0.001)) as client:
        with pytest.raises(PermanentError, match=f"HTTP {status}: nope"):
            await client.delete("Account", 3)
    assert calls == 1


async def test_client_secret_grant_and_refresh_grant() -> None:
    """Without a user name the client-secret grant is used; an expired token is renewed by the refresh grant."""
    forms: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Access/Login"):
            forms.append(dict(httpx.QueryParams(request.content.decode())))
            return httpx.Response(200, json={**TOKEN, "expires_in": 0.01})
        return httpx.Response(200, json={"trackingId": "t", "totalCount": 0, "items": []})

    settings = LogisenseSettings(base_url="https://ls.example", client_secret=SecretStr("cs-secret"))
    async with LogisenseClient(settings, transport=httpx.MockTransport(handler), retry=ONE_TRY) as client:
        await client.list("Account")
        await asyncio.sleep(0.02)
        await client.list("Account")
    assert forms[0] == {"grant_type": "password", "client_id": settings.client_id, "client_secret": "cs-secret"}
    assert forms[1]["grant_type"] == "refresh_token"
    assert forms[1]["refresh_token"] == "ref-abc"


def test_a_package_is_on_sale_when_active_started_and_not_expired() -> None:
    """package_not_on_sale says why a package is not on sale, or "" when it is; a bad date is a MappingError."""
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert package_not_on_sale({"isActive": True, "start": "2026-01-01T00:00:00Z", "expiry": None}, now) == ""
    assert package_not_on_sale({"isActive": False}, now) == "is inactive"
    assert package_not_on_sale({"isActive": True, "expiry": "2026-12-01T00:00:00"}, now) == "has expired"
    assert package_not_on_sale({"isActive": True, "start": "2027-01-01T00:00:00+01:00"}, now) == "has not started yet"
    with pytest.raises(MappingError, match="'soon' is not an ISO-8601 date"):
        package_not_on_sale({"isActive": True, "start": "soon"}, now)
