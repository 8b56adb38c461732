"""The Salesforce org's API allocations as sfls sees and spends them: one home for the budget.

Seen from two sources, both fed by shared/salesforce.py:
- the `Sforce-Limit-Info: api-usage=N/M` header of every REST response (a response hook on the client's
  requests session, so simple-salesforce's calls, Bulk API 2.0 and our own all report it): DailyApiRequests;
- `GET /services/data/vXX.X/limits`, read when a command starts (`refresh`), every `budget.poll_seconds` by
  the long-running services (`start_polling`), and while a call waits: every allocation of `budget.limits`.

Exported from every process that calls Salesforce: `sfls_salesforce_limit_{max,remaining,used}{limit}`, the
reserve sfls leaves in `sfls_salesforce_limit_reserve{limit}`, sfls's own calls in
`sfls_salesforce_api_calls_total{service,kind}`, and its waits in `sfls_salesforce_budget_paused{service}`,
`sfls_salesforce_budget_pauses_total{service,reason}` and `sfls_salesforce_budget_paused_seconds_total`.

The gate (`admit`) runs before every call. Its line is the reserve for bulk work (import, backfill,
reconcile) and deferrable work (the Requests tab writer), and the floor for essential work (listener, syncer,
quote to cash): an allocation at or below its line makes the call wait, reading /limits every
`min(budget.poll_seconds, 30)` s, until the rolling window frees. Where /limits cannot be read, the waiting call
goes ahead once per interval as a probe: its answer's header, or its REQUEST_LIMIT_EXCEEDED, says whether the
window freed. Essential and deferrable work wait as long as that takes (nothing is dead-lettered for budget);
bulk work waits at most `budget.max_pause_seconds`, then raises BudgetExhaustedError (the command exits 3).
A call Salesforce refuses with REQUEST_LIMIT_EXCEEDED marks its allocation spent and waits the same way, then
is repeated.
An allocation never seen yet does not hold anything up.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from prometheus_client import Counter, Gauge

from shared.errors import BudgetExhaustedError, SflsError, TransientError
from shared.settings import BudgetSettings

log = structlog.get_logger(__name__)

API_REQUESTS = "DailyApiRequests"
BULK_BATCHES = "DailyBulkApiBatches"
BULK_QUERY_JOBS = "DailyBulkV2QueryJobs"
PAUSED_POLL_CAP_SECONDS = 30.0
_USAGE = re.compile(r"(?:^|[,\s])api-usage=(\d+)/(\d+)")

LIMIT_MAX = Gauge("sfls_salesforce_limit_max", "The org's allocation, as Salesforce last reported it.", ["limit"])
LIMIT_REMAINING = Gauge(
    "sfls_salesforce_limit_remaining", "What the org has left of the allocation in its rolling window.", ["limit"]
)
LIMIT_USED = Gauge("sfls_salesforce_limit_used", "What every client of the org used of the allocation.", ["limit"])
LIMIT_RESERVE = Gauge(
    "sfls_salesforce_limit_reserve", "What sfls's bulk work leaves to the org's other integrations.", ["limit"]
)
API_CALLS = Counter("sfls_salesforce_api_calls_total", "Salesforce API calls sfls made.", ["service", "kind"])
PAUSED = Gauge("sfls_salesforce_budget_paused", "1 while a call of this process waits for budget.", ["service"])
PAUSES = Counter(
    "sfls_salesforce_budget_pauses_total",
    "Calls that waited for budget (reason reserve, floor or limit_exceeded).",
    ["service", "reason"],
)
PAUSED_SECONDS = Counter(
    "sfls_salesforce_budget_paused_seconds_total", "Seconds calls of this process waited for budget.", ["service"]
)


OnChange = Callable[[], None] | None  # told when a process starts or stops waiting (a Job pushes its metrics)


class Work(StrEnum):
    """Whose call it is: bulk work stops at the reserve, essential work at the floor."""

    BULK = "bulk"
    ESSENTIAL = "essential"
    # Stops at the reserve like bulk work but waits as long as it takes, never giving up: a long-running
    # service whose work can wait (the Requests tab writer: the request log keeps everything meanwhile).
    DEFERRABLE = "deferrable"


@dataclass(frozen=True)
class Allocation:
    name: str
    max: int
    remaining: int

    @property
    def used(self) -> int:
        return max(0, self.max - self.remaining)


def parse_usage(header: str | None) -> tuple[int, int] | None:
    """(used, max) from a `Sforce-Limit-Info` value such as `api-usage=18/15000, per-app-api-usage=...`."""
    found = _USAGE.search(header or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


class Budget:
    """The allocations one process knows, and the gate its Salesforce calls pass; thread-safe."""

    def __init__(
        self,
        settings: BudgetSettings | None = None,
        *,
        service: str = "sfls",
        work: Work = Work.ESSENTIAL,
        on_change: OnChange = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or BudgetSettings()
        self.service = service
        self.work = work
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._allocations: dict[str, Allocation] = {}
        self._read: Callable[[], Mapping[str, Any]] | None = None
        self._last_read = float("-inf")
        self._waiting = 0
        self._poller: threading.Thread | None = None
        PAUSED.labels(service).set(0)  # present from the start, so "not paused" is a 0 and not a missing series

    # ---- what Salesforce reports ---------------------------------------------------------
    def attach(self, read_limits: Callable[[], Mapping[str, Any]]) -> None:
        """The call that reads `/limits` (shared/salesforce.py `SalesforceRest.limits`, which is never gated)."""
        self._read = read_limits

    def observe_header(self, header: str | None) -> None:
        usage = parse_usage(header)
        if usage is not None:
            used, maximum = usage
            self._set(Allocation(API_REQUESTS, maximum, max(0, maximum - used)))

    def observe_limits(self, body: Mapping[str, Any]) -> None:
        for name in self.settings.limits:
            entry = body.get(name)
            if isinstance(entry, Mapping) and isinstance(entry.get("Max"), int):
                self._set(Allocation(name, int(entry["Max"]), max(0, int(entry.get("Remaining") or 0))))

    def exceeded(self, name: str = API_REQUESTS) -> None:
        """Salesforce refused a call with REQUEST_LIMIT_EXCEEDED: the allocation is spent, whatever we knew."""
        with self._lock:
            known = self._allocations.get(name)
        self._set(Allocation(name, known.max if known else 0, 0))

    def spent(self, name: str, amount: int = 1) -> None:
        """sfls spent `amount` of an allocation no response header reports (a Bulk API job's batches)."""
        with self._lock:
            known = self._allocations.get(name)
        if known is not None:
            self._set(Allocation(name, known.max, max(0, known.remaining - amount)))

    def allocation(self, name: str = API_REQUESTS) -> Allocation | None:
        with self._lock:
            return self._allocations.get(name)

    def _set(self, allocation: Allocation) -> None:
        with self._lock:
            self._allocations[allocation.name] = allocation
        if allocation.name in self.settings.limits or allocation.name == API_REQUESTS:
            LIMIT_MAX.labels(allocation.name).set(allocation.max)
            LIMIT_REMAINING.labels(allocation.name).set(allocation.remaining)
            LIMIT_USED.labels(allocation.name).set(allocation.used)
            LIMIT_RESERVE.labels(allocation.name).set(self.reserve(allocation))

    def count(self, kind: str) -> None:
        """One call of sfls's own, by kind (token, query, sobject, composite, describe, bulk, limits, other)."""
        API_CALLS.labels(self.service, kind).inc()

    # ---- reading /limits -----------------------------------------------------------------
    def refresh(self) -> bool:
        """Read `/limits` now; False (and what we knew stands) when Salesforce did not answer it."""
        read = self._read
        with self._lock:
            self._last_read = self._clock()
        if read is None:
            return False
        try:
            body = read()
        except SflsError as exc:
            log.info("salesforce_limits_unread", error=str(exc))
            return False
        self.observe_limits(body)
        return True

    def start_polling(self) -> None:
        """Read `/limits` now and then every `budget.poll_seconds` in a daemon thread, until `close`."""
        if self._poller is not None:
            return

        def poll() -> None:
            while not self._closed.is_set():
                self.refresh()
                self._closed.wait(self.settings.poll_seconds)

        self._poller = threading.Thread(target=poll, name="sfls-salesforce-limits", daemon=True)
        self._poller.start()

    def close(self) -> None:
        """Stop polling, and end any waiting call (it raises TransientError)."""
        self._closed.set()

    # ---- the gate ------------------------------------------------------------------------
    def _line(self, allocation: Allocation, work: Work) -> int:
        percent = self.settings.floor_percent if work is Work.ESSENTIAL else self.settings.reserve_percent
        return int(allocation.max * percent / 100)

    def reserve(self, allocation: Allocation) -> int:
        """What sfls leaves of `allocation` to the org's other integrations: bulk work waits at or below it."""
        return self._line(allocation, Work.BULK)

    def short(self, names: Iterable[str]) -> list[tuple[Allocation, int]]:
        """The allocations among `names` at or below this process's line, each with its line."""
        found = []
        for name in names:
            allocation = self.allocation(name)
            if allocation is not None:
                line = self._line(allocation, self.work)
                if allocation.remaining <= line:
                    found.append((allocation, line))
        return found

    def admit(self, names: Iterable[str] = (API_REQUESTS,), *, reason: str | None = None) -> None:
        """Return when every allocation of `names` is above this process's line; wait (see the module) until then."""
        wanted = tuple(names)
        short = self.short(wanted)
        if not short:
            return
        reason = reason or ("floor" if self.work is Work.ESSENTIAL else "reserve")
        started = self._clock()
        self._pause(short, reason)
        try:
            while short:
                waited = self._clock() - started
                if self.work is Work.BULK and waited >= self.settings.max_pause_seconds:
                    raise BudgetExhaustedError(self._exhausted_message(short, waited))
                interval = min(self.settings.poll_seconds, PAUSED_POLL_CAP_SECONDS)
                if self._clock() - self._last_read >= interval:
                    if not self.refresh() and waited > 0:
                        return  # /limits unreadable: this call is the probe; its answer's header tells
                    short = self.short(wanted)
                    continue
                sleep = interval - (self._clock() - self._last_read)
                if self.work is Work.BULK:
                    sleep = min(sleep, max(0.0, self.settings.max_pause_seconds - waited))
                if self._closed.wait(max(0.05, sleep)):
                    raise TransientError("Salesforce client closed while waiting for API budget")
                short = self.short(wanted)
        finally:
            self._resume(self._clock() - started)

    def _pause(self, short: list[tuple[Allocation, int]], reason: str) -> None:
        allocation, line = short[0]
        PAUSES.labels(self.service, reason).inc()
        with self._lock:
            self._waiting += 1
            first = self._waiting == 1
        if first:
            PAUSED.labels(self.service).set(1)
            log.warning(
                "salesforce_budget_paused",
                limit=allocation.name,
                remaining=allocation.remaining,
                max=allocation.max,
                line=line,
                work=str(self.work),
                reason=reason,
                resumes="when the org's rolling 24-hour window frees",
            )
            self._changed()

    def _resume(self, seconds: float) -> None:
        PAUSED_SECONDS.labels(self.service).inc(seconds)
        with self._lock:
            self._waiting -= 1
            last = self._waiting == 0
        if last:
            PAUSED.labels(self.service).set(0)
            log.info("salesforce_budget_resumed", paused_seconds=round(seconds, 1), work=str(self.work))
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:  # a failed metrics push must not stop the work it reports on
                log.warning("budget_change_report_failed", exc_info=True)

    def _exhausted_message(self, short: list[tuple[Allocation, int]], waited: float) -> str:
        allocation, line = short[0]
        return (
            f"Salesforce API budget: {allocation.name} has {allocation.remaining} of {allocation.max} left, at or "
            f"below the reserve of {line} kept for the org's other integrations "
            f"(SFLS_BUDGET__RESERVE_PERCENT={self.settings.reserve_percent:g}); waited {waited:.0f} s "
            f"(SFLS_BUDGET__MAX_PAUSE_SECONDS={self.settings.max_pause_seconds:g}) for the org's rolling "
            "24-hour window to free"
        )
