"""The budget's pure logic (shared/budget.py): what it reads, where its lines are, how a call waits.

The waits run against a fake clock and a fake `/limits` reader; what the real client does with a real
(emulated) org is tested in tests/services/budget/.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from shared.budget import API_REQUESTS, BULK_BATCHES, Budget, Work, parse_usage
from shared.errors import BudgetExhaustedError, PermanentError, TransientError
from shared.settings import BudgetSettings


class FakeOrg:
    """A `/limits` reader whose answers a test scripts, on a clock that moves only when the budget waits."""

    def __init__(self, remaining: list[int], maximum: int = 1000) -> None:
        self.remaining = remaining
        self.max = maximum
        self.now = 0.0
        self.reads = 0

    def clock(self) -> float:
        return self.now

    def read(self) -> dict[str, Any]:
        self.reads += 1
        left = self.remaining.pop(0) if len(self.remaining) > 1 else self.remaining[0]
        return {API_REQUESTS: {"Max": self.max, "Remaining": left}, BULK_BATCHES: {"Max": 100, "Remaining": 90}}


class Ticking(threading.Event):
    """The budget waits on its closed event: this one moves the fake clock instead of sleeping."""

    def __init__(self, org: FakeOrg) -> None:
        super().__init__()
        self.org = org

    def wait(self, timeout: float | None = None) -> bool:
        self.org.now += timeout or 0.0
        return self.is_set()


def budget_for(org: FakeOrg, work: Work, **settings: Any) -> Budget:
    budget = Budget(BudgetSettings(**settings), service="test", work=work, clock=org.clock)
    budget.attach(org.read)
    budget._closed = Ticking(org)
    return budget


def test_the_header_and_limits_are_read() -> None:
    """`api-usage=N/M` and /limits both land; other allocations come from /limits only."""
    assert parse_usage("api-usage=18/15000") == (18, 15000)
    assert parse_usage("per-app-api-usage=2/100(appName=x), api-usage=7/50") == (7, 50)
    assert parse_usage("per-app-api-usage=2/100(appName=x)") is None
    assert parse_usage(None) is None
    budget = Budget()
    budget.observe_header("api-usage=40/100")
    found = budget.allocation(API_REQUESTS)
    assert found is not None
    assert (found.max, found.remaining, found.used) == (100, 60, 40)
    budget.observe_limits({BULK_BATCHES: {"Max": 15000, "Remaining": 14000}, "Other": {"Max": 5, "Remaining": 5}})
    bulk = budget.allocation(BULK_BATCHES)
    assert bulk is not None
    assert bulk.remaining == 14000
    assert budget.allocation("Other") is None  # not one of budget.limits
    budget.spent(BULK_BATCHES, 3)
    bulk = budget.allocation(BULK_BATCHES)
    assert bulk is not None
    assert bulk.remaining == 13997


def test_lines_bulk_stops_at_the_reserve_essential_at_the_floor() -> None:
    """At 150 of 1000 left, bulk work (reserve 20 %) is short and essential work (floor 5 %) is not."""
    bulk, essential = Budget(work=Work.BULK), Budget(work=Work.ESSENTIAL)
    for budget in (bulk, essential):
        budget.observe_header("api-usage=850/1000")
    assert [(a.name, line) for a, line in bulk.short([API_REQUESTS])] == [(API_REQUESTS, 200)]
    assert essential.short([API_REQUESTS]) == []
    essential.observe_header("api-usage=950/1000")
    assert [line for _, line in essential.short([API_REQUESTS])] == [50]  # at the line is short
    assert Budget().short([BULK_BATCHES]) == []  # never seen: nothing is held up


def test_bulk_work_waits_at_the_reserve_and_resumes_when_the_window_frees() -> None:
    """Below the reserve the call waits, reading /limits every poll, and goes on once the window freed."""
    org = FakeOrg(remaining=[100, 150, 150, 900])
    budget = budget_for(org, Work.BULK, poll_seconds=10)
    changes: list[str] = []
    budget._on_change = lambda: changes.append("changed")
    budget.observe_header("api-usage=900/1000")
    budget.admit()
    assert org.reads == 4  # 100 and 150, 150 (at or below the 200 reserve), then 900
    assert org.now == pytest.approx(30.0)  # read at 0 s, then every 10 s
    assert changes == ["changed", "changed"]  # paused, resumed


def test_bulk_work_gives_up_after_max_pause_seconds() -> None:
    """A window that does not free within budget.max_pause_seconds ends bulk work with a message to act on."""
    org = FakeOrg(remaining=[10])
    budget = budget_for(org, Work.BULK, poll_seconds=60, max_pause_seconds=100)
    budget.observe_header("api-usage=990/1000")
    with pytest.raises(BudgetExhaustedError) as info:
        budget.admit()
    message = str(info.value)
    assert "DailyApiRequests has 10 of 1000 left" in message
    assert "SFLS_BUDGET__RESERVE_PERCENT=20" in message
    assert "SFLS_BUDGET__MAX_PAUSE_SECONDS=100" in message
    assert org.now == pytest.approx(100.0)
    assert org.reads == 4  # at 0, 30, 60 and 90 s: a paused call reads at least every 30 s


def test_essential_work_waits_as_long_as_it_takes() -> None:
    """Essential work never gives up for budget: it waits past max_pause_seconds until the floor is cleared."""
    org = FakeOrg(remaining=[0] * 20 + [500])
    budget = budget_for(org, Work.ESSENTIAL, poll_seconds=30, max_pause_seconds=60)
    budget.exceeded()  # REQUEST_LIMIT_EXCEEDED with nothing known: spent
    budget.admit(reason="limit_exceeded")
    assert org.now == pytest.approx(600.0)
    assert org.reads == 21


def test_a_closed_client_ends_the_wait() -> None:
    """Closing the client (a stopping service) ends a waiting call with a TransientError, not a hang."""
    org = FakeOrg(remaining=[0])
    budget = budget_for(org, Work.ESSENTIAL)
    budget.observe_header("api-usage=1000/1000")
    budget.close()
    with pytest.raises(TransientError, match="closed while waiting"):
        budget.admit()


def test_floor_above_reserve_is_refused() -> None:
    """The floor is below the reserve by definition; the error names both settings."""
    with pytest.raises(ValueError, match="floor_percent"):
        BudgetSettings(reserve_percent=10, floor_percent=15)


def test_without_limits_a_waiting_call_probes_once_per_interval() -> None:
    """/limits unreadable (no View Setup permission): after one interval the call goes ahead as the probe."""
    org = FakeOrg(remaining=[0])
    budget = budget_for(org, Work.ESSENTIAL, poll_seconds=10)

    def refused() -> dict[str, Any]:
        org.reads += 1
        raise PermanentError("Salesforce read limits failed: INSUFFICIENT_ACCESS")

    budget.attach(refused)
    budget.observe_header("api-usage=1000/1000")
    budget.admit()
    assert org.now == pytest.approx(10.0)
    assert org.reads == 2  # at 0 s (then a wait), at 10 s (then the probe)
