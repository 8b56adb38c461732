"""Everything the emulator holds in memory, in one object the HTTP handlers share.

`Emulator.reset()` is what `POST /__admin/reset` does: records, events, tokens, CometD sessions,
query cursors, Bulk API jobs, counters and API limit usage are cleared (limits.py: every Max and the window
back to their defaults), the schema goes back to the built-in objects plus the `--schema` file, and the
tunables go back to their start values; the standard price book and the opportunity stages are seeded again.
Replay ids keep increasing across resets, so an id from before a reset is never mistaken for a newer event.

Counters (`GET /__admin/counters`) count API calls by kind:
    {"total": n,                      # REST API calls (everything below except token and cometd)
     "token": n,                      # OAuth token requests (password and refresh grants)
     "query": n,                      # query/queryAll requests, each page (nextRecordsUrl) counted
     "sobject_read": {"Account": n},  # GET of one record (by id or external id) or composite GET
     "sobject_write": {"Account": n}, # POST/PATCH/DELETE of one record, upsert
     "describe": {"Account": n},      # describe and sObject listing ("*" for GET /sobjects)
     "composite": n,                  # composite sObject Collections and /composite requests
     "bulk": n,                       # Bulk API 2.0 ingest requests (rows written count in sobject_write)
     "bulk_query": n,                 # Bulk API 2.0 query job requests (create, poll, results pages, list...)
     "cometd": {"handshake": n, "connect": n, "subscribe": n, "unsubscribe": n, "disconnect": n},
     "errors": {"INVALID_FIELD": n},  # error responses by errorCode
     "pubsub": {"GetTopic": n, "GetSchema": n, "Subscribe": n},  # Pub/Sub API RPCs by method
     "pubsub_events": n}              # change events delivered over Pub/Sub (all streams)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devstack.salesforce.base import ApiError
from devstack.salesforce.cdc import ChangeEvents, EventLog
from devstack.salesforce.config import Config, Tunables
from devstack.salesforce.limits import Limits
from devstack.salesforce.schema import Schema
from devstack.salesforce.store import Store

if TYPE_CHECKING:
    from devstack.salesforce.bulk import IngestJob
    from devstack.salesforce.bulk_query import QueryJob

MAX_CURSORS = 500


class Counters:
    """API calls by kind; see the module docstring for the shape."""

    def __init__(self) -> None:
        self.total = 0
        self.token = 0
        self.query = 0
        self.composite = 0
        self.bulk = 0
        self.bulk_query = 0
        self.sobject_read: Counter[str] = Counter()
        self.sobject_write: Counter[str] = Counter()
        self.describe: Counter[str] = Counter()
        self.cometd: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.pubsub: Counter[str] = Counter()
        self.pubsub_events = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "token": self.token,
            "query": self.query,
            "sobject_read": dict(self.sobject_read),
            "sobject_write": dict(self.sobject_write),
            "describe": dict(self.describe),
            "composite": self.composite,
            "bulk": self.bulk,
            "bulk_query": self.bulk_query,
            "cometd": dict(self.cometd),
            "errors": dict(self.errors),
            "pubsub": dict(self.pubsub),
            "pubsub_events": self.pubsub_events,
        }


@dataclass
class Cursor:
    rows: list[dict[str, Any]]
    version: str


class Tokens:
    """Access tokens that expire, refresh tokens that do not; both invalidated by sessions/expire."""

    def __init__(self, config: Config, tunables: Tunables, org_id: str) -> None:
        self.config = config
        self.tunables = tunables
        self.org_id = org_id
        self.access: dict[str, float] = {}
        self.refresh: set[str] = set()
        self._key = secrets.token_bytes(32)

    def issue(self, *, with_refresh: bool) -> tuple[str, str | None]:
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
        self.access[token] = time.monotonic() + self.tunables.token_ttl_seconds
        refresh = None
        if with_refresh:
            refresh = f"5Aep861{secrets.token_urlsafe(60)}"
            self.refresh.add(refresh)
        return token, refresh

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        expires = self.access.get(token)
        if expires is None:
            return False
        if expires < time.monotonic():
            del self.access[token]
            return False
        return True

    def signature(self, identity: str, issued_at: str) -> str:
        digest = hmac.new(self._key, (identity + issued_at).encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def expire_all(self) -> int:
        count = len(self.access)
        self.access.clear()
        return count


class Emulator:
    """The whole in-memory org: schema, records, change events, tokens, cursors, counters, API limits."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tunables = config.tunables.copy()
        self.base_schema = Schema()
        if config.schema_file is not None:
            self.base_schema.extend(json.loads(config.schema_file.read_text(encoding="utf-8")))
        self.log = EventLog(self.tunables)
        self._build()

    def _build(self) -> None:
        self.store = Store(self.base_schema.copy(), self.config.username)
        self.store.set_multi_currency(self.tunables.multi_currency, self.config.currencies)
        self.events = ChangeEvents(self.store, self.log, self.tunables)
        self.tokens = Tokens(self.config, self.tunables, self.store.org_id)
        self.cursors: OrderedDict[str, Cursor] = OrderedDict()
        self.counters = Counters()
        self.limits = Limits()
        self.jobs: dict[str, IngestJob] = {}
        self.query_jobs: dict[str, QueryJob] = {}

    def reset(self) -> None:
        for job in self.jobs.values():
            job.cancel()
        for query_job in self.query_jobs.values():
            query_job.cancel()
        fresh = self.config.tunables.copy()
        for name in vars(fresh):
            setattr(self.tunables, name, getattr(fresh, name))
        self.log.clear()
        self._build()

    def add_cursor(self, rows: list[dict[str, Any]], version: str) -> str:
        locator = "01g" + secrets.token_hex(8)[:15]
        self.cursors[locator] = Cursor(rows, version)
        while len(self.cursors) > MAX_CURSORS:
            self.cursors.popitem(last=False)
        return locator

    def cursor(self, locator: str) -> Cursor:
        cursor = self.cursors.get(locator)
        if cursor is None:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        self.cursors.move_to_end(locator)
        return cursor
