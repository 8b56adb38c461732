"""`sfls test-connection` against the emulators and the real broker: one line per system, honest exit code."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from services.connection import check_all, check_kafka, check_logisense, check_salesforce
from shared.settings import KafkaSettings, Settings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.salesforce import SalesforceEmulator

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(
    salesforce_emulator: SalesforceEmulator, logisense_emulator: LogisenseEmulator, kafka_bootstrap: str
) -> Settings:
    return Settings(
        salesforce=salesforce_emulator.settings(),
        logisense=logisense_emulator.settings(),
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
    )


def test_all_systems_pass(settings: Settings, salesforce_emulator: SalesforceEmulator) -> None:
    """With the right settings every check passes, after a real token and a real query."""
    results = check_all(settings)
    assert [(r.system, r.ok) for r in results] == [("salesforce", True), ("logisense", True), ("kafka", True)]
    assert salesforce_emulator.counters()["query"] >= 1


def test_salesforce_shows_the_daily_api_requests_left_and_the_reserve(
    settings: Settings, salesforce_emulator: SalesforceEmulator
) -> None:
    """The Salesforce line tells what the org has left of its daily API requests, and when that is sfls's reserve."""
    salesforce_emulator.admin("POST", "limits", {"max": {"DailyApiRequests": 10_000}, "used": {"DailyApiRequests": 0}})
    result = check_salesforce(settings)
    assert result.ok, result
    left = salesforce_emulator.admin("GET", "limits")["limits"]["DailyApiRequests"]["remaining"]
    assert f"daily API requests: {left:,} of 10,000 left (sfls keeps 2,000 in reserve)" in result.detail

    salesforce_emulator.admin("POST", "limits", {"used": {"DailyApiRequests": 8_500}})
    result = check_salesforce(settings)
    assert result.ok, result  # the connection works; the budget is a warning in the line
    assert "BELOW THE RESERVE: imports, backfills and reconcile will pause" in result.detail


def test_wrong_credentials_name_the_settings(settings: Settings) -> None:
    """Refused logins fail with the settings to check, and never echo the password."""
    bad = settings.model_copy(
        update={
            "salesforce": settings.salesforce.model_copy(update={"password": SecretStr("wrong-pass-123")}),
            "logisense": settings.logisense.model_copy(update={"password": SecretStr("wrong-pass-456")}),
        }
    )
    sf, ls = check_salesforce(bad), check_logisense(bad)
    assert not sf.ok
    assert "SFLS_SALESFORCE__PASSWORD" in sf.hint
    assert not ls.ok
    assert "SFLS_LOGISENSE__PASSWORD" in ls.hint
    assert all("wrong-pass" not in text for text in (sf.detail, sf.hint, ls.detail, ls.hint))


def test_untrusted_certificate_and_unreachable_systems(settings: Settings) -> None:
    """A missing CA says which CA setting to set; a dead broker says which address to check."""
    no_ca = settings.model_copy(
        update={
            "salesforce": settings.salesforce.model_copy(update={"ca_file": None}),
            "logisense": settings.logisense.model_copy(update={"ca_file": None}),
            "kafka": KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        }
    )
    sf, ls, kafka = check_salesforce(no_ca), check_logisense(no_ca), check_kafka(no_ca)
    assert (sf.ok, ls.ok, kafka.ok) == (False, False, False)
    assert "SFLS_SALESFORCE__CA_FILE" in sf.hint
    assert "SFLS_LOGISENSE__CA_FILE" in ls.hint
    assert "SFLS_KAFKA__BOOTSTRAP_SERVERS" in kafka.hint
