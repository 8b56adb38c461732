"""The LogiSense Billing REST client (httpx): tokens, retries and metrics around each call
(what the JSON of a query and of an answer means, errors included, is shared/logisense_wire.py).

- Base URL `{base_url}/ResourceServer/api/{api_version}/`; tokens from
  `{base_url}/AuthorizationServer/api/{api_version}/Access/Login` (password grant with the client id,
  or the client-secret grant when a secret is set). A token is refreshed (refresh-token grant, falling
  back to a fresh login) `token_refresh_margin_seconds` before it expires (at most half its
  lifetime), and once more when a call answers 401.
- Every public call runs under `shared.retry.call_with_retries`, so callers get retries for free:
  429 (honouring Retry-After), 5xx, timeouts and connection errors are TransientError; a 401 costs
  one free retry after a token refresh, and a second 401 ends as RetriesExhaustedError whose `last`
  is the AuthExpiredError; 400 (RejectedError) and other 4xx (PermanentError) are not retried.
- Each HTTP attempt (token requests included) first takes a slot of the process's Throttle
  (shared/throttle.py: `logisense.rate_limit_per_second`, and a 429's Retry-After holds every call of the
  process); a 429 costs no retry while the call's 429 waits stay within `logisense.throttle_wait_seconds`.
- Each HTTP attempt (token requests included) is reported to `on_request` as a RequestOutcome and
  counted in `sfls_logisense_requests_total` / `sfls_logisense_request_duration_seconds`, labelled
  by the route template (`Account`, `Contact/Point`, `Account/Search`, `Access/Login`), never an id.
- Secrets (password, client secret, tokens) never appear in errors, outcomes or metrics.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self

import httpx
from prometheus_client import Counter, Histogram

from shared.errors import AuthExpiredError, PermanentError, TransientError
from shared.logisense_wire import (
    ConditionLike,
    OrderLike,
    decode,
    error_messages,
    first_instance,
    pages,
    query_json,
    retry_after_seconds,
)
from shared.retry import RetryPolicy, call_with_retries
from shared.settings import LogisenseSettings
from shared.throttle import throttle_for

REQUESTS = Counter(
    "sfls_logisense_requests_total",
    "HTTP requests made to LogiSense, by route template, method and status class.",
    ["resource", "method", "status_class"],
)
DURATION = Histogram(
    "sfls_logisense_request_duration_seconds",
    "Duration of HTTP requests to LogiSense, by route template, method and status class.",
    ["resource", "method", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
LOGIN_RESOURCE = "Access/Login"


@dataclass(frozen=True)
class RequestOutcome:
    """One HTTP attempt, for metrics and the request log."""

    method: str
    resource: str
    status: int | None
    duration_seconds: float
    error: str | None
    attempt: int


def status_class(status: int | None, error: str | None) -> str:
    if status is None:
        return "timeout" if error == "timeout" else "error"
    return f"{status // 100}xx"


class LogisenseClient:
    """Async LogiSense client; use as `async with LogisenseClient(settings) as client:`."""

    def __init__(
        self,
        settings: LogisenseSettings,
        *,
        retry: RetryPolicy | None = None,
        on_request: Callable[[RequestOutcome], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
    ) -> None:
        self._settings = settings
        self._policy = replace(retry or RetryPolicy(), throttle_seconds=settings.throttle_wait_seconds)
        self._throttle = throttle_for(settings.base_url, settings.rate_limit_per_second)
        self._on_request = on_request
        root = f"{settings.base_url}"
        self._token_url = f"{root}/AuthorizationServer/api/{settings.api_version}/Access/Login"
        verify: ssl.SSLContext | bool = True
        if settings.ca_file:
            verify = ssl.create_default_context(cafile=settings.ca_file)
        self._http = httpx.AsyncClient(
            base_url=f"{root}/ResourceServer/api/{settings.api_version}/",
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(settings.timeout_seconds),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            verify=verify,
            trust_env=not settings.ca_file,  # SSL_CERT_FILE & co. must not override the configured CA
            transport=transport,
        )
        self._token: str | None = None
        self._refresh_token: str | None = None
        self._refresh_at = 0.0  # monotonic time at which the token is refreshed ahead of expiry
        self._auth_lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- authentication ------------------------------------------------------------------------
    async def login(self) -> None:
        """Get a fresh token with the configured credentials (retried like any call)."""
        await call_with_retries(self._password_login, self._policy)

    async def _ensure_token(self) -> str:
        if self._token is not None and time.monotonic() < self._refresh_at:
            return self._token
        async with self._auth_lock:
            stale = self._token is None or time.monotonic() >= self._refresh_at
            if stale and not (self._refresh_token is not None and await self._refresh()):
                await self._password_login()
            assert self._token is not None
            return self._token

    async def _password_login(self) -> None:
        settings = self._settings
        form = {"grant_type": "password", "client_id": settings.client_id}
        if settings.client_secret.get_secret_value() and not settings.username:
            form["client_secret"] = settings.client_secret.get_secret_value()
        else:
            form["username"] = settings.username
            form["password"] = settings.password.get_secret_value()
        status, body = await self._token_request(form)
        if status != 200:
            description = "; ".join(error_messages(body)) or f"HTTP {status}"
            raise PermanentError(f"LogiSense login refused ({description})", status=status)
        self._accept_token(body)

    async def _refresh(self) -> bool:
        """The refresh-token grant; False when LogiSense refuses it (then the caller logs in again)."""
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token or "",
            "client_id": self._settings.client_id,
        }
        self._refresh_token = None
        status, body = await self._token_request(form)
        if status != 200:
            return False
        self._accept_token(body)
        return True

    def _accept_token(self, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise PermanentError("LogiSense login answered without an access_token")
        lifetime = float(body.get("expires_in") or 1800)
        margin = min(self._settings.token_refresh_margin_seconds, lifetime / 2)
        self._token = body["access_token"]
        refresh = body.get("refresh_token")
        self._refresh_token = refresh if isinstance(refresh, str) else None
        self._refresh_at = time.monotonic() + lifetime - margin

    async def _token_request(self, form: dict[str, str]) -> tuple[int, Any]:
        """POST the form to the token endpoint; 429/5xx/network failures raise TransientError."""
        response = await self._send(LOGIN_RESOURCE, "POST", self._token_url, attempt=1, data=form)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(
                f"LogiSense token endpoint answered HTTP {response.status_code}",
                status=response.status_code,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        return response.status_code, body

    # -- the HTTP attempt ----------------------------------------------------------------------
    async def _send(self, resource: str, method: str, url: str, *, attempt: int, **kwargs: Any) -> httpx.Response:
        await self._throttle.acquire()
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            response = await self._http.request(method, url, **kwargs)
            status = response.status_code
            if status >= 400:
                error = f"HTTP {status}"
            if status == 429:
                asked = retry_after_seconds(response.headers.get("Retry-After"))
                self._throttle.hold(1.0 if asked is None else asked)
        except httpx.TimeoutException as exc:
            error = "timeout"
            raise TransientError(
                f"LogiSense {method} {resource} timed out after {self._settings.timeout_seconds:g}s"
            ) from exc
        except httpx.TransportError as exc:
            error = f"connection: {type(exc).__name__}"
            raise TransientError(f"LogiSense {method} {resource} failed: {type(exc).__name__}") from exc
        finally:
            self._record(RequestOutcome(method, resource, status, time.perf_counter() - started, error, attempt))
        return response

    def _record(self, outcome: RequestOutcome) -> None:
        labels = (outcome.resource, outcome.method, status_class(outcome.status, outcome.error))
        REQUESTS.labels(*labels).inc()
        DURATION.labels(*labels).observe(outcome.duration_seconds)
        if self._on_request is not None:
            self._on_request(outcome)

    async def _call(
        self, method: str, resource: str, path: str, *, label: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """One API call with retries; returns the decoded JSON body of the 2xx answer."""
        attempts = 0
        extra_headers: dict[str, str] = kwargs.pop("headers", {})
        label = label or resource

        async def attempt() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            token = await self._ensure_token()
            headers = {"Authorization": f"Bearer {token}", **extra_headers}
            response = await self._send(label, method, path, attempt=attempts, headers=headers, **kwargs)
            return self._decode(response, method, label, token)

        return await call_with_retries(attempt, self._policy)

    def _decode(self, response: httpx.Response, method: str, resource: str, token: str) -> dict[str, Any]:
        try:
            return decode(response, f"LogiSense {method} {resource}")
        except AuthExpiredError:
            if self._token == token:
                self._token = None  # the next attempt logs in again
            raise

    # -- the API -------------------------------------------------------------------------------
    async def get(self, resource: str, identity: int | str) -> dict[str, Any]:
        """One instance (`GET R/{id}`)."""
        body = await self._call("GET", resource, f"{resource}/{identity}")
        return dict(body.get("instance") or {})

    async def list(self, resource: str) -> builtins.list[dict[str, Any]]:
        """Every instance (`GET R`); prefer `paged` for large resources."""
        body = await self._call("GET", resource, resource)
        return list(body.get("items") or [])

    async def paged(self, resource: str, page_size: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every instance via `GET R/Paged`, one page in memory at a time."""
        size = page_size or self._settings.page_size

        async def fetch(page: int) -> dict[str, Any]:
            header = json.dumps({"pageNumber": page, "pageSize": size})
            return await self._call(
                "GET", resource, f"{resource}/Paged", label=f"{resource}/Paged", headers={"Pagination": header}
            )

        async for item in pages(fetch, size):
            yield item

    async def search(
        self,
        resource: str,
        conditions: Sequence[ConditionLike] = (),
        *,
        fields: Sequence[str] | None = None,
        order_by: Sequence[OrderLike] | None = None,
        top: int | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """`POST R/Search` (conditions ANDed); at most `top` items (LogiSense's default is 100)."""
        query = query_json(conditions, order_by)
        if fields is not None:
            query["fields"] = list(fields)
        if top is not None:
            query["top"] = top
        body = await self._call(
            "POST", resource, f"{resource}/Search", label=f"{resource}/Search", json={"query": query}
        )
        if "pagedResults" in body:
            return list((body.get("pagedResults") or {}).get("items") or [])
        return list(body.get("items") or [])

    async def search_paged(
        self,
        resource: str,
        conditions: Sequence[ConditionLike] = (),
        *,
        order_by: Sequence[OrderLike] | None = None,
        page_size: int | None = None,
        children: dict[str, Any] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every match of `POST R/Search`, page by page (ordered by identity unless told otherwise).

        `children` requests deep-search collections, e.g. `{"invoiceItems": {}}` on Invoice or
        `{"usageRateGroups": {"rates": {}}}` on RatePlan.
        """
        size = page_size or self._settings.page_size
        query = query_json(conditions, order_by or [("identity", "asc")])
        query.update(children or {})

        async def fetch(page: int) -> dict[str, Any]:
            body = {"query": {**query, "pagination": {"pageNumber": page, "pageSize": size}}}
            return await self._call("POST", resource, f"{resource}/Search", label=f"{resource}/Search", json=body)

        async for item in pages(fetch, size):
            yield item

    async def create(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST R`; returns the created instance (with its identity)."""
        answer = await self._call("POST", resource, resource, json=dict(body))
        return first_instance(answer)

    async def update(self, resource: str, identity: int | str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`PUT R/{id}` with only the fields to change; returns the updated instance."""
        answer = await self._call("PUT", resource, f"{resource}/{identity}", json=dict(body))
        return first_instance(answer)

    async def patch(self, resource: str, identity: int | str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`PATCH R/{id}` (may carry child arrays); returns the parent instance."""
        answer = await self._call("PATCH", resource, f"{resource}/{identity}", json=dict(body))
        return first_instance(answer)

    async def delete(self, resource: str, identity: int | str) -> builtins.list[dict[str, Any]]:
        """`DELETE R/{id}`; returns the result items (the record and what cascaded or detached)."""
        answer = await self._call("DELETE", resource, f"{resource}/{identity}")
        return list((answer.get("results") or {}).get("items") or [])
