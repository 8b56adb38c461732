"""Fault injection and request counters, driven by the admin API (devstack/logisense/admin.py).

A fault rule (`POST /__admin/faults`) matches requests by `resource` (a route template such as
`Account`, `Contact/Point`, or `Access/Login` for the token endpoint), `method` and `operation`
(list, paged, get, create, update, patch, delete, search, metadata, login); each left out matches
everything. A matching rule fires when its `probability` draw succeeds (default: always) and its
`count` is not used up (default: unlimited). When it fires it may add `latency_ms`, `hang` (hold the
request until the client gives up, the faults are cleared, or `hang_seconds` pass, then 504), and
answer `status` instead of the real handler; 429 and 503 answers carry `Retry-After: retry_after`
(seconds, default 1). A rule with neither status, latency nor hang answers 503. Rules are tried in
the order they were added; latency adds up, the first status wins.

Counters count every non-admin request once, after its answer, by (resource, method, operation,
status); a request whose client went away before the answer counts with status 499.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

RULE_KEYS = frozenset(
    {"resource", "method", "operation", "status", "count", "probability", "latency_ms", "hang", "retry_after", "seed"}
)


class FaultSpecError(ValueError):
    """The fault body is not a valid rule; the message says which key is wrong."""


@dataclass
class Fault:
    id: int
    resource: str | None = None
    method: str | None = None
    operation: str | None = None
    status: int | None = None
    count: int | None = None
    probability: float | None = None
    latency_ms: float = 0.0
    hang: bool = False
    retry_after: float | None = None
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def matches(self, resource: str, method: str, operation: str) -> bool:
        return (
            (self.resource in (None, "*") or self.resource.casefold() == resource.casefold())
            and (self.method is None or self.method == method)
            and (self.operation is None or self.operation == operation)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "method": self.method,
            "operation": self.operation,
            "status": self.status,
            "count": self.count,
            "probability": self.probability,
            "latency_ms": self.latency_ms,
            "hang": self.hang,
            "retry_after": self.retry_after,
            "fired": self.fired,
        }


@dataclass
class Verdict:
    """What the matching rules decided for one request."""

    latency: float = 0.0
    hang: bool = False
    status: int | None = None
    retry_after: float | None = None


class Faults:
    """The active rules, and the event that releases hanging requests."""

    def __init__(self, seed: int = 1, *, hang_seconds: float = 300.0, retry_after_default: float = 1.0) -> None:
        self.rules: list[Fault] = []
        self.seed = seed
        self.hang_seconds = hang_seconds
        self.retry_after_default = retry_after_default
        self._next_id = 1
        self._release = asyncio.Event()

    def add(self, body: Any) -> Fault:
        if not isinstance(body, dict):
            raise FaultSpecError('a fault is a JSON object, e.g. {"resource": "Account", "status": 503, "count": 3}')
        unknown = set(body) - RULE_KEYS
        if unknown:
            raise FaultSpecError(f"unknown fault keys {sorted(unknown)}; use {sorted(RULE_KEYS)}")
        status = spec_number(body, "status", int, 100, 599)
        count = spec_number(body, "count", int, 0, None)
        probability = spec_number(body, "probability", float, 0.0, 1.0)
        latency = spec_number(body, "latency_ms", float, 0.0, None) or 0.0
        retry_after = spec_number(body, "retry_after", float, 0.0, None)
        hang = body.get("hang", False)
        if not isinstance(hang, bool):
            raise FaultSpecError("'hang' must be true or false")
        for key in ("resource", "method", "operation"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise FaultSpecError(f"'{key}' must be a string")
        if status is None and not latency and not hang:
            status = 503
        seed = body.get("seed", self.seed * 7919 + self._next_id)
        fault = Fault(
            id=self._next_id,
            resource=body.get("resource"),
            method=body["method"].upper() if body.get("method") else None,
            operation=body.get("operation"),
            status=status,
            count=count,
            probability=probability,
            latency_ms=latency,
            hang=hang,
            retry_after=retry_after,
            rng=random.Random(seed),
        )
        self._next_id += 1
        self.rules.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        before = len(self.rules)
        self.rules = [rule for rule in self.rules if rule.id != fault_id]
        return len(self.rules) != before

    def clear(self) -> None:
        """Drop every rule and let hanging requests go."""
        self.rules = []
        self._release.set()
        self._release = asyncio.Event()

    def decide(self, resource: str, method: str, operation: str) -> Verdict | None:
        verdict: Verdict | None = None
        for rule in self.rules:
            if not rule.matches(resource, method, operation):
                continue
            if rule.count is not None and rule.count <= 0:
                continue
            if rule.probability is not None and rule.rng.random() >= rule.probability:
                continue
            if rule.count is not None:
                rule.count -= 1
            rule.fired += 1
            verdict = verdict or Verdict()
            verdict.latency += rule.latency_ms / 1000.0
            verdict.hang = verdict.hang or rule.hang
            if verdict.status is None and rule.status is not None:
                verdict.status = rule.status
                verdict.retry_after = rule.retry_after
            if verdict.status is not None or verdict.hang:
                break
        if verdict is not None and verdict.status in (429, 503) and verdict.retry_after is None:
            verdict.retry_after = self.retry_after_default
        return verdict

    async def hold(self) -> None:
        """Hang: wait until the faults are cleared or `hang_seconds` pass."""
        release = self._release
        try:
            await asyncio.wait_for(release.wait(), self.hang_seconds)
        except TimeoutError:
            return


def spec_number(body: dict[str, Any], key: str, kind: type, low: float, high: float | None) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not float(value).is_integer()):
        raise FaultSpecError(f"'{key}' must be a {'whole ' if kind is int else ''}number")
    if value < low or (high is not None and value > high):
        raise FaultSpecError(
            f"'{key}' must be between {low} and {high}" if high is not None else f"'{key}' must be >= {low}"
        )
    return kind(value)


class Counters:
    """Requests by (resource, method, operation, status)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str, int]] = Counter()

    def add(self, resource: str, method: str, operation: str, status: int) -> None:
        self._counts[(resource, method, operation, status)] += 1

    def clear(self) -> None:
        self._counts.clear()

    def to_json(self) -> dict[str, Any]:
        """`requests`: flat rows; `resources`: resource -> operation -> status -> count; `total`."""
        rows = [
            {"resource": r, "method": m, "operation": o, "status": s, "count": n}
            for (r, m, o, s), n in sorted(self._counts.items())
        ]
        nested: dict[str, dict[str, dict[str, int]]] = {}
        for (resource, _method, operation, status), n in self._counts.items():
            by_status = nested.setdefault(resource, {}).setdefault(operation, {})
            by_status[str(status)] = by_status.get(str(status), 0) + n
        return {"total": sum(self._counts.values()), "requests": rows, "resources": nested}
