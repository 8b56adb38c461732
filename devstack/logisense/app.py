"""Wiring: the emulator's state, the aiohttp application and an HTTPS server that can run anywhere.

Every non-admin request passes one middleware that, in order: resolves the route template and
operation (for counters and faults), answers 429 if the rate limit (ratelimit.py) refuses the
request, applies matching faults (latency, hang, injected status), checks the bearer token on the
Resource Server, runs the handler, turns any error into LogiSense's JSON shape (a Python traceback
never reaches the client; it goes to the server log), and counts the answer. The admin API
(`/__admin/...`, no token) is in admin.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from devstack.logisense import admin, api, seed
from devstack.logisense.auth import DENIED, Auth, Credentials
from devstack.logisense.faults import Counters, Faults
from devstack.logisense.ratelimit import RateLimit
from devstack.logisense.search import SearchOptions
from devstack.logisense.store import Store
from devstack.logisense.writes import ERR_INVALID, ERR_NOT_FOUND, ApiError, WriteOptions, Writer

log = logging.getLogger("devstack.logisense")
RESOURCE_PREFIX = "/ResourceServer/api/"
LOGIN_RESOURCE = "Access/Login"
INTERNAL_ERROR = 1000


@dataclass(frozen=True)
class EmulatorConfig:
    """Start-up settings; `POST /__admin/config` changes some until the next reset."""

    client_id: str = "044b8ad6006845c29446b2f18e5b5909"
    username: str = "sfls-integration"
    password: str = "devstack-password"  # noqa: S105 - the emulator's own local credential
    client_secret: str = ""
    token_ttl_seconds: float = 1800.0
    refresh_token_ttl_seconds: float | None = None
    seed: int = 1
    catalogue_size: int = 1000
    accounts: int = 0
    invoices_per_account: int = 3
    account_custom_fields: tuple[str, ...] = ("sfdcid",)
    frequency_custom_fields: tuple[str, ...] = ("family",)
    package_custom_fields: tuple[str, ...] = ()
    case_insensitive: bool = True
    accept_names_on_write: bool = True
    reject_unknown_fields: bool = False
    paged_default_size: int = 20
    top_default: int = 100
    top_max: int = 10_000
    hang_seconds: float = 300.0
    retry_after_default: float = 1.0

    def custom_fields(self) -> dict[str, tuple[str, ...]]:
        return {
            "Account": self.account_custom_fields,
            "Package/Frequency": self.frequency_custom_fields,
            "Package": self.package_custom_fields,
        }


@dataclass
class Emulator:
    """Everything one emulator instance holds; reset() rebuilds it from a seed."""

    startup: EmulatorConfig
    config: EmulatorConfig = field(init=False)
    store: Store = field(init=False)
    writer: Writer = field(init=False)
    faults: Faults = field(init=False)
    counters: Counters = field(default_factory=Counters)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    auth: Auth = field(init=False)
    rng: random.Random = field(init=False)
    search_options: SearchOptions = field(init=False)

    def __post_init__(self) -> None:
        self.config = self.startup
        credentials = Credentials(
            self.startup.client_id, self.startup.username, self.startup.password, self.startup.client_secret
        )
        self.auth = Auth(credentials, clock=self._now)
        self.reset()

    def _now(self) -> float:
        return self.store.now()

    def reset(self, **overrides: Any) -> None:
        """Fresh seeded data, no faults or rate limit, zero counters, start-up configuration (tokens stay valid)."""
        self.config = replace(self.startup, **overrides)
        config = self.config
        self.store = seed.build(
            config.seed,
            config.catalogue_size,
            accounts=config.accounts,
            invoices_per_account=config.invoices_per_account,
            custom_fields=dict(config.custom_fields()),
            case_insensitive=config.case_insensitive,
        )
        self.rng = random.Random(config.seed)
        if hasattr(self, "faults"):
            self.faults.clear()
        self.faults = Faults(
            config.seed, hang_seconds=config.hang_seconds, retry_after_default=config.retry_after_default
        )
        self.counters.clear()
        self.rate_limit.reset()
        self.configure()

    def configure(self, **changes: Any) -> None:
        """Apply runtime settings (see RUNTIME_KEYS) until the next reset."""
        self.config = replace(self.config, **changes)
        config = self.config
        self.writer = Writer(
            self.store,
            WriteOptions(
                accept_names_on_write=config.accept_names_on_write, reject_unknown_fields=config.reject_unknown_fields
            ),
        )
        self.search_options = SearchOptions(top_default=config.top_default, top_max=config.top_max)
        self.auth.token_ttl_seconds = config.token_ttl_seconds
        self.auth.refresh_token_ttl_seconds = config.refresh_token_ttl_seconds
        self.faults.hang_seconds = config.hang_seconds
        self.faults.retry_after_default = config.retry_after_default


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


EMULATOR_KEY = web.AppKey("emulator", Emulator)


def build_app(emulator: Emulator) -> web.Application:
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/__admin"):
            try:
                response: web.StreamResponse = await handler(request)
            except web.HTTPException as exc:
                return _json(exc.status, {"error": exc.reason})
            except ApiError as exc:
                return _json(exc.status, {"error": str(exc)})
            except Exception as exc:
                log.exception("admin request failed")
                return _json(500, {"error": f"{type(exc).__name__}: {exc}"})
            return response
        resource, operation, target, failure = _resolve(request)
        status = 499
        try:
            response = (
                _limit(emulator, operation)
                or await _inject(emulator, resource, request.method, operation)
                or await _serve(emulator, request, handler, operation=operation, target=target, failure=failure)
            )
            status = response.status
            return response
        finally:
            emulator.counters.add(resource, request.method, operation, status)

    app = web.Application(middlewares=[middleware], client_max_size=16 * 1024 * 1024)
    app[EMULATOR_KEY] = emulator
    app.router.add_post("/AuthorizationServer/api/{version}/Access/Login", _login)
    app.router.add_post("/AuthorizationServer/Access/Login", _login)
    app.router.add_route("*", RESOURCE_PREFIX + "{version}/{tail:.*}", _resource)
    admin.add_routes(app, emulator)
    app.router.add_route("*", "/{tail:.*}", _unknown)
    return app


def _resolve(request: web.Request) -> tuple[str, str, api.Target | None, ApiError | None]:
    path = request.path
    if "/Access/Login" in path and path.startswith("/AuthorizationServer/"):
        return LOGIN_RESOURCE, "login", None, None
    if path.startswith(RESOURCE_PREFIX):
        tail = path[len(RESOURCE_PREFIX) :].split("/", 1)
        try:
            target = api.classify(request.method, tail[1] if len(tail) > 1 else "")
        except ApiError as exc:
            return "(unmatched)", "unknown", None, exc
        return target.resource, target.operation, target, None
    return "(unmatched)", "unknown", None, None


async def _serve(
    emulator: Emulator,
    request: web.Request,
    handler: Any,
    *,
    operation: str,
    target: api.Target | None,
    failure: ApiError | None,
) -> web.StreamResponse:
    if failure is not None:
        return _error(failure, operation)
    try:
        if target is not None and not emulator.auth.check(request.headers.get("Authorization")):
            return _json(401, DENIED, {"WWW-Authenticate": "Bearer"})
        response: web.StreamResponse = await handler(request)
    except ApiError as exc:
        return _error(exc, operation)
    except web.HTTPException as exc:
        code = ERR_NOT_FOUND if exc.status == 404 else ERR_INVALID
        return _json(exc.status, api.error_body(operation, [(code, exc.reason)], trailer=False))
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception:
        log.exception("request %s %s failed", request.method, request.path)
        return _json(500, api.error_body(operation, [(INTERNAL_ERROR, "An error has occurred.")], trailer=False))
    return response


def _error(exc: ApiError, operation: str) -> web.Response:
    trailer = exc.status == 400 and operation in ("create", "update", "patch")
    return _json(exc.status, api.error_body(operation, exc.errors, trailer=trailer))


async def _inject(emulator: Emulator, resource: str, method: str, operation: str) -> web.Response | None:
    """Apply the matching fault rules: sleep, hang, or answer with the injected status."""
    verdict = emulator.faults.decide(resource, method, operation)
    if verdict is None:
        return None
    if verdict.latency:
        await asyncio.sleep(verdict.latency)
    if verdict.hang:
        await emulator.faults.hold()
        return _json(504, api.error_body(operation, [(INTERNAL_ERROR, "Gateway timeout.")], trailer=False))
    if verdict.status is None:
        return None
    return _refusal(verdict.status, operation, f"Injected fault: HTTP {verdict.status}.", verdict.retry_after)


def _limit(emulator: Emulator, operation: str) -> web.Response | None:
    """429 with Retry-After when the rate limit refuses this request; None lets it go on."""
    limit = emulator.rate_limit
    if limit.admit():
        return None
    return _refusal(429, operation, "Rate limit exceeded: HTTP 429.", limit.retry_after)


def _refusal(status: int, operation: str, message: str, retry_after: float | None) -> web.Response:
    """The error answer a fault or the rate limit gives instead of the handler (with Retry-After if set)."""
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    return _json(status, api.error_body(operation, [(INTERNAL_ERROR, message)], trailer=False), headers)


async def _login(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR_KEY]
    form: dict[str, str] = {}
    if request.content_type == "application/x-www-form-urlencoded":
        form = {key: str(value) for key, value in (await request.post()).items()}
    status, body = emulator.auth.login(form)
    return _json(status, body, {"Cache-Control": "no-store"})


async def _resource(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR_KEY]
    tail = request.match_info["tail"]
    target = api.classify(request.method, tail)
    body = await request.read()
    headers = {key.lower(): value for key, value in request.headers.items()}
    status, payload = api.handle(emulator, target, body, headers)
    return _json(status, payload, {"X-Tracking-Id": payload.get("trackingId", "")})


async def _unknown(request: web.Request) -> web.Response:
    raise ApiError(404, [(ERR_NOT_FOUND, f"No HTTP resource was found that matches the request URI '{request.path}'.")])


class EmulatorServer:
    """The emulator on one HTTPS port; port 0 picks a free one (see `port` after start)."""

    def __init__(self, emulator: Emulator, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        self.emulator = emulator
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(build_app(self.emulator), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context, backlog=1024)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            self.emulator.faults.clear()
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None
