"""Slow and failing LogiSense: 30 % 5xx, 10 % 429 with Retry-After, 2 s latency spikes, then an outage.

CI size: 200 accounts, 5 rounds of one change per account (1,000 changes), a 20 s outage during
which one round is written. `SFLS_RELIABILITY_SCALE=full`: 2,000 accounts and the issue's 60 s
outage. The syncer's retry budget is a few seconds (4 attempts, 0.2 s base, 1 s cap), so the
outage outlasts it.

The outage has two halves. First every request is answered 503, searches included: a batch caught
in its account search fails as a whole and is rewound and retried later (nothing dead-lettered,
nothing lost), accounts caught mid-write run out of retries and are dead-lettered. Then searches
answer again while every write is still refused, so a batch gets past its search and its accounts
fail one by one: there is always something for `sfls dlq replay` to do. (With one total outage, at
full size every batch was caught in its search, nothing was dead-lettered and the replay went
unchecked.)
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from devstack.process import sfls_command
from shared.deadletter import ERROR_ATTEMPTS, ERROR_STATUS, DeadLetter
from shared.errors import TransientError
from shared.settings import KafkaSettings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.reliability.support import (
    ChangeWriter,
    dead_letters,
    missing_changes,
    pipeline,
    scaled,
    seed,
    wait_converged,
    wait_until,
)

pytestmark = [pytest.mark.failure, pytest.mark.integration]

ACCOUNTS = scaled(200, 2000)
OUTAGE_SECONDS = scaled(12, 60)  # each half outlasts every retry of RETRY (0.2 + 0.4 + 0.8 s of backoff)
FLAKY_SECONDS = scaled(3, 5)  # how long each flaky phase lasts
RETRY = {
    "SFLS_SYNC__RETRY__MAX_ATTEMPTS": "4",
    "SFLS_SYNC__RETRY__BASE_SECONDS": "0.2",
    "SFLS_SYNC__RETRY__CAP_SECONDS": "1",
}
WRITES = ("create", "update", "patch", "delete")  # LogiSense emulator operations that change data
TRANSIENT = {cls.__name__ for cls in (TransientError, *TransientError.__subclasses__())}


def flaky(ls: LogisenseEmulator) -> None:
    """The bad-day faults: 30 % 5xx, 10 % 429 with Retry-After: 1, 5 % of requests 2 s slower."""
    ls.faults(probability=0.3, status=500, seed=1)
    ls.faults(probability=0.1, status=429, retry_after=1, seed=2)
    ls.faults(probability=0.05, latency_ms=2000, seed=3)


@pytest.mark.timeout(scaled(240, 900))
def test_flaky_then_down_logisense_converges_and_dlq_replay_completes_the_sync(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    tmp_path: Path,
) -> None:
    """Flaky then down LogiSense: the deliverable converges, only the rest is dead-lettered, replay finishes it."""
    sf, ls = salesforce_emulator, logisense_emulator
    accounts, contacts = seed(sf, ACCOUNTS)
    writer = ChangeWriter(sf, accounts, contacts)
    with pipeline(kafka_settings, sf, ls, tmp_path, sync={"interval_minutes": 0.02}, env_extra=RETRY) as run:
        try:
            flaky(ls)
            run.start_listener()
            run.start_syncer()
            writer.round(0)
            time.sleep(FLAKY_SECONDS)
            writer.round(1)
            time.sleep(FLAKY_SECONDS)
            ls.clear_faults()
            ls.faults(status=503, retry_after=1)  # the outage, first half: every request refused
            down = time.monotonic()
            writer.round(2)
            time.sleep(max(0.0, OUTAGE_SECONDS / 2 - (time.monotonic() - down)))
            ls.clear_faults()
            for operation in WRITES:  # second half: searches answer, every write is still refused
                ls.faults(status=503, retry_after=1, operation=operation)
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down)))
            ls.clear_faults()
            flaky(ls)
            writer.round(3)
            time.sleep(FLAKY_SECONDS)
            ls.clear_faults()
            writer.round(4)
        finally:
            writer.close()
        assert ls.count(status=500) > 0
        assert ls.count(status=429) > 0
        assert ls.count(operation="search", status=503) > 0  # the first half refused searches too
        assert sum(ls.count(operation=op, status=503) for op in WRITES) > 0

        def dead_accounts() -> set[str]:
            return {(d.key or b"").decode() for d in dead_letters(kafka_settings)}

        # Everything not dead-lettered converges by itself; the dead letters settle.
        wait_converged(
            sf, ls, run.settings, scaled(120, 600), alive=run.check_alive, context=run.logs, exclude=dead_accounts
        )
        counts: list[int] = []

        def settled() -> tuple[list[DeadLetter]] | None:
            letters = dead_letters(kafka_settings)
            counts.append(len(letters))
            return (letters,) if len(counts) > 1 and counts[-2] == counts[-1] else None

        (letters,) = wait_until(
            settled, 60, "the dead-letter topic to settle", every=5, context=lambda: f"dead letters counted: {counts}"
        )
        assert letters, "the refused writes dead-lettered nothing: they did not outlast the retry budget"
        for letter in letters:
            # Only what ran out of its retry budget on LogiSense's 5xx/429 answers, or what waited for
            # a parent or invoice recipient that did: nothing invalid, nothing that could have gone through.
            if letter.error_class in TRANSIENT:
                assert letter.headers.get(ERROR_ATTEMPTS) == RETRY["SFLS_SYNC__RETRY__MAX_ATTEMPTS"], letter.as_dict()
                assert letter.headers.get(ERROR_STATUS) in {"500", "503", "429"}, letter.as_dict()
            else:
                assert letter.error_class == "DependencyFailedError", letter.as_dict()
                causes = re.findall(r"could not be synced \((\w+)\): ", letter.message)
                assert causes, letter.as_dict()
                # The chain of waits ends at an account that ran out of retries on a 5xx/429.
                assert all(c == "DependencyFailedError" for c in causes[:-1]), letter.as_dict()
                assert causes[-1] in TRANSIENT, letter.as_dict()
                assert f"could not be synced ({causes[-1]}): gave up after" in letter.message, letter.as_dict()
        assert missing_changes(sf, kafka_settings, run.settings) == []

        replay = subprocess.run(
            [*sfls_command(), "dlq", "replay"], env=run.env, capture_output=True, timeout=120, check=False
        )
        assert replay.returncode == 0, replay.stdout.decode() + replay.stderr.decode()
        wait_converged(sf, ls, run.settings, scaled(120, 600), alive=run.check_alive, context=run.logs)
        assert len(dead_letters(kafka_settings)) == len(letters)  # nothing failed again
