"""The change-event contract of `sfls.changes` (the README's Listener section describes it for users).

Key: the Salesforce Account Id, so one partition (one syncer) owns an account, its contacts and its
opportunities (an OpportunityLineItem event is keyed by its opportunity's AccountId and names the
opportunity in `opportunity_id`).
Value: the JSON of ChangeEvent. Headers: entity, change_type, source, for routing without parsing.
`event_id` is stable across redelivery: derived from the replay id and the record id.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1


class Entity(StrEnum):
    ACCOUNT = "Account"
    CONTACT = "Contact"
    OPPORTUNITY = "Opportunity"
    OPPORTUNITY_LINE = "OpportunityLineItem"

    @property
    def is_opportunity(self) -> bool:
        """Opportunity and its line items: pushed to the account's price plan, not synced as account data."""
        return self in (Entity.OPPORTUNITY, Entity.OPPORTUNITY_LINE)


class ChangeType(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    UNDELETE = "UNDELETE"
    RESYNC = "RESYNC"


class Source(StrEnum):
    CDC = "cdc"
    GAP = "gap"
    OVERFLOW = "overflow"
    BACKFILL = "backfill"
    REPLAY = "replay"
    RECONCILE = "reconcile"  # `sfls reconcile --repair`: an account found drifted is resynced


class ChangeEvent(BaseModel):
    """One change to one Salesforce record that matters for billing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str
    entity: Entity
    change_type: ChangeType
    record_id: str = Field(min_length=15, max_length=18)
    account_id: str = Field(min_length=15, max_length=18)
    changed_fields: tuple[str, ...] = ()  # sObject field names, in name order
    fields: dict[str, Any] = Field(default_factory=dict)
    commit_timestamp: datetime
    transaction_key: str = ""
    sequence_number: int = 0
    replay_id: int | None = None
    source: Source = Source.CDC
    # The opportunity of an Opportunity or OpportunityLineItem event; absent from every other event's JSON,
    # so account and contact events read the same as before this field existed.
    opportunity_id: str | None = Field(default=None, min_length=15, max_length=18)

    @property
    def key(self) -> bytes:
        return self.account_id.encode()

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("entity", self.entity.value.encode()),
            ("change_type", self.change_type.value.encode()),
            ("source", self.source.value.encode()),
        ]

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude={"opportunity_id"} if self.opportunity_id is None else None).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ChangeEvent:
        return cls.model_validate_json(raw)


def make_event_id(origin: str, record_id: str) -> str:
    """A stable id from where the event came from (replay id, backfill run, ...) and the record."""
    return hashlib.sha256(f"{origin}:{record_id}".encode()).hexdigest()[:32]


def epoch_ms_to_datetime(value: int | float) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def resync_event(
    entity: Entity,
    record_id: str,
    account_id: str,
    source: Source,
    *,
    origin: str,
    committed_at: datetime,
    replay_id: int | None = None,
    transaction_key: str = "",
    sequence_number: int = 0,
    opportunity_id: str | None = None,
) -> ChangeEvent:
    """A RESYNC event: no field values; the syncer re-reads the record and its account."""
    return ChangeEvent(
        event_id=make_event_id(origin, record_id),
        entity=entity,
        change_type=ChangeType.RESYNC,
        record_id=record_id,
        account_id=account_id,
        commit_timestamp=committed_at,
        transaction_key=transaction_key,
        sequence_number=sequence_number,
        replay_id=replay_id,
        source=source,
        opportunity_id=opportunity_id,
    )


class RequestStatus(StrEnum):
    SUCCESS = "Success"
    FAILED = "Failed"


class RequestRecord(BaseModel):
    """One line of the request log (`sfls.requests`), like a row of the original Requests tab.

    The syncer writes one per account (or contact) sync; the importer one per entity and run; `sfls reconcile`
    one per run.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: str
    service: Literal["syncer", "importer", "listener", "opportunity", "reconcile"]
    kind: str  # e.g. "account_sync", "contact_sync", "import:package"
    status: RequestStatus
    key: str = ""  # the Salesforce account id, or the imported entity
    started_at: datetime
    duration_seconds: float = Field(ge=0)
    attempts: int = 1
    reason: str = ""
    counts: dict[str, int] = Field(default_factory=dict)
    event_ids: tuple[str, ...] = ()
    # The outcome of a replayed dead letter, written under the failed request's id (shared/deadletter.py
    # REPLAY_OF); absent from the JSON otherwise, so other records read the same as before this field existed.
    replayed: bool = False

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude=None if self.replayed else {"replayed"}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> RequestRecord:
        return cls.model_validate_json(raw)
