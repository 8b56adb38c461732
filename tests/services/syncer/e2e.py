"""End-to-end helpers for syncer tests: settings for both emulators, running the syncer, comparing states
(devstack.compare)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from devstack.compare import differences, load_references
from services.syncer.app import SyncerService, group_id
from shared import kafka
from shared.kafka_reader import committed_records
from shared.settings import (
    AccountExtension,
    MappingSettings,
    ObservabilitySettings,
    RetrySettings,
    Settings,
    SyncSettings,
)
from tests.environment import sfls_env
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator

POINTS = {"email": "Email", "phone": "Phone", "address": "MailingAddress", "sfdcid": "Id"}
CONTACT_POINTS = {name: dict(POINTS) for name in ("Billing", "Shipping", "Technical", "Other")}


def syncer_settings(
    kafka_settings: Any,
    sf: SalesforceEmulator,
    ls: LogisenseEmulator,
    *,
    extensions: tuple[AccountExtension, ...] = (),
    max_attempts: int = 6,
    **sync: Any,
) -> Settings:
    sync.setdefault("interval_minutes", 0.02)
    return Settings(
        kafka=kafka_settings,
        salesforce=sf.settings(),
        logisense=ls.settings(),
        sync=SyncSettings(retry=RetrySettings(max_attempts=max_attempts, base_seconds=0.01, cap_seconds=0.05), **sync),
        mappings=MappingSettings(contact_points=CONTACT_POINTS, account_extensions=extensions),
        observability=ObservabilitySettings(metrics_port=0, log_level="WARNING", log_format="console"),
    )


def settings_with_notes(kafka_settings: Any, sf: SalesforceEmulator, ls: LogisenseEmulator) -> Settings:
    """Syncer settings mapping Account.Description to a LogiSense custom field `notes` (created here), whose
    length limit lets a test make LogiSense reject one account."""
    ls.admin("POST", "custom-fields", {"resource": "Account", "column": "notes"})
    return syncer_settings(
        kafka_settings, sf, ls, extensions=(AccountExtension(salesforce="Description", logisense="notes"),)
    )


def subprocess_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that points an `sfls syncer` process at the test's broker and emulators."""
    return sfls_env(
        salesforce=settings.salesforce,
        logisense=settings.logisense,
        kafka=settings.kafka,
        **{  # the caller's `extra` wins over these defaults
            "SFLS_SYNC_INTERVAL_MINUTES": str(settings.sync.interval_minutes),
            "SFLS_SYNC__RETRY__BASE_SECONDS": "0.01",
            "SFLS_SYNC__RETRY__CAP_SECONDS": "0.05",
            "SFLS_OBSERVABILITY__METRICS_PORT": "0",
            **extra,
        },
    )


def committed(settings: Settings) -> int:
    """Records of sfls.changes the syncer's group has committed."""
    topic = kafka.Topics(settings.kafka.topic_prefix).changes
    return committed_records(settings.kafka, group_id(settings), topic)


class Service(Protocol):
    """A long-running service run in the test's event loop: the syncer, the Requests tab writer."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


async def run_service(
    service: Service, until: Callable[[], bool], within_seconds: float, last_seen: Callable[[], str]
) -> None:
    """Run `service` in this event loop until `until()` holds, then stop it like SIGTERM would; on timeout,
    fail saying what `last_seen()` reports."""
    task = asyncio.create_task(service.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_seconds
    try:
        while loop.time() < deadline:
            if task.done():
                task.result()
                raise AssertionError(f"{type(service).__name__} stopped by itself")
            if await asyncio.to_thread(until):
                break
            await asyncio.sleep(0.2)
        else:
            seen = await asyncio.to_thread(last_seen)
            raise AssertionError(
                f"{type(service).__name__} did not reach the expected state in {within_seconds:g} s; last seen: {seen}"
            )
    finally:
        service.stop()
        await asyncio.wait_for(task, 60)


async def run_syncer(settings: Settings, until: Callable[[], bool], within_seconds: float = 90.0) -> SyncerService:
    """Run the syncer in this event loop until `until()` holds, then stop it like SIGTERM would."""
    service = SyncerService(settings, install_signals=False)
    topic = kafka.Topics(settings.kafka.topic_prefix).changes
    await run_service(
        service, until, within_seconds, lambda: f"its group had committed {committed(settings)} records of {topic}"
    )
    return service


def seed_accounts(sf: SalesforceEmulator, count: int, *, prefix: str = "Acct", **values: Any) -> list[str]:
    records = [
        {
            "Name": f"{prefix} {i:04d}",
            "Type": "Customer" if i % 2 else "Partner",
            "LogiSense_Status__c": "Active",
            "LogiSense_Bill_Group__c": "Bill Group 15th" if i % 3 else "Bill Group 1st",
            "LogiSense_AR_Term__c": "Net 30",
            **values,
        }
        for i in range(count)
    ]
    return sf.seed("Account", records)


def seed_contacts(sf: SalesforceEmulator, account_ids: list[str], per_account: int = 1) -> list[str]:
    records = [
        {
            "AccountId": account_id,
            "FirstName": f"First{n}",
            "LastName": f"Last {account_id[-6:]}",
            "Title": "Billing manager",
            "Email": f"c{n}.{account_id[-6:].lower()}@example.com",
            "Phone": "+1 555 0100",
            "LogiSense_Contact_Type__c": "Billing" if n % 2 == 0 else "Technical",
            "MailingStreet": "1 Main St",
            "MailingCity": "Toronto",
            "MailingState": "ON",
            "MailingPostalCode": "M5V 1A1",
            "MailingCountry": "CA",
        }
        for account_id in account_ids
        for n in range(per_account)
    ]
    return sf.seed("Contact", records)


def assert_same_state(sf: SalesforceEmulator, ls: LogisenseEmulator, settings: Settings) -> None:
    """LogiSense equals Salesforce, as devstack.compare.differences judges it with the syncer's `settings`.

    The reference lookup is read from LogiSense in a worker thread: callers may be inside a running event loop.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        lookup = pool.submit(load_references, settings.logisense).result()
    found = differences(sf.records("Account"), sf.records("Contact"), ls.accounts(), settings, lookup)
    assert not found, f"LogiSense differs from Salesforce in {len(found)} ways:\n  " + "\n  ".join(found)
