"""What the listener's pipeline reads: a checked CDC message, the error for one that is not, and a Pub/Sub event.

Both transports deliver the CometD shape to services/listener/normalize.py: CometD natively, the Pub/Sub API
through `Decodable.to_message` (services/listener/pubsub/events.py), which decodes in the pipeline's thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.errors import MalformedMessageError
from shared.events import Entity, epoch_ms_to_datetime

HEADER = "ChangeEventHeader"


class MalformedCdcError(MalformedMessageError):
    """A CDC message that does not have the expected shape; `reason` is a short label.

    `position` is the message's channel and replay id when they could be read despite the defect, and
    `opaque_replay_id` its Pub/Sub replay id (base64), which the checkpoint moves to.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        position: tuple[str, int] | None = None,
        opaque_replay_id: str | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.position = position
        self.opaque_replay_id = opaque_replay_id


class Decodable:
    """A received event that is not yet a CDC message (a Pub/Sub event: Avro payload and its schema).

    A base class rather than a Protocol: `parse` asks `isinstance` of every message, and a runtime-checkable
    Protocol costs a scan of its attributes each time.
    """

    __slots__ = ()

    @property
    def raw(self) -> bytes:
        raise NotImplementedError

    def to_message(self) -> Mapping[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class CdcMessage:
    """A CDC message whose shape has been checked."""

    channel: str
    replay_id: int
    entity: Entity
    change_type: str  # the raw CDC changeType, GAP_* included
    record_ids: tuple[str, ...]
    commit_timestamp: int  # epoch milliseconds
    transaction_key: str = ""
    sequence_number: int = 0
    change_origin: str = ""
    changed_fields: tuple[str, ...] = ()
    body: Mapping[str, Any] = field(default_factory=dict)
    opaque_replay_id: str | None = None  # Pub/Sub: the replay id itself (base64); CometD: None

    @property
    def committed_at(self) -> datetime:
        return epoch_ms_to_datetime(self.commit_timestamp)
