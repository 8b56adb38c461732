"""Retry policy: backoff bounds, Retry-After, what is retried and what is not."""

from __future__ import annotations

import random

import pytest

from shared.errors import AuthExpiredError, RejectedError, RetriesExhaustedError, TransientError
from shared.retry import RetryPolicy, call_in_slices, call_with_retries


def test_delay_grows_exponentially_within_the_cap() -> None:
    """Full-jitter delays stay under base * 2^(n-1) and never above the cap."""
    policy = RetryPolicy(max_attempts=10, base_seconds=0.5, cap_seconds=4, rng=random.Random(7))
    for attempt in range(1, 10):
        ceiling = min(4, 0.5 * 2 ** (attempt - 1))
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(0 <= d <= ceiling for d in delays)
    assert max(policy.delay(9) for _ in range(200)) > 2  # jitter spreads across the range


def test_retry_after_is_honoured_but_capped() -> None:
    """A server's Retry-After is waited for, up to the cap."""
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=30, rng=random.Random(1))
    assert policy.delay(1, retry_after=7) == 7
    assert policy.delay(1, retry_after=600) == 30


async def test_transient_errors_are_retried_until_success() -> None:
    """Two 503s then success: three calls, two sleeps with the computed delays."""
    calls: list[int] = []
    slept: list[float] = []

    async def operation() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("503", status=503)
        return "ok"

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    result = await call_with_retries(operation, RetryPolicy(max_attempts=5, base_seconds=0.01), sleep=fake_sleep)
    assert result == "ok"
    assert len(calls) == 3
    assert len(slept) == 2


async def test_permanent_errors_are_not_retried() -> None:
    """A validation error surfaces after one call."""
    calls: list[int] = []

    async def operation() -> None:
        calls.append(1)
        raise RejectedError("bad field", status=400)

    with pytest.raises(RejectedError):
        await call_with_retries(operation, RetryPolicy(max_attempts=5))
    assert calls == [1]


async def test_exhausted_budget_reports_attempts() -> None:
    """When attempts run out the error says how many there were and keeps the last cause."""

    async def operation() -> None:
        raise TransientError("429", status=429, retry_after=0)

    async def no_sleep(_: float) -> None:
        return None

    with pytest.raises(RetriesExhaustedError) as info:
        await call_with_retries(operation, RetryPolicy(max_attempts=4, base_seconds=0), sleep=no_sleep)
    assert info.value.attempts == 4
    assert info.value.status == 429
    assert info.value.first_failure <= info.value.last_failure


async def test_auth_expiry_is_retried_once_for_free() -> None:
    """One 401 costs no attempt; a second consecutive 401 gives up."""
    outcomes = [AuthExpiredError("401"), "ok"]

    async def operation() -> str:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert await call_with_retries(operation, RetryPolicy(max_attempts=1)) == "ok"

    async def always_401() -> None:
        raise AuthExpiredError("401", status=401)

    with pytest.raises(RetriesExhaustedError):
        await call_with_retries(always_401, RetryPolicy(max_attempts=3))


class _Clock:
    """A monotonic clock that the operation under test advances."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_call_in_slices_retries_retriable_failures_in_short_calls_until_it_succeeds() -> None:
    """Retriable failures are called again at once, each call given at most the slice."""
    clock = _Clock()
    timeouts: list[float] = []

    def commit(timeout: float) -> str:
        timeouts.append(timeout)
        clock.now += timeout
        if len(timeouts) < 3:
            raise TimeoutError("still delivering")
        return "committed"

    result = call_in_slices(
        commit, 10.0, slice_seconds=1.0, retriable=lambda e: isinstance(e, TimeoutError), clock=clock
    )
    assert result == "committed"
    assert timeouts == [1.0, 1.0, 1.0]


def test_call_in_slices_raises_at_the_deadline_and_at_once_when_not_retriable() -> None:
    """At the deadline the last retriable failure is raised; a failure that is not retriable is never repeated."""
    clock = _Clock()
    calls: list[float] = []

    def slow(timeout: float) -> None:
        calls.append(timeout)
        clock.now += timeout
        raise TimeoutError("still delivering")

    with pytest.raises(TimeoutError):
        call_in_slices(slow, 2.5, slice_seconds=1.0, retriable=lambda e: isinstance(e, TimeoutError), clock=clock)
    assert calls == [1.0, 1.0, 0.5]

    def refused(_timeout: float) -> None:
        calls.append(-1)
        raise ValueError("fenced")

    calls.clear()
    with pytest.raises(ValueError, match="fenced"):
        call_in_slices(refused, 10.0, slice_seconds=1.0, retriable=lambda e: isinstance(e, TimeoutError), clock=clock)
    assert calls == [-1]


async def test_429s_cost_no_attempt_within_the_throttle_wait() -> None:
    """Waiting out 429s costs no attempt until their waits add up to more than `throttle_seconds`."""
    answers = [TransientError("429", status=429, retry_after=1.0)] * 5 + [TransientError("503", status=503)]
    slept: list[float] = []

    async def operation() -> str:
        if answers:
            raise answers.pop(0)
        return "done"

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(max_attempts=2, base_seconds=0, cap_seconds=10, throttle_seconds=5.0)
    assert await call_with_retries(operation, policy, sleep=sleep) == "done"
    assert slept[:5] == [1.0] * 5  # five free 429 waits, each the server's Retry-After, then one 503 retry

    answers[:] = [TransientError("429", status=429, retry_after=1.0)] * 10
    with pytest.raises(RetriesExhaustedError) as info:
        await call_with_retries(operation, policy, sleep=sleep)
    assert info.value.attempts == 2  # five free waits (5 s), then the sixth and seventh 429 count
    assert len(answers) == 3
