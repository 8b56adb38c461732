"""Retry policy as data: how often, how long between tries, and what is never retried.

- Retried: TransientError (429 honouring Retry-After, 5xx, timeouts, connection errors).
- Never retried: PermanentError and everything else; those surface at once so the caller can
  dead-letter the event.
- AuthExpiredError is retried once immediately, after the client refreshed its token.
- A 429 (the remote system's pace, not a failure) costs no attempt while the call's waits for 429s add up to
  at most `throttle_seconds` (LogiSense: `logisense.throttle_wait_seconds`, shared/throttle.py); beyond
  that it counts like any transient failure.
- When attempts run out, the last TransientError is raised as RetriesExhaustedError, which is
  itself permanent: the event is dead-lettered with the attempt count and the last cause.

Backoff is exponential with full jitter (a uniform wait between 0 and the capped exponential ceiling);
a server's Retry-After wins when it is longer than the computed delay. Every wait-and-try-again in sfls
takes its delays from a RetryPolicy: LogiSense calls, the syncer's failed-batch pause, the listener's
client rebuilds and its resync, and a service waiting for its broker. A blocking client call that must
be retried within one deadline without any wait (the listener's transaction commit) goes through
`call_in_slices`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from shared.errors import AuthExpiredError, RetriesExhaustedError, TransientError

if TYPE_CHECKING:
    from shared.settings import RetrySettings

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; `max_attempts` counts the first try."""

    max_attempts: int = 8
    base_seconds: float = 0.5
    cap_seconds: float = 60.0
    throttle_seconds: float = 0.0  # total wait for 429 answers that costs no attempt
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryPolicy:
        """The policy a section of retry settings (`sync.retry`) describes."""
        return cls(
            max_attempts=settings.max_attempts, base_seconds=settings.base_seconds, cap_seconds=settings.cap_seconds
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.cap_seconds, self.base_seconds * (2 ** (attempt - 1)))
        computed = self.rng.uniform(0, ceiling)
        if retry_after is not None:
            return max(computed, min(retry_after, self.cap_seconds))
        return computed


OnRetry = Callable[[TransientError, int, float], None]


async def call_with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `operation` until it succeeds, fails permanently, or the policy's attempts run out."""
    attempt = 0
    first_failure: float | None = None
    auth_refreshed = False
    throttled = 0.0
    while True:
        attempt += 1
        try:
            return await operation()
        except AuthExpiredError as exc:
            now = time.time()
            first_failure = first_failure or now
            if auth_refreshed:
                raise RetriesExhaustedError(exc, attempt, first_failure, now) from exc
            auth_refreshed = True
            attempt -= 1  # the refresh retry is free: it is not the remote system failing
            if on_retry is not None:
                on_retry(exc, attempt, 0.0)
        except TransientError as exc:
            now = time.time()
            first_failure = first_failure or now
            wait = policy.delay(attempt, exc.retry_after)
            cost = max(wait, 0.1)  # a 429 asking for no wait still uses up the throttle allowance
            if exc.status == 429 and throttled + cost <= policy.throttle_seconds:
                throttled += cost
                attempt -= 1  # waiting out the remote system's pace is not a failed attempt
            elif attempt >= policy.max_attempts:
                raise RetriesExhaustedError(exc, attempt, first_failure, now) from exc
            if on_retry is not None:
                on_retry(exc, attempt, wait)
            await sleep(wait)


def call_in_slices(
    operation: Callable[[float], T],
    seconds: float,
    *,
    slice_seconds: float,
    retriable: Callable[[Exception], bool],
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call the blocking `operation(timeout)` in calls of at most `slice_seconds` until it returns.

    A retriable failure is called again at once while `seconds` have not passed; a failure that is not
    retriable, or any failure at the deadline, is raised. For a client call whose long wait can hide a
    state that a short call would report at once (the listener's transaction commit).
    """
    deadline = clock() + seconds
    while True:
        try:
            return operation(max(0.1, min(slice_seconds, deadline - clock())))
        except Exception as exc:
            if retriable(exc) and clock() < deadline:
                continue
            raise
