"""What the consume loop of services/syncer/consume.py hands its process step and its telemetry: the result of a
batch, what it needs of a batch, and the hooks metrics hang off (services/syncer/metrics.py,
services/requests_tab/metrics.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from services.syncer.batch import Received
from shared.deadletter import Failure


@dataclass
class BatchResult:
    """What processing a batch produced: the accounts that failed, with why."""

    failures: dict[str, Failure] = field(default_factory=dict)
    record_failures: list[tuple[Received, Failure]] = field(default_factory=list)  # single records (opportunities)
    synced_accounts: int = 0
    skipped_accounts: int = 0
    stats: dict[str, int] = field(default_factory=dict)


class Batch(Protocol):
    """What the loop needs of a batch: its size and what its log lines say of it."""

    @property
    def size(self) -> int: ...

    def summary(self) -> dict[str, int]: ...


B_contra = TypeVar("B_contra", bound=Batch, contravariant=True)


class BatchHooks(Protocol[B_contra]):
    """Telemetry hangs off these; the loop itself stays free of metrics and log noise."""

    def batch_started(self, batch: B_contra) -> None: ...

    def batch_finished(self, batch: B_contra, result: BatchResult, dead_letters: int, seconds: float) -> None: ...

    def batch_failed(self, batch: B_contra, error: BaseException) -> None: ...

    def lag(self, topic: str, partition: int, lag: int) -> None: ...

    def retry_pause(self, seconds: float) -> None: ...

    def late_commit(self) -> None: ...


class NoHooks:
    def batch_started(self, batch: Batch) -> None:
        return

    def batch_finished(self, batch: Batch, result: BatchResult, dead_letters: int, seconds: float) -> None:
        return

    def batch_failed(self, batch: Batch, error: BaseException) -> None:
        return

    def lag(self, topic: str, partition: int, lag: int) -> None:
        return

    def retry_pause(self, seconds: float) -> None:
        return

    def late_commit(self) -> None:
        return
