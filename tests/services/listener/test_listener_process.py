"""`sfls listener` and `sfls backfill` as processes: kill -9 and restart, SIGTERM, /metrics, resumable backfill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.kafka import free_port
from services.listener.backfill import run_backfill
from services.listener.publisher import TransactionalPublisher
from shared import kafka
from shared.events import ChangeType, Source
from shared.settings import KafkaSettings
from tests.services.listener.conftest import state_of, wait_checkpointed, wait_until
from tests.services.listener.support import SalesforceApi, change_events

pytestmark = pytest.mark.integration

ACCOUNTS = "/data/AccountChangeEvent"
SFLS = str(Path(sys.executable).with_name("sfls"))  # the installed `sfls` command of this venv


def _env(emulator: Any, kafka_settings: KafkaSettings, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
    env.update(
        {
            "SFLS_SALESFORCE__INSTANCE_URL": emulator.instance_url,
            "SFLS_SALESFORCE__CA_FILE": emulator.ca_file,
            "SFLS_SALESFORCE__CLIENT_ID": emulator.client_id,
            "SFLS_SALESFORCE__CLIENT_SECRET": emulator.client_secret,
            "SFLS_SALESFORCE__USERNAME": emulator.username,
            "SFLS_SALESFORCE__PASSWORD": emulator.password,
            "SFLS_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "SFLS_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
            "SFLS_KAFKA__PARTITIONS": str(kafka_settings.partitions),
            "SFLS_LISTENER__RECONNECT_BASE_SECONDS": "0.1",
            "SFLS_LISTENER__WATCHDOG_SECONDS": "8",
            "SFLS_LISTENER__BACKFILL_BATCH_SIZE": "7",
        }
    )
    env.update(extra)
    return env


class ListenerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [SFLS, "listener"],
            env={**env, "SFLS_OBSERVABILITY__METRICS_PORT": str(self.port)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> requests.Response | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except requests.RequestException:
            return None

    def wait_ready(self) -> None:
        def readyz() -> str | None:
            assert self.process.poll() is None, f"listener exited early with {self.process.returncode}"
            answer = self.get("/readyz")
            return None if answer is None else f"{answer.status_code} {answer.text.strip()}"

        wait_until(readyz, 60, "listener /readyz", until=lambda seen: seen is not None and seen.startswith("200 "))

    def metrics(self) -> str:
        answer = self.get("/metrics")
        return answer.text if answer is not None and answer.status_code == 200 else ""

    def checkpointed(self, channel: str) -> bool:
        """True once /metrics shows a committed checkpoint for `channel` (polled fast, to kill mid-stream)."""
        answer = self.get("/metrics")
        line = f'sfls_listener_checkpoint_replay_id{{channel="{channel}"}}'
        return answer is not None and line in answer.text

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


@pytest.fixture
def processes() -> Iterator[list[ListenerProcess]]:
    """Listener processes started by a test; killed at the end."""
    made: list[ListenerProcess] = []
    yield made
    for process in made:
        process.close()


def test_kill_9_between_events_loses_and_duplicates_nothing(
    emulator: Any, kafka_settings: KafkaSettings, tmp_path: Path, processes: list[ListenerProcess]
) -> None:
    """kill -9 while changes stream in, then restart: every change is in the topic exactly once; SIGTERM exits 0."""
    ids = emulator.seed("Account", [{"Name": f"Start {i}"} for i in range(5)])
    env = _env(emulator, kafka_settings, tmp_path, SFLS_LISTENER__TRANSACTIONAL_ID=f"tx-{uuid.uuid4().hex[:8]}")
    first = ListenerProcess(env, tmp_path / "listener.log")
    processes.append(first)
    first.wait_ready()
    expected = [f"change {n}" for n in range(60)]
    api = SalesforceApi(emulator.settings())

    def write(names: list[str]) -> None:
        for n, name in enumerate(names):
            api.update("Account", ids[n % len(ids)], {"Name": name})
            time.sleep(0.02)  # a steady stream, so the kill lands while changes are in flight

    writer = threading.Thread(target=write, args=(expected[:30],))
    writer.start()
    wait_until(lambda: first.checkpointed(ACCOUNTS), what="a first checkpoint")
    first.process.send_signal(signal.SIGKILL)
    assert first.process.wait(10) == -signal.SIGKILL
    writer.join(60)
    assert not writer.is_alive(), "the first 30 changes were not written within 60 s"
    write(expected[30:])  # and more while the listener is down
    api.close()
    second = ListenerProcess(env, tmp_path / "listener.log")
    processes.append(second)
    second.wait_ready()
    wait_checkpointed(emulator, kafka_settings, ACCOUNTS, timeout=60)
    events = change_events(kafka_settings)
    assert [e.fields["Name"] for e in events] == expected
    assert len({e.event_id for e in events}) == len(expected)
    # The listener counts a batch's events just after committing it: await the sample, not read it once.
    published = 'sfls_listener_events_published_total{change_type="UPDATE",entity="Account",source="cdc"}'
    wait_until(
        lambda: [line for line in second.metrics().splitlines() if line.startswith("sfls_listener_events_published")],
        30,
        f"{published} on /metrics",
        until=lambda lines: any(line.startswith(published + " ") for line in lines),
    )
    assert second.get("/healthz") is not None
    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(30) == 0
    assert b"listener stopped" in (tmp_path / "listener.log").read_bytes()


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
    resumed = subprocess.run([SFLS, "backfill", "--resume"], env=env, capture_output=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stdout.decode() + resumed.stderr.decode()
    assert b"40 accounts published" in resumed.stdout
    final = state_of(kafka_settings).backfills["backfill"]
    assert (final.done, final.run_id, final.where) == (True, partial.run_id, "Type = 'Customer'")
    events = change_events(kafka_settings)
    assert sorted(e.record_id for e in events) == sorted(customers)
    assert all(e.source is Source.BACKFILL and e.change_type is ChangeType.RESYNC for e in events)
    assert len({e.event_id for e in events}) == len(customers)
