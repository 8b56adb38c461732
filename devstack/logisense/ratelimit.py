"""A requests-per-second limit on every non-admin request, set through `POST /__admin/rate-limit`.

Off by default. With `{"requests_per_second": N, "retry_after": S}` on, a request arriving when the
last second `(now-1, now]` already holds N accepted requests is answered 429 with `Retry-After: S`
(default 1) before the handler runs; the token endpoint counts too. `null` or 0 turns it off. Each
`POST` starts the window and the counters afresh: `accepted` (requests that passed the limit),
`refused` (the limit's 429s) and `peak` (the most accepted requests in any sliding 1-second window
`(t-1, t]`). `DELETE /__admin/rate-limit/counters` zeroes the counters only: requests accepted just
before still hold their place in the window, but `peak` counts only those accepted since. While the
limit is off nothing is counted.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from devstack.logisense.faults import FaultSpecError, spec_number

WINDOW_SECONDS = 1.0
LIMIT_KEYS = frozenset({"requests_per_second", "retry_after"})


class RateLimit:
    """The limit, a deque of accepted timestamps trimmed to the last second, and its counters."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.requests_per_second: int | None = None
        self.retry_after = 1.0
        self.accepted = 0
        self.refused = 0
        self.peak = 0
        self._window: deque[float] = deque()
        self._uncounted = 0  # the oldest entries of _window, accepted before the counters were cleared

    def configure(self, body: Any) -> None:
        """Set (or, with null or 0, turn off) the limit from an admin body; FaultSpecError names a bad key."""
        if not isinstance(body, dict):
            raise FaultSpecError('send {"requests_per_second": 20, "retry_after": 1} (null or 0 turns it off)')
        unknown = set(body) - LIMIT_KEYS
        if unknown:
            raise FaultSpecError(f"unknown rate-limit keys {sorted(unknown)}; use {sorted(LIMIT_KEYS)}")
        if "requests_per_second" not in body:
            raise FaultSpecError("'requests_per_second' is required (null or 0 turns the limit off)")
        limit = spec_number(body, "requests_per_second", int, 0, None)
        retry_after = spec_number(body, "retry_after", float, 0.0, None)
        self.requests_per_second = limit or None
        self.retry_after = 1.0 if retry_after is None else retry_after
        self._window.clear()
        self.clear_counters()

    def reset(self) -> None:
        """Off, with an empty window and zero counters."""
        self.configure({"requests_per_second": None})

    def clear_counters(self) -> None:
        """Zero accepted, refused and peak; the window (what the limit enforces) stays."""
        self.accepted = self.refused = self.peak = 0
        self._uncounted = len(self._window)

    def admit(self) -> bool:
        """True if this request may go on now (and count it); False if the limit refuses it."""
        limit = self.requests_per_second
        if limit is None:
            return True
        now = self._clock()
        window = self._window
        oldest = now - WINDOW_SECONDS
        while window and window[0] <= oldest:
            window.popleft()
            self._uncounted = max(self._uncounted - 1, 0)
        if len(window) >= limit:
            self.refused += 1
            return False
        window.append(now)
        self.accepted += 1
        self.peak = max(self.peak, len(window) - self._uncounted)
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_per_second": self.requests_per_second,
            "retry_after": self.retry_after,
            "accepted": self.accepted,
            "refused": self.refused,
            "peak": self.peak,
        }
