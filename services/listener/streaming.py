"""The listener's Salesforce streaming client: aiosfstream-ng (CometD), subclassed where it falls short.

aiosfstream-ng's authenticators post to login.salesforce.com through their own unconfigured HTTP session
and its client hard-codes API 45.0, so the subclasses here post to the configured instance, trust the
configured CA, and use `settings.api_version` for `/cometd/NN.N`. Build them inside a running event loop.
Reconnection policy (watchdog, rebuild on TransportTimeoutError) is services/listener/stream.py's.
Only the listener imports this module: the syncer and the importer never load aiosfstream-ng or aiohttp.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
from aiosfstream_ng.auth import AuthenticatorBase
from aiosfstream_ng.client import Client, ReplayMarkerStoragePolicy
from aiosfstream_ng.replay import ReplayOption

from shared.salesforce_auth import ssl_context, token_form
from shared.settings import SalesforceSettings


class StreamingAuthenticator(AuthenticatorBase):
    """aiosfstream-ng authentication against the configured instance, trusting the configured CA."""

    def __init__(self, settings: SalesforceSettings, context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self._settings = settings
        self._ssl = context or ssl_context(settings)

    def __repr__(self) -> str:
        return f"StreamingAuthenticator(instance_url={self._settings.instance_url!r}, auth={self._settings.auth!r})"

    @property
    def _token_url(self) -> str:
        return f"{self._settings.instance_url}/services/oauth2/token"

    async def _authenticate(self) -> tuple[int, dict[str, Any]]:
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_seconds)
        connector = aiohttp.TCPConnector(ssl=self._ssl)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.post(self._token_url, data=token_form(self._settings)) as response,
        ):
            body = await response.json(loads=self.json_loads)
            return response.status, body if isinstance(body, dict) else {}


class StreamingClient(Client):
    """aiosfstream-ng's client on `/cometd/<api_version>` over TLS that trusts the configured CA."""

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        replay: Any = ReplayOption.NEW_EVENTS,
        replay_fallback: ReplayOption | None = None,
        replay_storage_policy: ReplayMarkerStoragePolicy = ReplayMarkerStoragePolicy.MANUAL,
        connection_timeout: float = 10.0,
        max_pending_count: int = 100,
    ) -> None:
        context = ssl_context(settings)
        super().__init__(
            StreamingAuthenticator(settings, context),
            replay=replay,
            replay_fallback=replay_fallback,
            replay_storage_policy=replay_storage_policy,
            connection_timeout=connection_timeout,
            max_pending_count=max_pending_count,
        )
        self.ssl = context
        self.api_version = settings.api_version

    # The base declares a staticmethod but calls it on the instance; we need the instance's version.
    def get_cometd_url(self, instance_url: str) -> str:  # type: ignore[override]
        """The CometD endpoint for our API version (the library hard-codes 45.0, before changedFields)."""
        return f"{instance_url.rstrip('/')}/cometd/{self.api_version}"


def streaming_client(settings: SalesforceSettings, replay: Any, **kwargs: Any) -> StreamingClient:
    """A StreamingClient for `settings`; call inside a running event loop (the library binds to it)."""
    return StreamingClient(settings, replay=replay, **kwargs)
