"""Waiting for what another process, thread or server does: poll until a deadline, then say what was last seen.

An alert's state, a metric scraped from a running service, a consumer group's committed offsets, a
record another process writes, a child's log line or exit: a test awaits such things with
`wait_until` instead of asserting them once, right after an action or a fixed sleep.

    count = wait_until(lambda: committed(settings), 90, "40 committed records", until=lambda n: n >= 40)

On timeout it fails with an AssertionError naming what it waited for, the last value the probe
returned (shortened) and, when given, `context()` (say, the tail of a child's log).
"""

from __future__ import annotations

import reprlib
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_SHOW = reprlib.Repr()
_SHOW.maxlevel = 4
_SHOW.maxstring = _SHOW.maxother = 800
_SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxdict = _SHOW.maxset = 40


def wait_until(
    probe: Callable[[], T],
    timeout: float,
    what: str,
    *,
    until: Callable[[T], object] = bool,
    every: float = 0.5,
    context: Callable[[], str] | None = None,
) -> T:
    """Call `probe` every `every` seconds until `until(value)` holds (by default: the value is truthy).

    Returns that value. An exception from `probe` (a child that exited, say) ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(every)
    message = f"timed out after {timeout:g} s waiting for {what}; last seen: {_SHOW.repr(value)}"
    if context is not None:
        message += f"\n{context()}"
    raise AssertionError(message)
