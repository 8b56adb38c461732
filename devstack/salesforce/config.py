"""The emulator's settings: credentials from the command line, tunables changeable at run time.

`Config` is fixed at start; `Tunables` can be changed through `POST /__admin/settings` and are
restored to their start values by `POST /__admin/reset`. `multi_currency` makes the org a
multi-currency org (the ISO codes of `Config.currencies`, the first being the org currency).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass
class Tunables:
    """Behaviour a test or benchmark may change while the emulator runs."""

    token_ttl_seconds: float = 7200.0
    cometd_timeout_ms: int = 110_000
    session_idle_seconds: float = 40.0
    retention_seconds: float = 72 * 3600.0
    latency_ms: float = 0.0
    long_text_diff: bool = False
    query_batch_size: int = 2000
    bulk_chunk_delay_ms: float = 0.0  # pause between Bulk API 2.0 chunks of 200 rows
    bulk_query_delay_ms: float = 0.0  # how long a Bulk API 2.0 query job stays InProgress
    bulk_query_page_size: int = 50_000  # rows of a query job's results page when the call gives no maxRecords
    multi_currency: bool = False  # CurrencyIsoCode on Account, Opportunity, Product2, price book entries, lines
    pubsub_keepalive_seconds: float = 270.0  # Pub/Sub: an empty FetchResponse this often while events are pending
    pubsub_idle_close_seconds: float = 60.0  # Pub/Sub: end a stream with nothing pending and no request this long

    def copy(self) -> Tunables:
        return replace(self)


@dataclass
class Config:
    """Credentials the token endpoint accepts, and where state lives."""

    client_id: str
    client_secret: str
    username: str
    password: str
    security_token: str = ""
    state_dir: Path | None = None
    schema_file: Path | None = None
    latest_version: str = "62.0"
    currencies: tuple[str, ...] = ("USD", "EUR", "GBP", "CAD", "AUD", "JPY")  # of a multi-currency org; first = org's
    tunables: Tunables = field(default_factory=Tunables)
