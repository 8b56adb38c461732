"""The request log (`sfls.requests`): writing it and reading it back for `sfls requests`.

`sfls opportunity push` writes one record per push (kind `opportunity_push`). The syncer writes one
record per LogiSense request attempt (kind `POST Account`, `PUT Contact`,
...; status Success or Failed, duration, reason) and one per account sync (kind `account_sync`,
with the events it answered and the writes it made), keyed by the Salesforce account id. That is
the original package's Requests tab with its Request Error Logs, as a topic.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer
from pydantic import ValidationError as PydanticValidationError

from shared import kafka
from shared.events import RequestRecord, RequestStatus
from shared.kafka_reader import read_to_end
from shared.settings import KafkaSettings


class RequestLog:
    """Produces request records without waiting; the consume loop flushes before it commits."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self.written = 0

    def write(self, record: RequestRecord) -> None:
        kafka.produce(self._producer, self._topic, record.key.encode() or None, record.to_bytes())
        self._producer.poll(0)
        self.written += 1

    def request(
        self,
        *,
        method: str,
        resource: str,
        status: int | None,
        duration_seconds: float,
        error: str | None,
        attempt: int,
        key: str,
    ) -> None:
        """One LogiSense request attempt."""
        ok = error is None and status is not None and status < 400
        now = datetime.now(UTC)
        self.write(
            RequestRecord(
                request_id=uuid.uuid4().hex,
                service="syncer",
                kind=f"{method} {resource}",
                status=RequestStatus.SUCCESS if ok else RequestStatus.FAILED,
                key=key,
                started_at=now - timedelta(seconds=duration_seconds),
                duration_seconds=max(0.0, duration_seconds),
                attempts=attempt,
                reason="" if ok else (error or f"HTTP {status}"),
                counts={"http_status": status} if status is not None else {},
            )
        )


def recent(
    settings: KafkaSettings,
    topic: str,
    *,
    limit: int = 50,
    status: str | None = None,
    key: str | None = None,
    kind: str | None = None,
) -> list[RequestRecord]:
    """The most recent request records (newest first) that match the filters."""
    filtered = bool(status or key or kind)
    per_partition = max(limit * 20, 5000) if filtered else limit
    found: list[RequestRecord] = []
    for message in read_to_end(settings, topic, tail=per_partition):
        try:
            record = RequestRecord.from_bytes(message.value() or b"")
        except PydanticValidationError:
            continue
        if status and record.status.value.casefold() != status.casefold():
            continue
        if key and record.key != key:
            continue
        if kind and kind.casefold() not in record.kind.casefold():
            continue
        found.append(record)
    found.sort(key=lambda r: r.started_at, reverse=True)
    return found[:limit]


def as_row(record: RequestRecord) -> dict[str, Any]:
    return {
        "started_at": record.started_at.isoformat(timespec="seconds"),
        "service": record.service,
        "kind": record.kind,
        "key": record.key,
        "status": record.status.value,
        "duration_ms": round(record.duration_seconds * 1000, 1),
        "attempts": record.attempts,
        "reason": record.reason,
    }
