"""Crash: kill -9 the syncer and the listener at random moments while changes flow.

CI size: 3,000 changes over 300 accounts (10 rounds of one change per account, plus contact
creates and deletes), written over about 40 s. `SFLS_RELIABILITY_SCALE=full` runs the issue's
20,000 changes over 2,000 accounts. Both sizes kill the syncer 5 times and the listener 3 times.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.settings import KafkaSettings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceProcess
from tests.reliability.support import (
    ChangeWriter,
    dead_letters,
    missing_changes,
    pipeline,
    scaled,
    seed,
    wait_converged,
)

pytestmark = [pytest.mark.failure, pytest.mark.integration]

ACCOUNTS = scaled(300, 2000)
ROUNDS = 10  # one change per account per round
SYNCER_KILLS = 5
LISTENER_KILLS = 3


@pytest.mark.timeout(scaled(240, 1800))
def test_kill_9_of_syncer_and_listener_while_changes_flow_loses_and_duplicates_nothing(
    kafka_settings: KafkaSettings,
    salesforce_process: Callable[..., SalesforceProcess],
    logisense_emulator: LogisenseEmulator,
    tmp_path: Path,
) -> None:
    """5 syncer and 3 listener kill -9s mid-stream: LogiSense ends equal to Salesforce, nothing twice, nothing lost."""
    sf = salesforce_process()
    accounts, contacts = seed(sf, ACCOUNTS)
    rng = random.Random(7)
    with pipeline(kafka_settings, sf, logisense_emulator, tmp_path, sync={"interval_minutes": 0.02}) as run:
        run.start_listener()
        run.start_syncer()
        writer = ChangeWriter(sf, accounts, contacts)
        errors: list[BaseException] = []
        pace = scaled(4.0, 15.0)  # seconds per round

        def write() -> None:
            try:
                for number in range(ROUNDS):
                    started = time.monotonic()
                    writer.round(number)
                    if number == 3:
                        writer.add_contacts()
                    if number == 7:
                        writer.delete_contacts(len(writer.extra_contacts) // 2)
                    time.sleep(max(0.0, pace - (time.monotonic() - started)))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=write, name="changes")
        window = ROUNDS * pace
        kills = sorted(
            [(rng.uniform(0.05, 1.0) * window, "syncer") for _ in range(SYNCER_KILLS)]
            + [(rng.uniform(0.05, 0.9) * window, "listener") for _ in range(LISTENER_KILLS)]
        )
        began = time.monotonic()
        thread.start()
        try:
            for at, which in kills:
                time.sleep(max(0.0, at - (time.monotonic() - began)))
                run.check_alive()
                if which == "syncer":
                    assert run.syncer is not None
                    run.syncer.kill()
                    run.start_syncer()
                else:
                    assert run.listener is not None
                    run.listener.kill()
                    run.start_listener(wait_ready=False)
        finally:
            thread.join(window * 3)
            writer.close()
        assert not thread.is_alive(), f"the change writer still ran {window * 3:.0f} s later ({writer.changes} changes)"
        assert not errors, errors
        wait_converged(sf, logisense_emulator, run.settings, scaled(150, 900), alive=run.check_alive, context=run.logs)
        assert missing_changes(sf, kafka_settings, run.settings) == []
        assert dead_letters(kafka_settings) == []
        assert writer.changes >= ACCOUNTS * ROUNDS
