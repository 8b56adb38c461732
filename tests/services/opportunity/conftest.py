"""The `world` fixture of the quote-to-cash tests (tests/services/opportunity/world.py)."""

from __future__ import annotations

import asyncio

import pytest
from simple_salesforce.api import Salesforce

from shared.settings import KafkaSettings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.opportunity.world import ACCOUNT, BOOK, World, ls_create, make_package


@pytest.fixture
def world(
    sf: Salesforce,
    salesforce_emulator: SalesforceEmulator,
    logisense_emulator: LogisenseEmulator,
    kafka_settings: KafkaSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    """A synced account (LogiSense account with its sfdcid), the LogiSense book, and a USD package in LogiSense."""
    w = World(sf, logisense_emulator, salesforce_emulator, kafka_settings, monkeypatch)
    w.account_id = str(sf.Account.create({"Name": "Acme Corp"})["id"])
    account = asyncio.run(ls_create(logisense_emulator, "Account", {**ACCOUNT, "sfdcid": w.account_id}))
    w.logisense_account = account["identity"]
    w.book_id = str(sf.Pricebook2.create({"Name": BOOK, "IsActive": True})["id"])
    w.package = asyncio.run(make_package(logisense_emulator))
    return w
