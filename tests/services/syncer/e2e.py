"""End-to-end helpers for syncer tests: settings for both emulators, running the syncer, comparing states."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

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
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFLS_")}
    sf, ls = settings.salesforce, settings.logisense
    env.update(
        {
            "SFLS_SALESFORCE__INSTANCE_URL": sf.instance_url,
            "SFLS_SALESFORCE__CA_FILE": sf.ca_file or "",
            "SFLS_SALESFORCE__CLIENT_ID": sf.client_id,
            "SFLS_SALESFORCE__CLIENT_SECRET": sf.client_secret.get_secret_value(),
            "SFLS_SALESFORCE__USERNAME": sf.username,
            "SFLS_SALESFORCE__PASSWORD": sf.password.get_secret_value(),
            "SFLS_LOGISENSE__BASE_URL": ls.base_url,
            "SFLS_LOGISENSE__CA_FILE": ls.ca_file or "",
            "SFLS_LOGISENSE__CLIENT_ID": ls.client_id,
            "SFLS_LOGISENSE__USERNAME": ls.username,
            "SFLS_LOGISENSE__PASSWORD": ls.password.get_secret_value(),
            "SFLS_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "SFLS_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "SFLS_KAFKA__PARTITIONS": str(settings.kafka.partitions),
            "SFLS_SYNC_INTERVAL_MINUTES": str(settings.sync.interval_minutes),
            "SFLS_SYNC__RETRY__BASE_SECONDS": "0.01",
            "SFLS_SYNC__RETRY__CAP_SECONDS": "0.05",
            "SFLS_OBSERVABILITY__METRICS_PORT": "0",
        }
    )
    env.update(extra)
    return env


def committed(settings: Settings) -> int:
    """Records of sfls.changes the syncer's group has committed."""
    topic = kafka.Topics(settings.kafka.topic_prefix).changes
    return committed_records(settings.kafka, group_id(settings), topic)


async def run_syncer(settings: Settings, until: Callable[[], bool], within_seconds: float = 90.0) -> SyncerService:
    """Run the syncer in this event loop until `until()` holds, then stop it like SIGTERM would."""
    service = SyncerService(settings, install_signals=False)
    task = asyncio.create_task(service.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_seconds
    try:
        while loop.time() < deadline:
            if task.done():
                task.result()
                raise AssertionError("the syncer stopped by itself")
            if await asyncio.to_thread(until):
                break
            await asyncio.sleep(0.2)
        else:
            seen = await asyncio.to_thread(committed, settings)
            raise AssertionError(
                f"the syncer did not reach the expected state in {within_seconds:g} s; last seen: its group had"
                f" committed {seen} records of {kafka.Topics(settings.kafka.topic_prefix).changes}"
            )
    finally:
        service.stop()
        await asyncio.wait_for(task, 60)
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


def assert_same_state(sf: SalesforceEmulator, ls: LogisenseEmulator, *, only: set[str] | None = None) -> None:
    """LogiSense holds exactly one account per live Salesforce account, with the mapped values."""
    sf_accounts = {r["Id"]: r for r in sf.records("Account") if not r.get("IsDeleted")}
    if only is not None:
        sf_accounts = {k: v for k, v in sf_accounts.items() if k in only}
    sf_contacts: dict[str, list[dict[str, Any]]] = {}
    for contact in sf.records("Contact"):
        if not contact.get("IsDeleted"):
            sf_contacts.setdefault(contact["AccountId"], []).append(contact)
    ls_accounts = ls.accounts()
    links = Counter(a.get("sfdcid") for a in ls_accounts)
    duplicates = {k: n for k, n in links.items() if k and n > 1}
    assert not duplicates, f"duplicate LogiSense accounts: {duplicates}"
    by_link = {a["sfdcid"]: a for a in ls_accounts if a.get("sfdcid")}
    by_identity = {a["identity"]: a for a in ls_accounts}
    missing = sorted(set(sf_accounts) - set(by_link))
    assert not missing, f"{len(missing)} Salesforce accounts missing in LogiSense, e.g. {missing[:3]}"
    for account_id, record in sf_accounts.items():
        account = by_link[account_id]
        assert account["name"] == record["Name"]
        assert account["accountTypeName"] == record["Type"]
        assert account["accountStatusTypeName"] == record["LogiSense_Status__c"]
        assert account["billGroupName"] == record["LogiSense_Bill_Group__c"]
        assert account["accountsReceivableTermsName"] == record["LogiSense_AR_Term__c"]
        parent = by_identity.get(account.get("parentAccountId"))
        assert (parent or {}).get("sfdcid") == record.get("ParentId"), account_id
        wanted = {c["Id"]: c for c in sf_contacts.get(account_id, [])}
        got: dict[str, dict[str, Any]] = {}
        for contact in account.get("contacts", []):
            points = {p.get("contactPointTypeName"): p for p in contact.get("contactPoints", [])}
            link = points.get("sfdcid", {}).get("value")
            assert link not in got, f"duplicate LogiSense contact for {link}"
            got[link] = {**contact, "points": points}
        assert set(got) == set(wanted), account_id
        for contact_id, contact in wanted.items():
            mine = got[contact_id]
            assert (mine["firstName"], mine["lastName"], mine["title"]) == (
                contact["FirstName"],
                contact["LastName"],
                contact["Title"],
            )
            assert mine["contactTypeName"] == (contact["LogiSense_Contact_Type__c"] or "Billing")
            assert mine["points"]["email"]["value"] == contact["Email"]
            assert mine["points"]["address"]["city"] == contact["MailingCity"]
