"""API budgets end to end: the Salesforce emulator's allocations (devstack/salesforce/limits.py) and the
LogiSense emulator's rate limit (devstack/logisense/ratelimit.py) against the real commands and services.

- an import against a nearly spent org pauses at the reserve and resumes by itself, with nothing lost;
- one that cannot resume in time exits 3, and the same import run again completes it without a duplicate;
- the syncer waits through REQUEST_LIMIT_EXCEEDED and converges once the window frees, with no dead letter;
- a LogiSense limit of N requests/s is never exceeded (the emulator's counters) and the sync converges;
- a backfill stopped by the budget exits 3 and `sfls backfill --resume` publishes the rest.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from devstack.process import sfls_command
from services.importer.entities import BY_NAME, GROUPS
from shared.settings import BudgetSettings, KafkaSettings
from tests.environment import sfls_env
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.listener.support import change_events
from tests.services.syncer.e2e import (
    assert_same_state,
    committed,
    run_syncer,
    seed_accounts,
    seed_contacts,
    syncer_settings,
)
from tests.services.syncer.support import change, create_syncer_topics, publish, read_all

pytestmark = pytest.mark.integration

EXT = "LogiSense_Id__c"
REASONS = ("floor", "limit_exceeded")  # why the syncer's calls waited (shared/budget.py)


def limits(sf: SalesforceEmulator, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = sf.admin("POST" if body else "GET", "limits", body or None)
    return result


def run_import(
    sf: SalesforceEmulator, ls: LogisenseEmulator, kafka_settings: KafkaSettings, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """`sfls import catalogue` as a process (20 records per call, budget polled every second) and its summary."""
    done = subprocess.run(
        [*sfls_command(), "import", "catalogue"],
        env=sfls_env(
            salesforce=sf,
            logisense=ls,
            kafka=kafka_settings,
            SFLS_BUDGET__POLL_SECONDS="1",
            SFLS_IMPORTER__BATCH_SIZE="20",
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    summaries = [
        json.loads(line)
        for line in (done.stdout + done.stderr).splitlines()
        if line.startswith("{") and '"import_summary"' in line
    ]
    return done, (summaries[-1] if summaries else None)


def landed(sf: SalesforceEmulator, entity: str) -> list[str]:
    """External ids of the entity's landed records, duplicates kept (so a duplicate shows)."""
    return sorted(r[EXT] for r in sf.records(BY_NAME[entity].sobject) if r.get(EXT) and not r.get("IsDeleted"))


def assert_all_landed_once(sf: SalesforceEmulator, summary: dict[str, Any] | None) -> None:
    """Every item the run fetched is in Salesforce exactly once (the price book has its own tests)."""
    assert summary is not None, "the run logged no import_summary"
    assert summary["ok"], summary
    checked = [e for e in summary["entities"] if e["entity"] in BY_NAME]
    assert checked, summary
    for entity in checked:
        ids = landed(sf, entity["entity"])
        assert len(ids) == len(set(ids)), f"{entity['entity']}: a record landed twice"
        assert len(ids) == entity["fetched"] > 0, entity


@pytest.mark.usefixtures("importer_settings")
async def test_an_import_pauses_at_the_reserve_and_resumes_when_the_window_frees(
    kafka_settings: KafkaSettings, salesforce_emulator: SalesforceEmulator, logisense_emulator: LogisenseEmulator
) -> None:
    """40 of 300 daily requests left (reserve 60): the import waits, the window frees, everything lands."""
    sf, ls = salesforce_emulator, logisense_emulator
    limits(sf, window_seconds=4, max={"DailyApiRequests": 300}, used={"DailyApiRequests": 260})

    done, summary = run_import(sf, ls, kafka_settings)

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    output = done.stdout + done.stderr
    assert "salesforce_budget_paused" in output, output
    assert "salesforce_budget_resumed" in output, output
    assert_all_landed_once(sf, summary)
    state = limits(sf)
    assert state["refused"]["DailyApiRequests"] == 0, state  # sfls stopped at its reserve, never at the wall


@pytest.mark.usefixtures("importer_settings")
async def test_an_import_that_cannot_resume_in_time_exits_3_and_completes_when_run_again(
    kafka_settings: KafkaSettings, salesforce_emulator: SalesforceEmulator, logisense_emulator: LogisenseEmulator
) -> None:
    """The reserve is reached mid-run and the window does not free: exit 3, what landed stays; run again: all."""
    sf, ls = salesforce_emulator, logisense_emulator
    # 300 a day, reserve 60: 15 calls above it, fewer than the import needs; the window outlasts the test.
    limits(sf, window_seconds=3600, max={"DailyApiRequests": 300}, used={"DailyApiRequests": 225})

    first, summary = run_import(sf, ls, kafka_settings, SFLS_BUDGET__MAX_PAUSE_SECONDS="2")

    assert first.returncode == 3, f"{first.stdout}\n{first.stderr}"
    assert summary is None, summary  # the run ended at the wait, not at its end
    assert "DailyApiRequests has" in first.stderr, first.stderr
    assert "Nothing is lost: run the same import again" in first.stderr, first.stderr
    assert limits(sf)["refused"]["DailyApiRequests"] == 0
    partial = sum(len(landed(sf, name)) for name in GROUPS["catalogue"] if name in BY_NAME)
    assert partial > 0, "the reserve was reached before anything landed: the test no longer pauses mid-run"

    limits(sf, used={"DailyApiRequests": 0})  # the window freed
    second, summary = run_import(sf, ls, kafka_settings)

    assert second.returncode == 0, f"{second.stdout}\n{second.stderr}"
    assert_all_landed_once(sf, summary)
    assert summary is not None
    assert sum(e["fetched"] for e in summary["entities"] if e["entity"] in BY_NAME) > partial


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_syncer_waits_through_request_limit_exceeded_and_converges(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """The org's requests are spent mid-run: the syncer's reads wait (403s, no dead letter) and converge after."""
    sf, ls = salesforce_emulator, logisense_emulator
    settings = syncer_settings(kafka_settings, sf, ls).model_copy(update={"budget": BudgetSettings(poll_seconds=1)})
    topics = create_syncer_topics(kafka_settings)
    accounts = seed_accounts(sf, 40)
    seed_contacts(sf, accounts)
    producer = producer_factory()
    publish(producer, topics.changes, [change(a) for a in accounts[:10]])
    waits_before = sum(_sample("sfls_salesforce_budget_pauses_total", service="syncer", reason=r) for r in REASONS)
    spent = False

    def progress() -> bool:
        nonlocal spent
        if not spent and committed(settings) >= 10:
            # Everything is spent for the next 6 s (the 1 s buckets free between 6 and 7 s from now).
            limits(sf, window_seconds=6, max={"DailyApiRequests": 5000}, used={"DailyApiRequests": 5000})
            publish(producer, topics.changes, [change(a) for a in accounts[10:]])
            spent = True
        return spent and committed(settings) >= 40

    await run_syncer(settings, progress, within_seconds=90)

    state = limits(sf)
    assert state["refused"]["DailyApiRequests"] > 0, state  # Salesforce did say REQUEST_LIMIT_EXCEEDED
    waits = sum(_sample("sfls_salesforce_budget_pauses_total", service="syncer", reason=r) for r in REASONS)
    assert waits > waits_before
    assert read_all(kafka_settings, topics.changes_dlt) == []
    assert_same_state(sf, ls, settings)


async def test_a_logisense_rate_limit_is_never_exceeded_and_the_sync_converges(
    kafka_settings: KafkaSettings,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    producer_factory: Callable[..., Producer],
) -> None:
    """A tenant limit of 20 requests/s and a syncer paced at 20: no 429, no second above 20, same state."""
    sf, ls = salesforce_emulator, logisense_emulator
    rate = 20
    settings = syncer_settings(kafka_settings, sf, ls)
    settings = settings.model_copy(update={"logisense": ls.settings(rate_limit_per_second=rate)})
    topics = create_syncer_topics(kafka_settings)
    accounts = seed_accounts(sf, 60)
    seed_contacts(sf, accounts)
    ls.admin("POST", "rate-limit", {"requests_per_second": rate, "retry_after": 1})
    publish(producer_factory(), topics.changes, [change(a) for a in accounts])

    await run_syncer(settings, lambda: committed(settings) >= len(accounts), within_seconds=120)

    counted = ls.admin("GET", "rate-limit")
    ls.admin("POST", "rate-limit", {"requests_per_second": None})  # the checks below read LogiSense freely
    assert counted["refused"] == 0, counted
    assert counted["peak"] <= rate, counted
    # The sync pressed against the limit for several seconds (16 accounts at once would far exceed it).
    assert counted["accepted"] >= 5 * rate, counted
    assert counted["peak"] >= rate * 3 // 4, counted
    assert read_all(kafka_settings, topics.changes_dlt) == []
    assert_same_state(sf, ls, settings)


def test_a_backfill_stopped_by_the_budget_exits_3_and_resumes_with_resume(
    kafka_settings: KafkaSettings, salesforce_emulator: SalesforceEmulator
) -> None:
    """The reserve is reached after a few pages: exit 3 naming `--resume`; `sfls backfill --resume` publishes the
    rest, every account at least once."""
    sf = salesforce_emulator
    accounts = sf.seed("Account", [{"Name": f"B{i}", "Type": "Customer"} for i in range(40)])
    sf.tune(query_batch_size=7)  # six queryAll pages, a transaction each
    env = sfls_env(
        salesforce=sf,
        kafka=kafka_settings,
        SFLS_LISTENER__BACKFILL_BATCH_SIZE="7",
        SFLS_LISTENER__TRANSACTIONAL_ID=f"tx-{uuid.uuid4().hex[:8]}",
        SFLS_BUDGET__POLL_SECONDS="1",
    )
    # 100 a day, reserve 20: three calls above it (the /limits read at start, then two pages).
    limits(sf, window_seconds=3600, max={"DailyApiRequests": 100}, used={"DailyApiRequests": 77})

    stopped = subprocess.run(
        [*sfls_command(), "backfill"],
        env={**env, "SFLS_BUDGET__MAX_PAUSE_SECONDS": "2"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert stopped.returncode == 3, f"{stopped.stdout}\n{stopped.stderr}"
    assert "Nothing is lost: resume with `sfls backfill --resume`" in stopped.stderr, stopped.stderr
    first = {e.record_id for e in change_events(kafka_settings)}
    assert 0 < len(first) < len(accounts), "the backfill was not stopped part way"
    assert limits(sf)["refused"]["DailyApiRequests"] == 0

    limits(sf, used={"DailyApiRequests": 0})  # the window freed
    resumed = subprocess.run(
        [*sfls_command(), "backfill", "--resume"], env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert resumed.returncode == 0, f"{resumed.stdout}\n{resumed.stderr}"
    events = change_events(kafka_settings)
    assert {e.record_id for e in events} == set(accounts)
    assert len(events) < 2 * len(accounts), "the resumed backfill started over instead of going on"
