"""The reference cache: names to ids, and when it refreshes from LogiSense."""

from __future__ import annotations

import time
from typing import Any

import pytest

from services.syncer.references import References
from shared.errors import MappingError


class FakeLogisense:
    """Lists reference resources from a dict; counts the calls."""

    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {"BillGroup": [{"identity": 1, "name": "Bill Group 1st"}]}
        self.calls = 0

    async def list(self, resource: str) -> list[dict[str, Any]]:
        self.calls += 1
        return list(self.tables.get(resource, []))


async def test_missing_name_refreshes_sooner_than_the_max_age() -> None:
    """After a miss the cache reloads once miss_refresh_seconds passed, and then finds the new name."""
    source = FakeLogisense()
    refs = References(max_age_seconds=300, miss_refresh_seconds=10)
    await refs.load(source)
    assert refs("bill_group", "bill group 1st") == 1
    with pytest.raises(MappingError, match="Bill Group 'Bill Group 30th' does not exist in LogiSense"):
        refs("bill_group", "Bill Group 30th")
    source.tables["BillGroup"].append({"identity": 2, "name": "Bill Group 30th"})

    loads = refs.loads
    await refs.refresh_if_stale(source)
    assert refs.loads == loads  # too soon after the last load: no storm of reloads
    assert refs.loaded_at is not None
    refs.loaded_at = time.monotonic() - 11
    await refs.refresh_if_stale(source)
    assert refs.loads == loads + 1
    assert refs("bill_group", "Bill Group 30th") == 2
    assert not refs.missed


async def test_without_a_miss_the_cache_keeps_its_max_age() -> None:
    """With every name found, the cache is not reloaded before max_age_seconds."""
    source = FakeLogisense()
    refs = References(max_age_seconds=300, miss_refresh_seconds=10)
    await refs.load(source)
    refs.loaded_at = time.monotonic() - 60
    loads = refs.loads
    await refs.refresh_if_stale(source)
    assert refs.loads == loads
    refs.loaded_at = time.monotonic() - 301
    await refs.refresh_if_stale(source)
    assert refs.loads == loads + 1
