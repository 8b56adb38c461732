"""Helpers for the failure tests: services as processes, a change generator, convergence checks.

- `scaled(ci, full)`: the size a test runs at. CI runs the small size; `SFLS_RELIABILITY_SCALE=full`
  runs the full sizes (20,000 changes over 2,000 accounts, a 60-second outage, ...).
- `Pipeline`: `sfls listener` and `sfls syncer` as subprocesses pointed at the test's emulators and
  broker (the environment of the syncer process tests plus the listener's knobs); start, kill -9,
  restart, and always stopped at the end.
- `ChangeWriter`: changes made through the Salesforce emulator's REST API (sObject Collections,
  one transaction per 200 records), so they travel CDC -> listener -> Kafka -> syncer -> LogiSense.
- `differences(...)`: LogiSense compared with Salesforce field for field, every field the mapping
  (shared/mapping.py) syncs, contacts and contact points included, plus duplicate `sfdcid` links
  of accounts and contacts; `wait_converged` polls it until it is empty.
- `missing_changes(...)`: CDC messages the emulator delivered that never reached the changes topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from devstack.kafka import free_port
from services.syncer.references import References
from shared import kafka
from shared.deadletter import DeadLetter, parse_dead_letter
from shared.errors import MappingError
from shared.events import ChangeEvent
from shared.mapping import (
    account_trigger_fields,
    contact_trigger_fields,
    is_trigger,
    map_account,
    map_contact,
)
from shared.settings import KafkaSettings, Settings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.listener.support import SalesforceApi, read_committed
from tests.services.syncer.e2e import CONTACT_POINTS, seed_accounts, seed_contacts, subprocess_env, syncer_settings
from tests.waiting import wait_until

SCALE_ENV = "SFLS_RELIABILITY_SCALE"
SFLS = str(Path(sys.executable).with_name("sfls"))
CHANNELS = ("/data/AccountChangeEvent", "/data/ContactChangeEvent")


def full_scale() -> bool:
    """True when `SFLS_RELIABILITY_SCALE=full` asks for the full sizes."""
    return os.environ.get(SCALE_ENV, "ci").strip().lower() == "full"


def scaled(ci: Any, full: Any) -> Any:
    """The CI size, or the issue's size under SFLS_RELIABILITY_SCALE=full."""
    return full if full_scale() else ci


# --- services as processes --------------------------------------------------------------------------


class Service:
    """One `sfls <command>` process with its own metrics port; output appended to a log file."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.command = command
        self.port = free_port()
        self.log = log
        with log.open("ab") as sink:
            self.process = subprocess.Popen(
                [SFLS, command],
                env={**env, "SFLS_OBSERVABILITY__METRICS_PORT": str(self.port)},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str) -> requests.Response | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except requests.RequestException:
            return None

    def ready(self) -> bool:
        assert self.alive, f"sfls {self.command} exited with {self.process.returncode}:\n{self.tail()}"
        answer = self.get("/readyz")
        return answer is not None and answer.status_code == 200

    def metric(self, name: str, labels: str = "") -> float | None:
        """A sample of /metrics, e.g. metric("sfls_listener_reconnects_total", 'reason="auth"')."""
        answer = self.get("/metrics")
        if answer is None:
            return None
        wanted = f"{name}{{{labels}}}" if labels else name
        total = None
        for line in answer.text.splitlines():
            if line.startswith(wanted + " ") or (not labels and line.startswith(name + "{")):
                total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        """kill -9, as a node failure or the OOM killer would."""
        if self.alive:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Pipeline:
    """The listener and the syncer as processes for one test; `close()` kills whatever still runs."""

    kafka_settings: KafkaSettings
    sf: SalesforceEmulator
    ls: LogisenseEmulator
    workdir: Path
    sync: dict[str, Any] = field(default_factory=dict)
    env_extra: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)

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
        self.listener: Service | None = None
        self.syncer: Service | None = None

    def start_listener(self, *, wait_ready: bool = True) -> Service:
        self.listener = self._start("listener")
        if wait_ready:
            wait_until(self.listener.ready, 90, "listener /readyz", context=self.listener.tail)
        return self.listener

    def start_syncer(self) -> Service:
        self.syncer = self._start("syncer")
        return self.syncer

    def _start(self, command: str) -> Service:
        service = Service(command, self.env, self.workdir / f"{command}.log")
        self.services.append(service)
        return service

    def check_alive(self) -> None:
        """Both services still run (neither gave up by itself)."""
        for service in (self.listener, self.syncer):
            if service is not None:
                assert service.alive, (
                    f"sfls {service.command} exited with {service.process.returncode}:\n{service.tail()}"
                )

    def close(self) -> None:
        for service in self.services:
            with contextlib.suppress(Exception):
                service.kill()

    def logs(self) -> str:
        parts = []
        for name in ("listener", "syncer"):
            path = self.workdir / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name} ---\n{path.read_text(errors='replace')[-2500:]}")
        return "\n".join(parts)


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


def load_references(ls: LogisenseEmulator) -> References:
    """LogiSense's reference data (names -> ids, contact point types), read like the syncer reads it."""

    async def load() -> References:
        refs = References()
        async with ls.client() as client:
            await refs.load(client)
        return refs

    return asyncio.run(load())


def _id15(value: Any) -> str:
    return str(value or "")[:15]


def differences(
    sf: SalesforceEmulator,
    ls: LogisenseEmulator,
    settings: Settings,
    refs: References,
    *,
    exclude: Callable[[], set[str]] = set,
) -> list[str]:
    """Every way LogiSense differs from Salesforce (empty when they are equal), duplicates included.

    For each live Salesforce account the expected LogiSense body comes from shared.mapping
    (map_account/map_contact, the syncer's own mapping) and every field of it must match;
    parent and invoice recipient must point at the LogiSense accounts linked to the right
    Salesforce ids; each live contact must exist once with its body and exactly its mapped
    contact points; no LogiSense account or contact may carry a Salesforce id twice.
    `exclude()` names accounts (15-character ids) left out of the field comparison.
    """
    link = settings.logisense.link_field
    problems: list[str] = []
    sf_accounts = {_id15(r["Id"]): r for r in sf.records("Account") if not r.get("IsDeleted")}
    sf_contacts: dict[str, list[dict[str, Any]]] = {}
    for contact in sf.records("Contact"):
        if not contact.get("IsDeleted"):
            sf_contacts.setdefault(_id15(contact.get("AccountId")), []).append(contact)
    ls_accounts = ls.accounts()
    account_links = Counter(_id15(a.get(link)) for a in ls_accounts if a.get(link))
    problems += [f"account {k} is in LogiSense {n} times" for k, n in account_links.items() if n > 1]
    contact_links: Counter[str] = Counter()
    for account in ls_accounts:
        for contact in account.get("contacts", []):
            for point in contact.get("contactPoints", []):
                if point.get("contactPointTypeName") == link and point.get("value"):
                    contact_links[_id15(point["value"])] += 1
    problems += [f"contact {k} is in LogiSense {n} times" for k, n in contact_links.items() if n > 1]
    by_link = {_id15(a.get(link)): a for a in ls_accounts if a.get(link)}
    by_identity = {a["identity"]: a for a in ls_accounts}
    skipped = {_id15(i) for i in exclude()}
    for sid, record in sorted(sf_accounts.items()):
        if sid in skipped:
            continue
        account = by_link.get(sid)
        if account is None:
            problems.append(f"account {sid} is missing in LogiSense")
            continue
        try:
            mapped = map_account(record, settings, refs)
        except MappingError as exc:
            problems.append(f"account {sid} cannot be mapped: {exc}")
            continue
        for key, wanted in mapped.body.items():
            if account.get(key) != wanted:
                problems.append(f"account {sid} {key}: LogiSense {account.get(key)!r}, Salesforce {wanted!r}")
        for key, wanted_sf in (
            ("parentAccountId", mapped.parent_sfdc_id),
            ("invoicerAccountId", mapped.invoicer_sfdc_id),
        ):
            target = by_identity.get(account.get(key))
            got = _id15(target.get(link)) if target else ""
            if got != _id15(wanted_sf):
                problems.append(f"account {sid} {key}: LogiSense -> {got or None}, Salesforce -> {wanted_sf}")
        problems += _contact_differences(sid, account, sf_contacts.get(sid, []), settings, refs)
    return problems


def _contact_differences(
    sid: str, account: dict[str, Any], wanted: list[dict[str, Any]], settings: Settings, refs: References
) -> list[str]:
    link = settings.logisense.link_field
    problems: list[str] = []
    got: dict[str, dict[str, Any]] = {}
    for contact in account.get("contacts", []):
        points = {p.get("contactPointTypeName"): p for p in contact.get("contactPoints", [])}
        got[_id15((points.get(link) or {}).get("value"))] = {**contact, "points": points}
    wanted_ids = {_id15(c["Id"]) for c in wanted}
    extra = sorted(set(got) - wanted_ids)
    if extra:
        problems.append(f"account {sid} has LogiSense contacts Salesforce lacks: {extra}")
    for record in wanted:
        cid = _id15(record["Id"])
        mine = got.get(cid)
        if mine is None:
            problems.append(f"contact {cid} of account {sid} is missing in LogiSense")
            continue
        mapped = map_contact(record, settings, refs, default_contact_type=settings.sync.default_contact_type)
        for key, value in mapped.body.items():
            if mine.get(key) != value:
                problems.append(f"contact {cid} {key}: LogiSense {mine.get(key)!r}, Salesforce {value!r}")
        if set(mine["points"]) != set(mapped.points):
            problems.append(
                f"contact {cid} points: LogiSense {sorted(mine['points'])}, Salesforce {sorted(mapped.points)}"
            )
        for name, body in mapped.points.items():
            point = mine["points"].get(name, {})
            for key, value in body.items():
                if point.get(key) != value:
                    problems.append(
                        f"contact {cid} point {name}.{key}: LogiSense {point.get(key)!r}, Salesforce {value!r}"
                    )
    return problems


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
    """Poll until LogiSense equals Salesforce (see `differences`); fail with the first differences."""
    refs = load_references(ls)
    deadline = time.monotonic() + timeout
    problems: list[str] = []
    while time.monotonic() < deadline:
        alive()
        problems = differences(sf, ls, settings, refs, exclude=exclude)
        if not problems:
            return
        time.sleep(2)
    shown = "\n  ".join(problems[:15])
    raise AssertionError(
        f"LogiSense did not converge in {timeout:.0f} s; {len(problems)} differences:\n  {shown}\n{context()}"
    )


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
    return any(is_trigger(name, triggers) for name in header.get("changedFields", []))


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
    "Service",
    "dead_letters",
    "differences",
    "full_scale",
    "missing_changes",
    "pipeline",
    "scaled",
    "seed",
    "wait_converged",
    "wait_until",
]
