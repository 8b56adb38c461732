"""The aiohttp application: routes, the error and latency middleware, and two ways to run it.

`serve()` runs the emulator in the current event loop (the `python -m devstack.salesforce`
process); `BackgroundEmulator` runs it in a thread with its own loop (the test fixture). Given the local CA
(`tls`), both also serve the Pub/Sub API (`pubsub.py`, gRPC) in the same loop on `pubsub_port` (0: a free
port), with the same certificate; `app[PUBSUB].port` is the port it got.

The middleware guarantees that no request ever gets a Python traceback: Salesforce errors are
rendered in the REST shape, unknown routes and methods become NOT_FOUND/METHOD_NOT_ALLOWED, and
anything unexpected becomes a 500 UNKNOWN_EXCEPTION (logged here with its stack, never sent).
REST calls need a valid bearer token (401 INVALID_SESSION_ID otherwise); admin calls need none.
Each authenticated REST call spends one DailyApiRequests (limits.py) before it is served; with none remaining
it is refused with Salesforce's 403 REQUEST_LIMIT_EXCEEDED instead. Every answer under /services/data carries
`Sforce-Limit-Info: api-usage=<used>/<max>` (after the call), errors and refusals included.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from devstack.salesforce import admin, bulk, bulk_query, rest
from devstack.salesforce.admin import COMETD, PUBSUB, AdminError
from devstack.salesforce.base import ApiError
from devstack.salesforce.cometd import CometD
from devstack.salesforce.config import Config
from devstack.salesforce.limits import API_REQUESTS, request_limit_exceeded
from devstack.salesforce.pubsub import PubSub
from devstack.salesforce.rest import EMULATOR, json_response
from devstack.salesforce.state import Emulator
from devstack.tls import LocalCA

LOG = logging.getLogger("devstack.salesforce")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string or headers, which may hold credentials), status, time."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1fms", request.method, request.path, response.status, time * 1000)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() in {"bearer", "oauth"} and value.strip() else None


def _check_session(request: web.Request, state: Emulator) -> None:
    if request.path.startswith("/services/data/v") and not state.tokens.valid(_bearer(request)):
        raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")


def _http_error(request: web.Request, error: web.HTTPException, state: Emulator) -> web.Response:
    """Router errors (unknown path, wrong method) in Salesforce's shape."""
    if request.path.startswith("/__admin"):
        return json_response({"error": error.reason}, status=error.status)
    if error.status == 405:
        code, message = "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed for {request.path}"
    elif error.status == 404:
        code, message = "NOT_FOUND", "The requested resource does not exist"
    else:
        code, message = "INVALID_REQUEST", error.reason
    state.counters.errors[code] += 1
    return json_response([{"errorCode": code, "message": message}], status=error.status)


def _unexpected(request: web.Request) -> web.Response:
    LOG.exception("unexpected error handling %s %s", request.method, request.path)
    if request.path.startswith("/__admin"):
        return json_response({"error": "unexpected error; see the emulator log"}, status=500)
    error_id = f"{secrets.randbelow(10**9)}-{secrets.randbelow(10**5)} (-{secrets.randbelow(10**9)})"
    message = f"An unexpected error occurred. Please include this ErrorId if you contact support: {error_id}"
    return json_response([{"errorCode": "UNKNOWN_EXCEPTION", "message": message}], status=500)


def _spend_request(request: web.Request, state: Emulator) -> None:
    """An authenticated REST call spends one DailyApiRequests, or is refused (403) when none remain."""
    if request.path.startswith("/services/data/v") and not state.limits.spend(API_REQUESTS):
        raise request_limit_exceeded(API_REQUESTS)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency injection, then the request's answer with the API usage header on every REST answer."""
    is_admin = request.path.startswith("/__admin")
    state = request.app[EMULATOR]
    if not is_admin and state.tunables.latency_ms > 0:
        await asyncio.sleep(state.tunables.latency_ms / 1000)
    response = await _answer(request, handler, state, is_admin=is_admin)
    if request.path.startswith("/services/data") and not response.prepared:
        response.headers["Sforce-Limit-Info"] = state.limits.usage_header()
    return response


async def _answer(request: web.Request, handler: Handler, state: Emulator, *, is_admin: bool) -> web.StreamResponse:
    """REST authentication and limits, and Salesforce-shaped errors for everything."""
    try:
        _check_session(request, state)
        _spend_request(request, state)
        return await handler(request)
    except AdminError as error:
        return json_response({"error": str(error)}, status=400)
    except ApiError as error:
        if is_admin:
            return json_response({"error": str(error), "errors": error.body()}, status=error.status)
        state.counters.errors[error.code] += 1
        return json_response(error.body(), status=error.status)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _http_error(request, error, state)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:  # noqa: BLE001 - the catch-all that keeps tracebacks from clients; logged with its stack
        return _unexpected(request)


def build_app(config: Config) -> web.Application:
    """The emulator's aiohttp application around a fresh in-memory org."""
    app = web.Application(middlewares=[middleware], client_max_size=64 * 1024 * 1024)
    state = Emulator(config)
    cometd = CometD(state)
    pubsub = PubSub(state)
    app[EMULATOR] = state
    app[COMETD] = cometd
    app[PUBSUB] = pubsub
    rest.routes(app)
    bulk.routes(app)
    bulk_query.routes(app)
    admin.routes(app)
    app.router.add_post("/cometd", cometd.handle)
    app.router.add_post("/cometd/", cometd.handle)
    app.router.add_post("/cometd/{version}", cometd.handle)

    async def on_shutdown(app: web.Application) -> None:
        cometd.drop_connections()
        await pubsub.stop()

    app.on_shutdown.append(on_shutdown)
    return app


async def serve(
    config: Config,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    access_log: bool = True,
    tls: LocalCA | None = None,
    pubsub_port: int = 0,
) -> web.AppRunner:
    """Start serving in the running loop (and Pub/Sub given `tls`); the caller keeps the runner and cleans it up."""
    app = build_app(config)
    if tls is not None:
        await app[PUBSUB].start(host, pubsub_port, tls.key_file.read_bytes(), tls.cert_file.read_bytes())
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=LOG if access_log else None,
        shutdown_timeout=2.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
    await site.start()
    return runner


class BackgroundEmulator:
    """The emulator in a daemon thread with its own event loop, on free ports unless given.

    With `tls` (the local CA whose certificate `ssl_context` serves) it serves the Pub/Sub API too:
    `pubsub_endpoint` is then "localhost:<port>".
    """

    def __init__(
        self,
        config: Config,
        ssl_context: ssl.SSLContext,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: LocalCA | None = None,
        pubsub_port: int = 0,
    ) -> None:
        self.config = config
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.tls = tls
        self.pubsub_port = pubsub_port
        self.org_id = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def pubsub_endpoint(self) -> str:
        if self.tls is None:
            raise RuntimeError("this emulator serves no Pub/Sub API (start it with tls=)")
        return f"localhost:{self.pubsub_port}"

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="salesforce-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the Salesforce emulator did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the Salesforce emulator failed to start: {self._error}") from self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._runner = loop.run_until_complete(
                serve(
                    self.config,
                    self.host,
                    self.port,
                    self.ssl_context,
                    access_log=False,
                    tls=self.tls,
                    pubsub_port=self.pubsub_port,
                )
            )
            address = self._runner.addresses[0]
            self.port = int(address[1])
            pubsub = self._runner.app[PUBSUB]
            self.pubsub_port = pubsub.port
            self.org_id = pubsub.org_id
        except Exception as exc:  # noqa: BLE001 - handed to the starting thread, which raises it
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        """Close the listener and every connection, and let the transports finish closing."""
        if self._runner is not None:
            server = self._runner.server
            for handler in list(server.connections) if server is not None else []:
                if handler.transport is not None:
                    handler.transport.abort()
            await self._runner.cleanup()
        for _ in range(20):
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(15)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
