"""Dead letters: the original record plus headers that say why it failed.

A dead-letter record keeps the original key, value and headers, and adds `sfls.error.*` and
`sfls.original.*` headers in the spirit of Kafka Connect's `__connect.errors.*`: error class,
message, HTTP status, response excerpt, attempts, first and last failure time, and the
original topic/partition/offset. Dead-letter topics are the error log: `sfls dlq` reads them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message
from prometheus_client import Counter

from shared.errors import PermanentError, TransientError

HEADER_PREFIX = "sfls."
ERROR_CLASS = "sfls.error.class"
ERROR_MESSAGE = "sfls.error.message"
ERROR_STATUS = "sfls.error.http_status"
ERROR_RESPONSE = "sfls.error.response"
ERROR_ATTEMPTS = "sfls.error.attempts"
ERROR_FIRST = "sfls.error.first_failure"
ERROR_LAST = "sfls.error.last_failure"
ERROR_SERVICE = "sfls.error.service"
# The request-log record (shared/events.py RequestRecord.request_id) of the failed sync: the Requests tab's
# parent of this dead letter's error log (services/requests_tab/records.py).
ERROR_REQUEST = "sfls.error.request_id"
ORIGINAL_TOPIC = "sfls.original.topic"
ORIGINAL_PARTITION = "sfls.original.partition"
ORIGINAL_OFFSET = "sfls.original.offset"
REPLAYED_AT = "sfls.replayed_at"
# Added by `sfls dlq replay`: the request whose failure is replayed, so the syncer writes the replay's outcome
# under the same request id (the admin sees that request turn from Failed into Success).
REPLAY_OF = "sfls.replay.request_id"
MAX_TEXT = 2000

DEAD_LETTERS = Counter(
    "sfls_dead_letters_total", "Records written to a dead-letter topic.", ["service", "topic", "error_class"]
)

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Failure:
    """Why a record could not be processed, with enough context to fix and replay it."""

    error_class: str
    message: str
    http_status: int | None = None
    response_excerpt: str = ""
    attempts: int = 1
    first_failure: datetime | None = None
    last_failure: datetime | None = None
    request_id: str = ""  # the request-log record of the failed sync, when there is one

    @classmethod
    def from_exception(cls, exc: BaseException, *, attempts: int = 1, first_failure: datetime | None = None) -> Failure:
        now = datetime.now(UTC)
        status = exc.status if isinstance(exc, PermanentError | TransientError) else None
        excerpt = exc.response_excerpt if isinstance(exc, PermanentError) else ""
        from shared.errors import RetriesExhaustedError

        if isinstance(exc, RetriesExhaustedError):
            attempts = exc.attempts
            first_failure = datetime.fromtimestamp(exc.first_failure, UTC)
            now = datetime.fromtimestamp(exc.last_failure, UTC)
            error_class = type(exc.last).__name__
        else:
            error_class = type(exc).__name__
        return cls(
            error_class=error_class,
            message=str(exc)[:MAX_TEXT],
            http_status=status,
            response_excerpt=excerpt[:MAX_TEXT],
            attempts=attempts,
            first_failure=first_failure or now,
            last_failure=now,
        )


@dataclass(frozen=True)
class Origin:
    """Where the failed record came from (absent for records that never were in Kafka)."""

    topic: str
    partition: int
    offset: int


def dead_letter_headers(
    failure: Failure,
    *,
    service: str,
    origin: Origin | None = None,
    original: Iterable[tuple[str, bytes | str | None]] = (),
) -> Headers:
    """Original headers (minus stale sfls.error ones) followed by the error headers."""
    kept: Headers = [
        (k, _b(v)) for k, v in original if not k.startswith("sfls.error.") and not k.startswith("sfls.original.")
    ]
    error: dict[str, str] = {
        ERROR_CLASS: failure.error_class,
        ERROR_MESSAGE: failure.message,
        ERROR_ATTEMPTS: str(failure.attempts),
        ERROR_SERVICE: service,
    }
    if failure.http_status is not None:
        error[ERROR_STATUS] = str(failure.http_status)
    if failure.response_excerpt:
        error[ERROR_RESPONSE] = failure.response_excerpt
    if failure.first_failure:
        error[ERROR_FIRST] = failure.first_failure.isoformat()
    if failure.last_failure:
        error[ERROR_LAST] = failure.last_failure.isoformat()
    if failure.request_id:
        error[ERROR_REQUEST] = failure.request_id
    if origin is not None:
        error[ORIGINAL_TOPIC] = origin.topic
        error[ORIGINAL_PARTITION] = str(origin.partition)
        error[ORIGINAL_OFFSET] = str(origin.offset)
    return kept + [(k, v.encode()) for k, v in error.items()]


def count_dead_letter(service: str, topic: str, failure: Failure) -> None:
    DEAD_LETTERS.labels(service=service, topic=topic, error_class=failure.error_class).inc()


@dataclass(frozen=True)
class DeadLetter:
    """A dead-letter record as read back for `sfls dlq`."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    original_headers: Headers
    topic: str
    partition: int
    offset: int
    timestamp: datetime

    @property
    def error_class(self) -> str:
        return self.headers.get(ERROR_CLASS, "")

    @property
    def message(self) -> str:
        return self.headers.get(ERROR_MESSAGE, "")

    @property
    def http_status(self) -> str:
        return self.headers.get(ERROR_STATUS, "")

    @property
    def attempts(self) -> str:
        return self.headers.get(ERROR_ATTEMPTS, "")

    @property
    def last_failure(self) -> datetime:
        raw = self.headers.get(ERROR_LAST)
        return datetime.fromisoformat(raw) if raw else self.timestamp

    @property
    def first_failure(self) -> datetime | None:
        raw = self.headers.get(ERROR_FIRST)
        return datetime.fromisoformat(raw) if raw else None

    @property
    def request_id(self) -> str:
        return self.headers.get(ERROR_REQUEST, "")

    @property
    def original_topic(self) -> str | None:
        return self.headers.get(ORIGINAL_TOPIC)

    def replay_headers(self, replayed_at: str) -> list[tuple[str, bytes | str | None]]:
        """The headers its replay carries: the original ones, when it was replayed, and the failed request."""
        headers: list[tuple[str, bytes | str | None]] = [*self.original_headers, (REPLAYED_AT, replayed_at)]
        if self.request_id:
            headers.append((REPLAY_OF, self.request_id))
        return headers

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key.decode(errors="replace") if self.key else None,
            "timestamp": self.timestamp.isoformat(),
            "headers": self.headers,
            "value": self.value.decode(errors="replace") if self.value else None,
        }


def parse_dead_letter(message: Message) -> DeadLetter:
    """Split a consumed dead-letter record into its error headers and the original ones."""
    raw_headers = message.headers() or []
    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    _, timestamp_ms = message.timestamp()
    return dead_letter_of(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        headers=[(str(k), _b(v)) for k, v in pairs],
        timestamp=datetime.fromtimestamp(timestamp_ms / 1000, UTC),
    )


def dead_letter_of(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]],
    timestamp: datetime,
) -> DeadLetter:
    """A dead letter from its parts (a consumed record's, already held elsewhere)."""
    all_headers = list(headers)
    error = {k: v.decode(errors="replace") for k, v in all_headers if k.startswith(HEADER_PREFIX)}
    original = [(k, v) for k, v in all_headers if not k.startswith(HEADER_PREFIX)]
    return DeadLetter(
        key=key,
        value=value,
        headers=error,
        original_headers=original,
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp,
    )


def _b(value: bytes | str | None) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else value.encode()
