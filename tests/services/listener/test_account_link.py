"""The Account link never causes a sync loop: the syncer's write-back comes back from CDC and is dropped.

The listener, the syncer and CDC run for real: a Salesforce user creates an account, the listener forwards the
change, the syncer syncs it and writes the link (services/syncer/link.py) on the Account. That write is a change
event in Salesforce; the listener drops it as sfls's own echo, and an untagged edit of only the link fields as no
trigger change. A later edit of the Name proves the listener read past both: the change topic holds exactly the
create and that edit, and the syncer synced the account once for each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from shared.events import ChangeType
from shared.salesforce_view import ACCOUNT_LOGISENSE_ID, ACCOUNT_SYNC_REASON, ACCOUNT_SYNC_STATUS
from shared.settings import KafkaSettings
from tests.fixtures.logisense import LogisenseEmulator
from tests.fixtures.schema import deploy_schema
from tests.services.listener.conftest import ListenerThread
from tests.services.listener.support import SalesforceApi, change_events
from tests.services.syncer.e2e import run_syncer, syncer_settings
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.transports("cometd")]


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("sfls_listener_changes_dropped_total", {"reason": reason}) or 0.0


@pytest.fixture
def api(emulator: Any) -> Iterator[SalesforceApi]:
    client = SalesforceApi(emulator.settings())
    yield client
    client.close()


async def test_the_account_link_write_is_never_forwarded(
    emulator: Any,
    api: SalesforceApi,
    kafka_settings: KafkaSettings,
    logisense_emulator: LogisenseEmulator,
    run_listener_thread: Callable[..., ListenerThread],
) -> None:
    """The link's change events: produced by Salesforce, 0 forwarded; each edit synced."""
    settings = syncer_settings(kafka_settings, emulator, logisense_emulator)
    deploy_schema(emulator, settings)
    run_listener_thread()
    echoes, untriggered = dropped("echo"), dropped("not_trigger")
    account = api.create("Account", {"Name": "Linked Ltd", "Type": "Customer"})
    wait_until(lambda: len(change_events(kafka_settings)), 30, "the create's change event", until=lambda n: n >= 1)

    def linked() -> bool:
        (record,) = [a for a in emulator.records("Account") if a["Id"] == account]
        return record[ACCOUNT_SYNC_STATUS] == "Synced" and bool(record[ACCOUNT_LOGISENSE_ID])

    await run_syncer(settings, linked)
    wait_until(lambda: dropped("echo"), 30, "the link's echo dropped by the listener", until=lambda n: n > echoes)
    api.update("Account", account, {ACCOUNT_SYNC_REASON: "edited by an admin"})  # untagged, only a link field
    wait_until(lambda: dropped("not_trigger"), 30, "the link-only edit dropped", until=lambda n: n > untriggered)
    api.update("Account", account, {"Name": "Linked Limited"})
    events = wait_until(lambda: change_events(kafka_settings), 30, "the rename's event", until=lambda e: len(e) >= 2)

    assert [(e.record_id, e.change_type) for e in events] == [
        (account, ChangeType.CREATE),
        (account, ChangeType.UPDATE),
    ]
    assert events[1].fields.get("Name") == "Linked Limited"
    produced = [e for e in emulator.events() if e.get("recordIds", [None])[0] == account or account in str(e)]
    assert len(produced) >= 4, produced  # create, the link, the admin's edit, the rename: Salesforce sent them all
    echoes = dropped("echo")
    names = lambda: [a["name"] for a in logisense_emulator.accounts()]  # noqa: E731
    await run_syncer(settings, lambda: names() == ["Linked Limited"])
    wait_until(lambda: dropped("echo"), 30, "the second link's echo dropped", until=lambda n: n > echoes)
    assert len(change_events(kafka_settings)) == 2  # still the create and the rename: no loop
