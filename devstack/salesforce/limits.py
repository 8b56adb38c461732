"""The org's API allocations, each a Max and a usage counted over a rolling window, as `GET /limits` reports them.

Real orgs count usage over the last 24 hours; here over `window_seconds` (86,400 by default, settable through
`POST /__admin/limits` so a test can watch a window free). Usage is kept in per-second buckets
(`[second, count]` in a deque): spending is O(1) however many calls a benchmark makes, and the calls of one
second free together once `window_seconds` have passed since that second ended.

What spends what (the callers do the spending):
    DailyApiRequests              every authenticated REST request under /services/data/ (app.py's middleware);
                                  exhausted: 403 REQUEST_LIMIT_EXCEEDED "TotalRequests Limit exceeded."
    DailyBulkApiBatches           a Bulk API 2.0 ingest job: 1 per 10,000 uploaded records (at least 1), when
                                  closed (bulk.py); creating a job with nothing remaining is refused with a 403
    DailyBulkV2QueryJobs          1 per Bulk API 2.0 query job created (bulk_query.py); a 403 when exhausted
    DailyDeliveredPlatformEvents  1 per change event delivered to a subscriber (CometD connect replies,
                                  Pub/Sub FetchResponses); counted up to Max, the rest only as refused

`refused` counts, per allocation, what was turned away (requests, jobs) or delivered beyond Max (events).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from devstack.salesforce.base import ApiError

API_REQUESTS = "DailyApiRequests"
BULK_BATCHES = "DailyBulkApiBatches"
BULK_QUERY_JOBS = "DailyBulkV2QueryJobs"
DELIVERED_EVENTS = "DailyDeliveredPlatformEvents"
DEFAULTS: dict[str, int] = {
    API_REQUESTS: 100_000,
    BULK_BATCHES: 15_000,
    BULK_QUERY_JOBS: 10_000,
    DELIVERED_EVENTS: 50_000,
}
WINDOW_SECONDS = 86_400.0
RECORDS_PER_BATCH = 10_000  # Bulk API 2.0 counts an ingest job as one batch per 10,000 records


class LimitsError(ValueError):
    """A bad configuration: an unknown allocation name or a value of the wrong kind (the message names it)."""


def request_limit_exceeded(name: str) -> ApiError:
    """Salesforce's 403 for an exhausted allocation (the API request one reads "TotalRequests Limit exceeded.")."""
    label = "TotalRequests" if name == API_REQUESTS else name
    return ApiError(403, "REQUEST_LIMIT_EXCEEDED", f"{label} Limit exceeded.")


class Allocation:
    """One allocation: its Max and the per-second buckets of usage inside the window."""

    __slots__ = ("buckets", "max", "used")

    def __init__(self, maximum: int) -> None:
        self.max = maximum
        self.buckets: deque[list[int]] = deque()
        self.used = 0  # the sum of the buckets' counts

    def expire(self, now: float, window: float) -> None:
        """Drop the buckets whose second ended `window` or more seconds ago."""
        buckets = self.buckets
        while buckets and buckets[0][0] + 1 + window <= now:
            self.used -= buckets.popleft()[1]

    def add(self, second: int, count: int) -> None:
        buckets = self.buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += count
        else:
            buckets.append([second, count])
        self.used += count

    def replace(self, second: int, count: int) -> None:
        self.buckets.clear()
        self.used = 0
        if count:
            self.add(second, count)


class Limits:
    """Every allocation of the org; see the module docstring. `clock` is monotonic seconds (a test may fake it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.window_seconds = WINDOW_SECONDS
        self.allocations = {name: Allocation(maximum) for name, maximum in DEFAULTS.items()}
        self.refused = dict.fromkeys(DEFAULTS, 0)

    def reset(self) -> None:
        """Defaults again: every Max, the 24 h window, no usage, nothing refused."""
        self.window_seconds = WINDOW_SECONDS
        self.allocations = {name: Allocation(maximum) for name, maximum in DEFAULTS.items()}
        self.refused = dict.fromkeys(DEFAULTS, 0)

    def _current(self, name: str) -> tuple[Allocation, float]:
        allocation = self.allocations[name]
        now = self.clock()
        allocation.expire(now, self.window_seconds)
        return allocation, now

    def spend(self, name: str, n: int = 1) -> bool:
        """Spend `n` if that many remain (True); otherwise spend nothing, count a refusal and answer False."""
        allocation, now = self._current(name)
        if allocation.used + n > allocation.max:
            self.refused[name] += 1
            return False
        allocation.add(int(now), n)
        return True

    def consume(self, name: str, n: int) -> int:
        """Spend `n`, counting only up to Max (the rest as refused); how many were counted."""
        allocation, now = self._current(name)
        counted = max(0, min(n, allocation.max - allocation.used))
        if counted:
            allocation.add(int(now), counted)
        if counted < n:
            self.refused[name] += n - counted
        return counted

    def refuse(self, name: str) -> None:
        self.refused[name] += 1

    def used(self, name: str) -> int:
        return self._current(name)[0].used

    def maximum(self, name: str) -> int:
        return self.allocations[name].max

    def remaining(self, name: str) -> int:
        allocation, _ = self._current(name)
        return max(0, allocation.max - allocation.used)

    def usage_header(self) -> str:
        """The `Sforce-Limit-Info` value: `api-usage=<used>/<max>` of DailyApiRequests."""
        allocation, _ = self._current(API_REQUESTS)
        return f"api-usage={allocation.used}/{allocation.max}"

    def org_limits(self) -> dict[str, dict[str, int]]:
        """The body of `GET /services/data/vNN.N/limits`."""
        return {name: {"Max": self.maximum(name), "Remaining": self.remaining(name)} for name in self.allocations}

    def snapshot(self) -> dict[str, Any]:
        """The body of `GET /__admin/limits`."""
        return {
            "window_seconds": self.window_seconds,
            "limits": {
                name: {"max": self.maximum(name), "used": self.used(name), "remaining": self.remaining(name)}
                for name in self.allocations
            },
            "refused": dict(self.refused),
        }

    def configure(
        self,
        *,
        window_seconds: float | None = None,
        maximum: dict[str, int] | None = None,
        used: dict[str, int] | None = None,
    ) -> None:
        """Change the window, Maxes and usage; `used` replaces the window's usage with that many spent now.

        Everything is checked before anything changes; a LimitsError names the offending key.
        """
        if window_seconds is not None and (
            isinstance(window_seconds, bool) or not isinstance(window_seconds, int | float) or window_seconds <= 0
        ):
            raise LimitsError("window_seconds must be a number of seconds above 0")
        for key, values in (("max", maximum), ("used", used)):
            if values is None:
                continue
            if not isinstance(values, dict):
                raise LimitsError(f"{key} must be an object of allocation name -> count")
            for name, value in values.items():
                if name not in self.allocations:
                    raise LimitsError(f"{key}: unknown allocation {name!r}; known: {sorted(self.allocations)}")
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise LimitsError(f"{key}.{name} must be an integer of 0 or more")
        if window_seconds is not None:
            self.window_seconds = float(window_seconds)
        for name, value in (maximum or {}).items():
            self.allocations[name].max = value
        second = int(self.clock())
        for name, value in (used or {}).items():
            self.allocations[name].replace(second, value)
