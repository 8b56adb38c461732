"""The pace of one process's calls to a LogiSense tenant: at most `logisense.rate_limit_per_second`, and none
while the tenant asked to wait (429 with Retry-After).

One Throttle per base URL per process (`throttle_for`), shared by every LogisenseClient of the process (the
syncer has two), whatever event loop or thread calls. Every HTTP attempt, token requests included, takes a
slot first (shared/logisense.py `_send`). Slots are spaced `(1 + JITTER_SECONDS) / rate` seconds apart (no
bursts): the tenant never sees more than `rate` requests in any second, even when the network and the event
loop bunch requests up by as much as JITTER_SECONDS (slots exactly `1 / rate` apart arrive `rate + 1` to a
second whenever the first of them is a little late). A 429 holds every caller of the process until
its Retry-After has passed, so the other requests of a batch wait instead of each spending a retry on
its own 429.

Metrics: `sfls_logisense_throttle_wait_seconds_total` (time calls waited for a slot or a hold),
`sfls_logisense_throttled_total` (429 answers), `sfls_logisense_rate_limit_per_second` (the setting).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge

WAIT_SECONDS = Counter(
    "sfls_logisense_throttle_wait_seconds_total",
    "Seconds LogiSense calls waited for the process's rate limit or a 429's Retry-After.",
)
THROTTLED = Counter("sfls_logisense_throttled_total", "LogiSense answers 429 (too many requests).")
RATE = Gauge("sfls_logisense_rate_limit_per_second", "The process's LogiSense rate limit (0: none).")
JITTER_SECONDS = 0.1  # how much closer together than they were sent requests may arrive, per second of them


def interval(rate: float) -> float:
    """Seconds between two slots at `rate` per second (0: no limit)."""
    return (1.0 + JITTER_SECONDS) / rate if rate > 0 else 0.0


class Throttle:
    """Spaced slots at `rate` per second (0: no limit) and a hold until a 429's Retry-After has passed."""

    def __init__(self, rate: float = 0.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval(rate)
        self._clock = clock
        self._lock = threading.Lock()
        self._next = float("-inf")  # the earliest time the next slot may start
        self._hold_until = float("-inf")

    def reserve(self) -> float:
        """Take the next slot; the seconds to wait before using it."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next, self._hold_until)
            if self._interval:
                self._next = slot + self._interval
            return slot - now

    def hold(self, seconds: float) -> None:
        """The tenant answered 429: no call of this process starts for `seconds`."""
        THROTTLED.inc()
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            WAIT_SECONDS.inc(wait)
            await asyncio.sleep(wait)


_THROTTLES: dict[str, Throttle] = {}
_REGISTRY = threading.Lock()


def throttle_for(base_url: str, rate: float) -> Throttle:
    """The process's Throttle for this tenant (made at the first call; the rate is the setting's)."""
    with _REGISTRY:
        found = _THROTTLES.get(base_url)
        if found is None or found._interval != interval(rate):
            found = _THROTTLES[base_url] = Throttle(rate)
            RATE.set(rate)
        return found
