"""`sfls listener` and `sfls backfill` as processes: kill -9 and restart, SIGTERM, /metrics, resumable backfill."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.process import ServiceProcess, sample_key, sfls_command
from services.listener.backfill import run_backfill
from services.listener.publisher import TransactionalPublisher
from shared import kafka
from shared.events import ChangeType, Source
from shared.settings import KafkaSettings
from tests.environment import sfls_env
from tests.services.listener.conftest import state_of, wait_checkpointed, wait_until
from tests.services.listener.support import SalesforceApi, change_events

pytestmark = pytest.mark.integration

ACCOUNTS = "/data/AccountChangeEvent"
CHECKPOINT = "sfls_listener_checkpoint_replay_id"
PUBLISHED = "sfls_listener_events_published_total"


def _env(emulator: Any, kafka_settings: KafkaSettings, tmp_path: Path, **extra: str) -> dict[str, str]:
    return sfls_env(
        salesforce=emulator,
        kafka=kafka_settings,
        **{  # the caller's `extra` wins over these defaults
            "SFLS_LISTENER__RECONNECT_BASE_SECONDS": "0.1",
            "SFLS_LISTENER__WATCHDOG_SECONDS": "8",
            "SFLS_LISTENER__BACKFILL_BATCH_SIZE": "7",
            **extra,
        },
    )


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    """Listener processes started by a test; killed at the end."""
    made: list[ServiceProcess] = []
    yield made
    for process in made:
        process.kill()


def listener(env: dict[str, str], log: Path, processes: list[ServiceProcess]) -> ServiceProcess:
    """`sfls listener`, ready (its /readyz answered 200)."""
    process = ServiceProcess.sfls("listener", env=env, log=log)
    processes.append(process)
    process.wait_ready(60)
    return process


def test_kill_9_between_events_loses_and_duplicates_nothing(
    emulator: Any, kafka_settings: KafkaSettings, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """kill -9 while changes stream in, then restart: every change is in the topic exactly once; SIGTERM exits 0."""
    ids = emulator.seed("Account", [{"Name": f"Start {i}"} for i in range(5)])
    env = _env(emulator, kafka_settings, tmp_path, SFLS_LISTENER__TRANSACTIONAL_ID=f"tx-{uuid.uuid4().hex[:8]}")
    first = listener(env, tmp_path / "listener.log", processes)
    expected = [f"change {n}" for n in range(60)]
    api = SalesforceApi(emulator.settings())

    def write(names: list[str]) -> None:
        for n, name in enumerate(names):
            api.update("Account", ids[n % len(ids)], {"Name": name})
            time.sleep(0.02)  # a steady stream, so the kill lands while changes are in flight

    writer = threading.Thread(target=write, args=(expected[:30],))
    writer.start()
    # Polled fast (every 0.2 s), so the kill lands mid-stream.
    wait_until(
        lambda: first.metric(CHECKPOINT, {"channel": ACCOUNTS}),
        what="a first checkpoint on /metrics",
        until=lambda replay_id: replay_id is not None,
    )
    assert first.kill() == -signal.SIGKILL
    writer.join(60)
    assert not writer.is_alive(), "the first 30 changes were not written within 60 s"
    write(expected[30:])  # and more while the listener is down
    api.close()
    second = listener(env, tmp_path / "listener.log", processes)
    wait_checkpointed(emulator, kafka_settings, ACCOUNTS, timeout=60)
    events = change_events(kafka_settings)
    assert [e.fields["Name"] for e in events] == expected
    assert len({e.event_id for e in events}) == len(expected)
    # The listener counts a batch's events just after committing it: await the sample, not read it once.
    labels = {"change_type": "UPDATE", "entity": "Account", "source": "cdc"}
    published = sample_key(PUBLISHED, labels)
    wait_until(
        lambda: {k: v for k, v in second.samples().items() if k.startswith(PUBLISHED)},
        30,
        f"{published} on /metrics",
        until=lambda seen: published in seen,
    )
    assert second.get("/healthz") is not None
    assert second.terminate(30) == 0
    assert b"listener_stopped" in (tmp_path / "listener.log").read_bytes()


@pytest.mark.transports("cometd")  # a backfill reads REST only: the transport changes nothing
def test_backfill_publishes_every_matching_account_and_resumes(
    emulator: Any, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """A backfill stopped after its first batch resumes with `sfls backfill --resume`: each match once."""
    customers = emulator.seed("Account", [{"Name": f"C{i}", "Type": "Customer"} for i in range(40)])
    emulator.seed("Account", [{"Name": f"P{i}", "Type": "Prospect"} for i in range(5)])
    emulator.tune(query_batch_size=7)  # several queryAll pages
    tid = f"tx-{uuid.uuid4().hex[:8]}"
    env = _env(emulator, kafka_settings, tmp_path, SFLS_LISTENER__TRANSACTIONAL_ID=tid)
    kafka.ensure_topics(kafka_settings, kafka.Topics(kafka_settings.topic_prefix).specs(kafka_settings))
    publisher = TransactionalPublisher(kafka_settings, f"{tid}.backfill", timeout_seconds=20)
    publisher.start()
    stop = threading.Event()
    partial = run_backfill(
        emulator.rest(),
        publisher,
        name="backfill",
        where="Type = 'Customer'",
        batch_size=7,
        on_progress=lambda _progress: stop.set(),
        stop=stop,
    )
    publisher.close()
    assert (partial.done, partial.published) == (False, 7)
    resumed = subprocess.run(
        [*sfls_command(), "backfill", "--resume"], env=env, capture_output=True, timeout=120, check=False
    )
    assert resumed.returncode == 0, resumed.stdout.decode() + resumed.stderr.decode()
    assert b"40 accounts published" in resumed.stdout
    final = state_of(kafka_settings).backfills["backfill"]
    assert (final.done, final.run_id, final.where) == (True, partial.run_id, "Type = 'Customer'")
    events = change_events(kafka_settings)
    assert sorted(e.record_id for e in events) == sorted(customers)
    assert all(e.source is Source.BACKFILL and e.change_type is ChangeType.RESYNC for e in events)
    assert len({e.event_id for e in events}) == len(customers)


@pytest.mark.transports("cometd")  # a backfill reads REST only: the transport changes nothing
def test_backfill_of_opportunities_publishes_every_won_one(
    emulator: Any, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """`sfls backfill --opportunities --where ...`: one RESYNC event per matching won opportunity, keyed by its
    account and naming itself; open ones and those without an account are left out."""
    accounts = emulator.seed("Account", [{"Name": f"A{i}"} for i in range(3)])
    api = SalesforceApi(emulator.settings())
    try:
        deal = {"CloseDate": "2026-11-30", "StageName": "Closed Won"}
        won = [api.create("Opportunity", {**deal, "Name": f"W{i}", "AccountId": a}) for i, a in enumerate(accounts)]
        api.create("Opportunity", {**deal, "Name": "open", "AccountId": accounts[0], "StageName": "Prospecting"})
        api.create("Opportunity", {**deal, "Name": "W orphan"})  # matches the filter, has no account
        api.create("Opportunity", {**deal, "Name": "X other", "AccountId": accounts[0]})
    finally:
        api.close()
    env = _env(emulator, kafka_settings, tmp_path, SFLS_LISTENER__TRANSACTIONAL_ID=f"tx-{uuid.uuid4().hex[:8]}")
    done = subprocess.run(
        [*sfls_command(), "backfill", "--opportunities", "--where", "Name LIKE 'W%'"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert b"3 won opportunities published" in done.stdout
    events = change_events(kafka_settings)
    assert {(e.record_id, e.key, e.opportunity_id) for e in events} == {
        (o, a.encode(), o) for o, a in zip(won, accounts, strict=True)
    }
    assert all(e.source is Source.BACKFILL and e.change_type is ChangeType.RESYNC for e in events)
    assert state_of(kafka_settings).backfills["backfill-opportunities"].done
