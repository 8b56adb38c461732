"""`sfls dlq`: the dead-letter topic as the error log: list, show, replay.

Reading never joins a consumer group and never commits: each command assigns every partition of
the topic from its start (or a given offset) and reads up to the high watermark it saw on start.
Replay produces the original key, value and headers back to the original topic (the
`sfls.original.topic` header; `sfls.changes` otherwise) and adds `sfls.replayed_at` (and the failed
request's id, `sfls.replay.request_id`), so the syncer handles the record as it would any change and
writes its outcome under that request. Replaying twice is harmless: delivery is an
idempotent upsert.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared import kafka
from shared.deadletter import DeadLetter, parse_dead_letter
from shared.errors import ConfigError
from shared.kafka_reader import read_to_end
from shared.settings import KafkaSettings

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (UTC when no zone is given) or a duration ago: 30m, 2h, 1d, 1w."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a time: give ISO-8601 (2026-01-31T12:00) or a duration ago (30m, 2h, 1d)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DlqFilter:
    """Which dead letters a command acts on; every given condition must hold."""

    error_class: str | None = None
    key: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.error_class and letter.error_class.casefold() != self.error_class.casefold():
            return False
        if self.key and (letter.key or b"").decode(errors="replace") != self.key:
            return False
        when = letter.last_failure
        if self.since and when < self.since:
            return False
        return not (self.until and when > self.until)


def dead_letters(settings: KafkaSettings, topic: str, flt: DlqFilter = DlqFilter()) -> list[DeadLetter]:
    """Every dead letter of `topic` that matches, oldest failure first."""
    found = [letter for letter in map(parse_dead_letter, read_to_end(settings, topic)) if flt.matches(letter)]
    return sorted(found, key=lambda letter: (letter.last_failure, letter.partition, letter.offset))


def find(settings: KafkaSettings, topic: str, partition: int, offset: int) -> DeadLetter | None:
    for message in read_to_end(settings, topic):
        if message.partition() == partition and message.offset() == offset:
            return parse_dead_letter(message)
    return None


def parse_position(text: str) -> tuple[int, int]:
    """`PARTITION:OFFSET` as printed by `sfls dlq list`."""
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise ConfigError(f"{text!r} is not a dead-letter position; write PARTITION:OFFSET as `sfls dlq list` shows")
    return int(partition), int(offset)


def replay(
    settings: KafkaSettings, letters: Iterable[DeadLetter], *, default_topic: str, dry_run: bool = False
) -> list[tuple[DeadLetter, str]]:
    """Produce each letter's original record back to its topic; returns (letter, target topic)."""
    plan = [(letter, letter.original_topic or default_topic) for letter in letters]
    if dry_run or not plan:
        return plan
    producer = kafka.producer(settings)
    stamp = datetime.now(UTC).isoformat()
    by_topic: dict[str, list[DeadLetter]] = {}
    for letter, target in plan:
        by_topic.setdefault(target, []).append(letter)
    for target, group in by_topic.items():
        kafka.produce_and_flush(
            producer,
            target,
            (
                (
                    letter.key,
                    letter.value,
                    letter.replay_headers(stamp),
                )
                for letter in group
            ),
        )
    return plan
