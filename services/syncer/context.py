"""The state of one batch's delivery: made by each `Deliverer.deliver()` call, passed to its writers, dropped after.

Nothing here outlives a batch, so two batches (in sequence or overlapping) never see each other's
decisions (services/syncer/deliver.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from services.syncer.lookups import PrefetchedContacts
from services.syncer.snapshot import Snapshot
from shared.errors import PermanentError
from shared.mapping import MappedAccount


@dataclass
class DeliveryReport:
    """Per batch: which accounts failed and what was written."""

    failures: dict[str, PermanentError] = field(default_factory=dict)  # 15-char account id -> error
    synced: set[str] = field(default_factory=set)
    logisense_ids: dict[str, int] = field(default_factory=dict)  # 15-char id -> LogiSense id, accounts upserted
    pulled_in: set[str] = field(default_factory=set)  # dependencies synced although not in the batch
    present: set[str] = field(default_factory=set)  # ensure-only accounts LogiSense already had: not written
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to the write counter `name`."""
        self.counts[name] = self.counts.get(name, 0) + n


@dataclass
class BatchContext:
    """Everything one deliver() call reads and decides; made fresh for each batch and dropped after it."""

    snapshot: Snapshot
    report: DeliveryReport
    semaphore: asyncio.Semaphore  # at most `sync.concurrency` accounts written at once
    mapped: dict[str, MappedAccount] = field(default_factory=dict)  # 15-char account id -> LogiSense body
    known: dict[str, dict[str, Any]] = field(default_factory=dict)  # 15-char account id -> LogiSense account
    contacts: PrefetchedContacts = field(default_factory=PrefetchedContacts)
    waits_for: dict[str, tuple[str, ...]] = field(default_factory=dict)  # account -> accounts it waits for
    ls_ids: dict[str, asyncio.Future[int]] = field(default_factory=dict)  # account -> its LogiSense id, once set
