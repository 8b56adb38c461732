"""The LogiSense throttle's pacing, without a network (shared/throttle.py)."""

from __future__ import annotations

import pytest

from shared.throttle import JITTER_SECONDS, Throttle, throttle_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_slots_are_spaced_so_no_second_holds_more_than_the_rate_even_bunched_up() -> None:
    """At 4/s, 20 callers at once get slots 1.1 / 4 s apart: at most 4 in any second, even 0.1 s bunched up."""
    clock = Clock()
    throttle = Throttle(4.0, clock=clock)
    starts = [clock.now + throttle.reserve() for _ in range(20)]
    assert starts == sorted(starts)
    assert starts[0] == clock.now
    assert starts[-1] == pytest.approx(clock.now + 19 * (1 + JITTER_SECONDS) / 4)
    for end in starts:
        assert sum(1 for s in starts if end - 1 - JITTER_SECONDS < s <= end) <= 4


def test_no_rate_means_no_wait_and_a_429_holds_everyone() -> None:
    """Without a rate nothing waits; a 429 holds every caller until its Retry-After, then pacing resumes."""
    clock = Clock()
    throttle = Throttle(0.0, clock=clock)
    assert [throttle.reserve() for _ in range(50)] == [0.0] * 50
    throttle.hold(2.0)
    assert throttle.reserve() == 2.0
    assert throttle.reserve() == 2.0  # a second caller too: the hold is the process's, not the call's
    clock.now += 2.0
    assert throttle.reserve() == 0.0


def test_one_throttle_per_tenant_per_process() -> None:
    """Every client of one base URL shares a throttle; another rate setting makes a new one."""
    first = throttle_for("https://tenant-a.example", 5.0)
    assert throttle_for("https://tenant-a.example", 5.0) is first
    assert throttle_for("https://tenant-b.example", 5.0) is not first
    assert throttle_for("https://tenant-a.example", 10.0) is not first
