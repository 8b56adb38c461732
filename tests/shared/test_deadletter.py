"""Dead-letter headers carry the cause and the origin, and read back the same."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer

from shared import kafka
from shared.deadletter import (
    ERROR_ATTEMPTS,
    ERROR_CLASS,
    ERROR_STATUS,
    ORIGINAL_OFFSET,
    Failure,
    Origin,
    dead_letter_headers,
    parse_dead_letter,
)
from shared.errors import RejectedError, TransientError
from shared.retry import RetriesExhaustedError
from shared.settings import KafkaSettings


def test_failure_from_exhausted_retries_keeps_attempts_and_cause() -> None:
    """An exhausted retry budget is recorded with the last error's class, status and the attempt count."""
    started = time.time() - 5
    exc = RetriesExhaustedError(TransientError("503 from LogiSense", status=503), 8, started, time.time())
    failure = Failure.from_exception(exc)
    assert failure.error_class == "TransientError"
    assert failure.attempts == 8
    assert failure.http_status == 503
    assert failure.first_failure is not None
    assert failure.last_failure is not None
    assert failure.first_failure < failure.last_failure


def test_headers_replace_stale_error_headers() -> None:
    """Re-dead-lettering a replayed record keeps its own headers but not the old error ones."""
    failure = Failure.from_exception(RejectedError("name is required", status=400, response_excerpt="{..}"))
    headers = dead_letter_headers(
        failure,
        service="syncer",
        origin=Origin("sfls.changes", 3, 17),
        original=[("entity", b"Account"), (ERROR_CLASS, b"Old"), ("sfls.original.offset", b"1")],
    )
    as_dict = dict(headers)
    assert as_dict["entity"] == b"Account"
    assert as_dict[ERROR_CLASS] == b"RejectedError"
    assert as_dict[ERROR_STATUS] == b"400"
    assert as_dict[ORIGINAL_OFFSET] == b"17"
    assert [k for k, _ in headers].count(ERROR_CLASS) == 1


@pytest.mark.integration
def test_dead_letter_round_trip_through_kafka(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., Producer],
    consumer_factory: Callable[..., Consumer],
) -> None:
    """A dead letter produced to the broker parses back with its cause, origin and original headers."""
    topic = topic_factory()
    failure = Failure.from_exception(RejectedError("bad", status=400), attempts=2)
    headers = dead_letter_headers(failure, service="syncer", origin=Origin("src", 0, 5), original=[("entity", b"A")])
    producer = producer_factory()
    kafka.produce_and_flush(producer, topic, [(b"001", b'{"x":1}', list(headers))])
    consumer = consumer_factory(f"dlq-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    message = None
    deadline = time.monotonic() + 30
    while message is None and time.monotonic() < deadline:
        candidate = consumer.poll(1.0)
        if candidate is not None and candidate.error() is None:
            message = candidate
    assert message is not None, f"no record arrived on {topic} within 30 s"
    letter = parse_dead_letter(message)
    assert letter.key == b"001"
    assert letter.value == b'{"x":1}'
    assert letter.error_class == "RejectedError"
    assert letter.headers[ERROR_ATTEMPTS] == "2"
    assert letter.original_topic == "src"
    assert letter.original_headers == [("entity", b"A")]
