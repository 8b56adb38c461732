"""What lands in the Requests tab, and in which shape (services/requests_tab/records.py), without Salesforce."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.requests_tab.records import (
    error_fields,
    latest,
    letter_request,
    lookup_refused,
    parent_id,
    parent_missing,
    request_fields,
    wanted,
)
from services.syncer.link import link_records
from shared.deadletter import ERROR_REQUEST, DeadLetter, Failure, Origin, dead_letter_headers, dead_letter_of
from shared.events import RequestStatus
from shared.salesforce_view import ACCOUNT_LOGISENSE_ID, ACCOUNT_SYNC_REASON, ACCOUNT_SYNC_STATUS, REQUEST_ID
from tests.services.requests_tab.support import request_record

ACCOUNT = "001000000000000AAA"
DLT = "p.changes.dlt"


def letter(request_id: str = "", *, topic: str = DLT, key: bytes = ACCOUNT.encode()) -> DeadLetter:
    failure = Failure(
        error_class="RejectedError",
        message="notes: too long",
        http_status=400,
        response_excerpt='{"error": "too long"}',
        attempts=3,
        first_failure=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        last_failure=datetime(2026, 12, 1, 10, 1, tzinfo=UTC),
        request_id=request_id,
    )
    headers = dead_letter_headers(
        failure, service="syncer", origin=Origin("p.changes", 1, 7), original=[("entity", b"Account")]
    )
    return dead_letter_of(
        topic=topic, partition=2, offset=41, key=key, value=b"{}", headers=headers, timestamp=datetime.now(UTC)
    )


@pytest.mark.parametrize(
    ("mode", "status", "replayed", "kind", "lands"),
    [
        ("failures", RequestStatus.FAILED, False, "account_sync", True),
        ("failures", RequestStatus.SUCCESS, False, "account_sync", False),
        ("failures", RequestStatus.SUCCESS, True, "account_sync", True),  # a replay's outcome: Failed -> Success
        ("all", RequestStatus.SUCCESS, False, "import:package", True),
        ("all", RequestStatus.FAILED, False, "POST Account", False),  # HTTP attempts stay in Kafka
        ("failures", RequestStatus.FAILED, False, "PUT Contact", False),
        ("off", RequestStatus.FAILED, False, "account_sync", False),
    ],
)
def test_which_requests_land(mode: str, status: RequestStatus, replayed: bool, kind: str, lands: bool) -> None:
    record = request_record(ACCOUNT, status, kind=kind, replayed=replayed)
    assert wanted(record, mode) is lands  # type: ignore[arg-type]


def test_a_request_keyed_by_an_account_looks_it_up_and_others_do_not() -> None:
    fields = request_fields(request_record(ACCOUNT, attempts=3, counts={"events": 4}))
    assert fields[REQUEST_ID]
    assert fields["Account__c"] == ACCOUNT
    assert (fields["Status__c"], fields["Attempts__c"], fields["Events__c"]) == ("Failed", 3, 4)
    assert fields["Reason__c"] == "LogiSense said no"
    assert fields["Name"] == f"account_sync {ACCOUNT}"
    entity = request_fields(request_record("package", kind="import:package", service="importer"))
    assert entity["Account__c"] is None
    assert entity["Key__c"] == "package"
    success = request_fields(request_record(ACCOUNT, RequestStatus.SUCCESS))
    assert success["Reason__c"] is None  # the Success of a replay clears the Failed reason


def test_the_latest_record_of_a_request_wins() -> None:
    failed = request_record(ACCOUNT)
    succeeded = failed.model_copy(update={"status": RequestStatus.SUCCESS, "replayed": True})
    other = request_record(ACCOUNT)
    assert latest([failed, other, succeeded]) == [other, succeeded]


def test_a_dead_letter_is_an_error_log_under_its_request() -> None:
    found = letter("r-1")
    fields = error_fields(found, DLT)
    assert fields["Dead_Letter_Id__c"] == f"{DLT}:2:41"
    assert fields["Request__r"] == {REQUEST_ID: "r-1"}
    assert (fields["Error_Class__c"], fields["HTTP_Status__c"], fields["Attempts__c"]) == ("RejectedError", 400, 3)
    assert fields["Response__c"] == '{"error": "too long"}'
    assert fields["First_Failure__c"].startswith("2026-12-01T10:00:00")
    assert fields["Replay_Command__c"] == "sfls dlq replay --at 2:41"
    assert error_fields(letter("r-1", topic="p.listener.dlt"), DLT)["Replay_Command__c"] is None


def test_a_dead_letter_without_a_request_gets_one_of_its_own() -> None:
    found = letter(topic="p.importer.dlt", key=b"package:12")
    own = parent_id(found)
    assert own.startswith("dlq-")
    assert own == parent_id(letter(topic="p.importer.dlt", key=b"package:12"))
    request = letter_request(found)
    assert (request[REQUEST_ID], request["Status__c"], request["Account__c"]) == (own, "Failed", None)
    assert request["Key__c"] == "package:12"
    assert request["Reason__c"] == "notes: too long"
    assert parent_id(letter("r-9")) == "r-9"
    assert letter("r-9").headers[ERROR_REQUEST] == "r-9"


def test_salesforce_errors_that_change_what_is_sent_are_recognised() -> None:
    deleted = {"success": False, "errors": [{"statusCode": "ENTITY_IS_DELETED", "fields": ["Account__c"]}]}
    other_field = {"success": False, "errors": [{"statusCode": "INVALID_CROSS_REFERENCE_KEY", "fields": ["Owner"]}]}
    orphan = {
        "success": False,
        "errors": [
            {
                "statusCode": "INVALID_FIELD",
                "message": "Foreign key external ID: r-1 not found for field Request_Id__c in entity "
                "LogiSense_Request__c",
                "fields": [],
            }
        ],
    }
    assert lookup_refused(deleted)
    assert not lookup_refused(other_field)
    assert not lookup_refused(orphan)
    assert parent_missing(orphan)
    assert not parent_missing(deleted)


def test_the_account_link_of_a_synced_and_a_failed_account() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    synced, failed = link_records({ACCOUNT: 42}, {"001000000000001AAA": "x" * 400}, now)
    assert synced[ACCOUNT_LOGISENSE_ID] == "42"
    assert synced[ACCOUNT_SYNC_STATUS] == "Synced"
    assert synced[ACCOUNT_SYNC_REASON] is None
    assert failed[ACCOUNT_SYNC_STATUS] == "Failed"
    assert len(failed[ACCOUNT_SYNC_REASON]) == 255
    assert ACCOUNT_LOGISENSE_ID not in failed  # a failure keeps the id and the last sync it had
