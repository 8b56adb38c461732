"""Change events the emulator publishes for REST writes, shaped as Salesforce's CometD CDC events."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from devstack.salesforce.cdc import long_text_diff
from tests.fixtures.salesforce import SalesforceEmulator

pytestmark = pytest.mark.integration


def _payloads(emulator: SalesforceEmulator, channel: str | None = None) -> list[dict[str, Any]]:
    return [e["data"]["payload"] for e in emulator.events() if channel is None or channel in e["channels"]]


def test_create_carries_all_non_null_fields_nested(salesforce_emulator: SalesforceEmulator) -> None:
    """CREATE has every non-null field plus system fields, compound fields nested, no Id or IsDeleted."""
    rest = salesforce_emulator.rest()
    account_id = rest.create("Account", {"Name": "Acme", "BillingCity": "Paris", "BillingCountry": "FR"})
    rest.create(
        "Contact",
        {"LastName": "Lovelace", "FirstName": "Ada", "Salutation": "Ms.", "AccountId": account_id, "Email": None},
    )
    account, contact = _payloads(salesforce_emulator)
    header = account["ChangeEventHeader"]
    assert header["changeType"] == "CREATE"
    assert header["changedFields"] == []
    assert account["BillingAddress"] == {"City": "Paris", "Country": "FR"}
    assert account["Name"] == "Acme"
    assert {"CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "OwnerId"} <= set(account)
    assert not {"Id", "IsDeleted", "SystemModstamp", "BillingCity", "Type"} & set(account)
    assert account["CreatedDate"].endswith("Z")
    assert contact["Name"] == {"Salutation": "Ms.", "FirstName": "Ada", "LastName": "Lovelace"}
    assert contact["AccountId"] == account_id
    assert "Email" not in contact
    assert "nulledFields" not in contact["ChangeEventHeader"]
    assert "diffFields" not in contact["ChangeEventHeader"]


def test_update_carries_only_changed_fields(salesforce_emulator: SalesforceEmulator) -> None:
    """UPDATE has just the changed fields plus LastModifiedDate; nulls are explicit; components dotted."""
    rest = salesforce_emulator.rest()
    account_id = rest.create("Account", {"Name": "Acme", "Phone": "1", "BillingCity": "Paris", "BillingState": "IDF"})
    rest.update("Account", account_id, {"Name": "Acme", "Phone": None, "BillingCity": "Lyon", "Type": "Customer"})
    update = _payloads(salesforce_emulator)[-1]
    header = update["ChangeEventHeader"]
    assert header["changeType"] == "UPDATE"
    assert header["changedFields"] == ["Type", "Phone", "BillingAddress.City", "LastModifiedDate"]
    assert set(update) == {"ChangeEventHeader", "Type", "Phone", "BillingAddress", "LastModifiedDate"}
    assert update["Phone"] is None
    assert update["BillingAddress"] == {"City": "Lyon"}


def test_update_without_changes_still_emits_last_modified(salesforce_emulator: SalesforceEmulator) -> None:
    """Saving identical values emits an UPDATE whose only changed field is LastModifiedDate."""
    rest = salesforce_emulator.rest()
    account_id = rest.create("Account", {"Name": "Same"})
    rest.update("Account", account_id, {"Name": "Same"})
    update = _payloads(salesforce_emulator)[-1]
    assert update["ChangeEventHeader"]["changedFields"] == ["LastModifiedDate"]
    assert set(update) == {"ChangeEventHeader", "LastModifiedDate"}


def test_delete_is_header_only_and_cascades_to_contacts(salesforce_emulator: SalesforceEmulator) -> None:
    """DELETE carries only the header; an Account's Contacts are deleted in the same transaction."""
    rest = salesforce_emulator.rest()
    account_id = rest.create("Account", {"Name": "Doomed"})
    contact_id = rest.create("Contact", {"LastName": "Gone", "AccountId": account_id})
    rest.delete("Account", account_id)
    account_delete, contact_delete = _payloads(salesforce_emulator)[-2:]
    assert account_delete == {"ChangeEventHeader": account_delete["ChangeEventHeader"]}
    assert account_delete["ChangeEventHeader"]["changeType"] == "DELETE"
    assert contact_delete["ChangeEventHeader"]["recordIds"] == [contact_id]
    assert (
        contact_delete["ChangeEventHeader"]["transactionKey"] == account_delete["ChangeEventHeader"]["transactionKey"]
    )
    assert contact_delete["ChangeEventHeader"]["sequenceNumber"] == 2


def test_composite_same_change_merges_record_ids(salesforce_emulator: SalesforceEmulator) -> None:
    """A collection update giving several records the same value emits one event with all their ids."""
    rest = salesforce_emulator.rest()
    ids = [rest.create("Account", {"Name": f"A{i}"}) for i in range(3)]
    records = [{"attributes": {"type": "Account"}, "Id": i, "Type": "Partner"} for i in ids]
    rest.call(lambda sf: sf.restful("composite/sobjects", method="PATCH", json={"records": records}))
    updates = [p for p in _payloads(salesforce_emulator) if p["ChangeEventHeader"]["changeType"] == "UPDATE"]
    assert len(updates) == 1
    assert updates[0]["ChangeEventHeader"]["recordIds"] == ids
    assert updates[0]["Type"] == "Partner"


def test_change_origin_names_the_client_tag(salesforce_emulator: SalesforceEmulator) -> None:
    """changeOrigin carries client=<id> only when the caller sent Sforce-Call-Options."""
    tagged = salesforce_emulator.rest(client_tag="sync-bot")
    tagged.create("Account", {"Name": "Tagged"})
    untagged = salesforce_emulator.http.post(
        f"{salesforce_emulator.instance_url}/services/data/v60.0/sobjects/Account",
        json={"Name": "Untagged"},
        headers={"Authorization": f"Bearer {tagged.sf.session_id}"},
        timeout=10,
    )
    assert untagged.status_code == 201
    origins = [p["ChangeEventHeader"]["changeOrigin"] for p in _payloads(salesforce_emulator)]
    assert origins == ["com/salesforce/api/rest/62.0;client=sync-bot", "com/salesforce/api/rest/60.0"]


def test_channels_and_replay_ids(salesforce_emulator: SalesforceEmulator) -> None:
    """Events go to /data/ChangeEvents and the entity channel, with increasing replay ids."""
    rest = salesforce_emulator.rest()
    rest.create("Account", {"Name": "A"})
    rest.create("Product2", {"Name": "P"})
    events = salesforce_emulator.events()
    assert events[0]["channels"] == ["/data/AccountChangeEvent", "/data/ChangeEvents"]
    assert events[1]["channels"] == ["/data/ChangeEvents", "/data/Product2ChangeEvent"]
    assert events[0]["replayId"] < events[1]["replayId"]
    assert events[0]["data"]["event"] == {"replayId": events[0]["replayId"]}
    assert len(events[0]["data"]["schema"]) == 22


def test_undelete_restores_record_and_contacts(salesforce_emulator: SalesforceEmulator) -> None:
    """Admin undelete emits UNDELETE with the full record, and brings back cascaded Contacts."""
    rest = salesforce_emulator.rest()
    account_id = rest.create("Account", {"Name": "Lazarus"})
    contact_id = rest.create("Contact", {"LastName": "Follower", "AccountId": account_id})
    rest.delete("Account", account_id)
    result = salesforce_emulator.admin("POST", "undelete", {"sobject": "Account", "ids": [account_id]})
    assert result["results"] == [{"id": account_id, "success": True, "errors": []}]
    undeletes = [p for p in _payloads(salesforce_emulator) if p["ChangeEventHeader"]["changeType"] == "UNDELETE"]
    assert [u["ChangeEventHeader"]["recordIds"] for u in undeletes] == [[account_id], [contact_id]]
    assert undeletes[0]["Name"] == "Lazarus"
    assert rest.get("Contact", contact_id)["LastName"] == "Follower"


def test_gap_and_overflow_injection(salesforce_emulator: SalesforceEmulator) -> None:
    """Injected GAP_* and GAP_OVERFLOW events are header-only with Salesforce's fixed values."""
    gap = salesforce_emulator.admin(
        "POST", "cdc/gap", {"entity": "Account", "changeType": "GAP_UPDATE", "recordIds": ["001000000000001AAA"]}
    )
    overflow = salesforce_emulator.admin("POST", "cdc/overflow", {"entity": "Contact"})
    assert overflow["replayId"] > gap["replayId"]
    gap_payload, overflow_payload = _payloads(salesforce_emulator)
    assert set(gap_payload) == {"ChangeEventHeader"}
    header = gap_payload["ChangeEventHeader"]
    assert (header["changeType"], header["changeOrigin"], header["changedFields"], header["sequenceNumber"]) == (
        "GAP_UPDATE",
        "",
        [],
        1,
    )
    assert overflow_payload["ChangeEventHeader"]["recordIds"] == ["000000000000000AAA"]
    assert overflow_payload["ChangeEventHeader"]["changeType"] == "GAP_OVERFLOW"


def test_publish_verbatim_gets_fresh_replay_id(salesforce_emulator: SalesforceEmulator) -> None:
    """An arbitrary message is published as given, except for a fresh replay id."""
    payload = {"ChangeEventHeader": {"entityName": "Account", "changeType": "UPDATE", "recordIds": ["x"]}, "Odd": 1}
    message = {
        "channel": "/data/AccountChangeEvent",
        "data": {"schema": "s", "payload": payload, "event": {"replayId": 1}},
    }
    first = salesforce_emulator.admin("POST", "cdc/publish", {"message": message})["replayId"]
    second = salesforce_emulator.admin("POST", "cdc/publish", {"message": message})["replayId"]
    assert second > first
    events = salesforce_emulator.events()
    assert events[0]["data"]["payload"] == payload
    assert events[0]["data"]["event"] == {"replayId": first}
    assert "/data/ChangeEvents" in events[0]["channels"]


def test_long_text_update_as_diff(salesforce_emulator: SalesforceEmulator) -> None:
    """With long_text_diff on, a small edit of a long Description arrives as {"diff": ...}."""
    salesforce_emulator.tune(long_text_diff=True)
    rest = salesforce_emulator.rest()
    old = "\n".join(f"line {i}" for i in range(200))
    new = old.replace("line 50", "line fifty")
    account_id = rest.create("Account", {"Name": "Long", "Description": old})
    rest.update("Account", account_id, {"Description": new})
    update = _payloads(salesforce_emulator)[-1]
    diff = update["Description"]["diff"]
    assert diff.startswith(f"--- \n+++ {hashlib.sha256(new.encode()).hexdigest()}\n")
    assert "@@ -51,1 +51,1 @@\n-line 50\n+line fifty\n" in diff
    assert update["ChangeEventHeader"]["changedFields"] == ["Description", "LastModifiedDate"]


def test_long_text_diff_rules() -> None:
    """No diff under 1,000 characters or when most lines changed; a diff for a small edit."""
    assert long_text_diff("short", "shorter") is None
    old = "\n".join(f"row {i:04d}" for i in range(150))
    assert long_text_diff(old, "\n".join(f"new {i:04d}" for i in range(150))) is None
    assert long_text_diff(old, old.replace("row 0007", "row seven")) is not None
