"""`sfls syncer` whose Kafka commits are all refused, as during a rebalance that never settles.

Run as `python -m tests.deploy.commits_refused syncer`: the real command, its real loop and metrics; only
the consumer's `commit` raises REBALANCE_IN_PROGRESS (tests/deploy/test_stalled_alert.py).
"""

from __future__ import annotations

import sys
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException

from shared import kafka


class CommitsRefused(Consumer):
    """A real consumer: it joins, fetches and reports lag, but Kafka never takes its offsets."""

    def commit(self, *args: Any, **kwargs: Any) -> None:
        raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))


def main() -> None:
    kafka.Consumer = CommitsRefused  # type: ignore[misc]  # the one fault injected: shared/kafka.py builds it
    from services.cli import app

    app(sys.argv[1:])


if __name__ == "__main__":
    main()
