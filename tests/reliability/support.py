"""Helpers for the failure tests: services as processes, a change generator, convergence checks.

- `scaled(ci, full)`: the size a test runs at. CI runs the small size; `SFLS_RELIABILITY_SCALE=full`
  runs the full sizes (20,000 changes over 2,000 accounts, a 60-second outage, ...).
- `Pipeline`: `sfls listener` and `sfls syncer` as processes (devstack.process.ServiceProcess)
  pointed at the test's emulators and broker (the environment of the syncer process tests plus the
  listener's knobs); start, kill -9, restart, and always stopped at the end.
- `ChangeWriter`: changes made through the Salesforce emulator's REST API (sObject Collections,
  one transaction per 200 records), so they travel CDC -> listener -> Kafka -> syncer -> LogiSense.
- `wait_converged(...)`: polls devstack.compare.differences (LogiSense compared with Salesforce
  field for field, every field the mapping syncs, contacts and contact points included, plus
  duplicate `sfdcid` links of accounts and contacts) until it is empty.
- `missing_changes(...)`: CDC messages the emulator delivered that never reached the changes topic.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack.compare import differences, load_references
from devstack.process import ServiceProcess
from shared import kafka
from shared.compound import names_any
from shared.deadletter import DeadLetter, parse_dead_letter
from shared.events import ChangeEvent
from shared.mapping import account_trigger_fields, contact_trigger_fields
from shared.settings import KafkaSettings, Settings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.listener.support import SalesforceApi, read_committed
from tests.services.syncer.e2e import CONTACT_POINTS, seed_accounts, seed_contacts, subprocess_env, syncer_settings
from tests.waiting import wait_until

SCALE_ENV = "SFLS_RELIABILITY_SCALE"
CHANNELS = ("/data/AccountChangeEvent", "/data/ContactChangeEvent")


def full_scale() -> bool:
    """True when `SFLS_RELIABILITY_SCALE=full` asks for the full sizes."""
    return os.environ.get(SCALE_ENV, "ci").strip().lower() == "full"


def scaled(ci: Any, full: Any) -> Any:
    """The CI size, or the issue's size under SFLS_RELIABILITY_SCALE=full."""
    return full if full_scale() else ci


# --- services as processes --------------------------------------------------------------------------


@dataclass
class Pipeline:
    """The listener and the syncer as processes for one test; `close()` kills whatever still runs."""

    kafka_settings: KafkaSettings
    sf: SalesforceEmulator
    ls: LogisenseEmulator
    workdir: Path
    sync: dict[str, Any] = field(default_factory=dict)
    env_extra: dict[str, str] = field(default_factory=dict)
    services: list[ServiceProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings: Settings = syncer_settings(self.kafka_settings, self.sf, self.ls, **self.sync)
        config = self.workdir / "sfls.yaml"
        config.write_text(yaml.safe_dump({"mappings": {"contact_points": CONTACT_POINTS}}))
        retry = self.settings.sync.retry
        extra = {
            "SFLS_CONFIG": str(config),
            "SFLS_LOG_LEVEL": "INFO",
            "SFLS_SYNC__CONCURRENCY": str(self.settings.sync.concurrency),
            "SFLS_SYNC__RETRY__MAX_ATTEMPTS": str(retry.max_attempts),
            "SFLS_SYNC__RETRY__BASE_SECONDS": str(retry.base_seconds),
            "SFLS_SYNC__RETRY__CAP_SECONDS": str(retry.cap_seconds),
            # A killed member's partitions move to its successor within seconds, not the default 45 s.
            "SFLS_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "SFLS_LISTENER__TRANSACTIONAL_ID": f"tx-{uuid.uuid4().hex[:10]}",
            "SFLS_LISTENER__INITIAL_REPLAY": "-2",
            "SFLS_LISTENER__RECONNECT_BASE_SECONDS": "0.2",
            "SFLS_LISTENER__RECONNECT_CAP_SECONDS": "2",
            "SFLS_LISTENER__WATCHDOG_SECONDS": "10",
            "SFLS_LISTENER__TRANSACTION_TIMEOUT_SECONDS": "20",
            "SFLS_LISTENER__BACKFILL_BATCH_SIZE": "200",
        }
        extra.update(self.env_extra)
        self.env = subprocess_env(self.settings, **extra)
        self.listener: ServiceProcess | None = None
        self.syncer: ServiceProcess | None = None

    def start_listener(self, *, wait_ready: bool = True) -> ServiceProcess:
        self.listener = self._start("listener")
        if wait_ready:
            self.listener.wait_ready(90)
        return self.listener

    def start_syncer(self) -> ServiceProcess:
        self.syncer = self._start("syncer")
        return self.syncer

    def _start(self, command: str) -> ServiceProcess:
        service = ServiceProcess.sfls(command, env=self.env, log=self.workdir / f"{command}.log")
        self.services.append(service)
        return service

    def check_alive(self) -> None:
        """Both services still run (neither gave up by itself)."""
        for service in (self.listener, self.syncer):
            if service is not None:
                service.check_alive()

    def close(self) -> None:
        for service in self.services:
            with contextlib.suppress(Exception):
                service.kill()

    def logs(self) -> str:
        """The end of each service's log (a restarted service appends to the same one)."""
        return "\n".join(f"--- {s.name} ---\n{s.tail(2500)}" for s in (self.listener, self.syncer) if s is not None)


@contextlib.contextmanager
def pipeline(*args: Any, **kwargs: Any) -> Iterator[Pipeline]:
    """A Pipeline that is closed (every process killed) however the test ends."""
    made = Pipeline(*args, **kwargs)
    try:
        yield made
    finally:
        made.close()


# --- Salesforce data and changes ------------------------------------------------------------------

TYPES = ("Customer", "Partner", "Reseller")
STATUSES = ("Active", "Suspended")
BILL_GROUPS = ("Bill Group 1st", "Bill Group 15th")
AR_TERMS = ("Net 30", "Net 15", "Net 60")
CITIES = ("Toronto", "Ottawa", "Montreal", "Vancouver")


def seed(sf: SalesforceEmulator, accounts: int) -> tuple[list[str], list[str]]:
    """`accounts` accounts with one contact each, inserted without CDC (not in LogiSense yet)."""
    account_ids = seed_accounts(sf, accounts)
    contact_ids = seed_contacts(sf, account_ids)
    return account_ids, contact_ids


class ChangeWriter:
    """Salesforce changes through REST, each touching a field the syncer maps."""

    CHUNK = 200  # sObject Collections take at most 200 records per call

    def __init__(self, sf: SalesforceEmulator, accounts: list[str], contacts: list[str]) -> None:
        self.sf = sf
        self.accounts = accounts
        self.contacts = contacts
        self.extra_contacts: list[str] = []
        self.changes = 0
        self._api = SalesforceApi(sf.settings())

    def relogin(self) -> None:
        """A fresh token (after the test expired every session)."""
        self._api.close()
        self._api = SalesforceApi(self.sf.settings())

    def _collection(self, method: str, records: list[dict[str, Any]], sobject: str) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for start in range(0, len(records), self.CHUNK):
            part = records[start : start + self.CHUNK]
            body = {"allOrNone": True, "records": [{"attributes": {"type": sobject}, **r} for r in part]}
            results += self._api.call(method, "/composite/sobjects", body)
        assert all(r["success"] for r in results), [r for r in results if not r["success"]][:3]
        self.changes += len(records)
        return results

    def round(self, number: int, indexes: range | None = None) -> None:
        """One change to every account in `indexes` (an account field or its contact's), in 200s."""
        account_updates: list[dict[str, Any]] = []
        contact_updates: list[dict[str, Any]] = []
        for i in indexes if indexes is not None else range(len(self.accounts)):
            kind = (i + number) % 5
            account = self.accounts[i]
            if kind == 0:
                account_updates.append({"Id": account, "Name": f"Acct {i:05d} r{number}"})
            elif kind == 1:
                account_updates.append(
                    {
                        "Id": account,
                        "Type": TYPES[(i + number) % len(TYPES)],
                        "LogiSense_Bill_Group__c": BILL_GROUPS[number % 2],
                    }
                )
            elif kind == 2:
                contact_updates.append(
                    {"Id": self.contacts[i], "Title": f"Title r{number}", "Email": f"c{i}.r{number}@example.com"}
                )
            elif kind == 3:
                contact_updates.append(
                    {
                        "Id": self.contacts[i],
                        "Phone": f"+1 555 {number:04d}",
                        "MailingCity": CITIES[(i + number) % len(CITIES)],
                    }
                )
            elif i % 2 and number % 2:  # odd accounts get (and lose) an even parent: never a cycle
                account_updates.append({"Id": account, "ParentId": self.accounts[i - 1]})
            elif i % 2:
                account_updates.append({"Id": account, "ParentId": None, "LogiSense_Status__c": STATUSES[number % 2]})
            else:
                account_updates.append({"Id": account, "LogiSense_AR_Term__c": AR_TERMS[number % len(AR_TERMS)]})
        self._collection("PATCH", account_updates, "Account")
        self._collection("PATCH", contact_updates, "Contact")

    def rename_all(self, tag: str) -> None:
        """A real change to every account (a unique Name), e.g. to bring them all into LogiSense."""
        self._collection(
            "PATCH", [{"Id": a, "Name": f"Acct {i:05d} {tag}"} for i, a in enumerate(self.accounts)], "Account"
        )

    def add_contacts(self, every: int = 7) -> None:
        """A second contact on every `every`-th account (Contact CREATE events)."""
        records = [
            {
                "AccountId": account,
                "FirstName": "Second",
                "LastName": f"Contact {i}",
                "Title": "Ops",
                "Email": f"second.{i}@example.com",
                "LogiSense_Contact_Type__c": "Technical",
            }
            for i, account in enumerate(self.accounts)
            if i % every == 0
        ]
        results = self._collection("POST", records, "Contact")
        self.extra_contacts += [str(r["id"]) for r in results]

    def delete_contacts(self, count: int) -> None:
        """Delete the first `count` added contacts (Contact DELETE events)."""
        doomed, self.extra_contacts = self.extra_contacts[:count], self.extra_contacts[count:]
        for start in range(0, len(doomed), self.CHUNK):
            part = doomed[start : start + self.CHUNK]
            results = self._api.call("DELETE", f"/composite/sobjects?ids={','.join(part)}&allOrNone=true")
            assert all(r["success"] for r in results), results[:3]
        self.changes += len(doomed)

    def close(self) -> None:
        self._api.close()


# --- convergence ------------------------------------------------------------------------------------


def wait_converged(
    sf: SalesforceEmulator,
    ls: LogisenseEmulator,
    settings: Settings,
    timeout: float,
    *,
    alive: Callable[[], None] = lambda: None,
    context: Callable[[], str] = lambda: "",
    exclude: Callable[[], set[str]] = set,
) -> None:
    """Poll devstack.compare.differences until LogiSense equals Salesforce; fail with the last differences.

    `alive()` runs before every look (a service that exited ends the wait at once); `exclude()`
    names accounts left out of the per-account comparison.
    """
    refs = load_references(ls.settings())
    seen: list[str] = []

    def look() -> list[str]:
        alive()
        seen[:] = differences(
            sf.records("Account"), sf.records("Contact"), ls.accounts(), settings, refs, exclude=exclude()
        )
        return seen

    def shown() -> str:
        return f"{len(seen)} differences, the first:\n  " + "\n  ".join(seen[:15]) + f"\n{context()}"

    wait_until(look, timeout, "LogiSense to equal Salesforce", until=lambda found: not found, every=2, context=shown)


def must_publish(event: dict[str, Any], settings: Settings) -> bool:
    """True when a retained CDC message carries a change the listener must publish.

    An UPDATE that touched no trigger field (shared/mapping.py: e.g. only LastModifiedDate,
    when a write set a field to the value it had) is dropped by design.
    """
    header = event["data"]["payload"]["ChangeEventHeader"]
    if header["changeType"] != "UPDATE":
        return True
    triggers = (
        account_trigger_fields(settings) if header["entityName"] == "Account" else contact_trigger_fields(settings)
    )
    return any(names_any(name, triggers) for name in header.get("changedFields", []))


def published_events(kafka_settings: KafkaSettings) -> list[ChangeEvent]:
    """Every committed change event in the changes topic."""
    topic = kafka.Topics(kafka_settings.topic_prefix).changes
    return [ChangeEvent.from_bytes(m.value() or b"") for m in read_committed(kafka_settings, topic, timeout=60)]


def missing_changes(sf: SalesforceEmulator, kafka_settings: KafkaSettings, settings: Settings) -> list[int]:
    """Replay ids of CDC messages with a synced change that produced no change event in Kafka."""
    published = {e.replay_id for e in published_events(kafka_settings) if e.replay_id is not None}
    wanted = [e["replayId"] for e in sf.events() if set(e["channels"]) & set(CHANNELS) and must_publish(e, settings)]
    assert wanted, "no CDC message carried a synced change"
    return sorted(set(wanted) - published)


def dead_letters(kafka_settings: KafkaSettings) -> list[DeadLetter]:
    """The syncer's dead letters, parsed."""
    topic = kafka.Topics(kafka_settings.topic_prefix).changes_dlt
    return [parse_dead_letter(m) for m in read_committed(kafka_settings, topic, timeout=60)]


__all__ = [
    "ChangeWriter",
    "Pipeline",
    "dead_letters",
    "full_scale",
    "missing_changes",
    "pipeline",
    "scaled",
    "seed",
    "wait_converged",
    "wait_until",
]
