"""What the Requests tab holds: request-log records and dead letters as Salesforce records (pure, no I/O).

The objects are shared/salesforce_view.py's. Which request records land (`wanted`):
- `failures` (the default): every Failed request, and the outcome of every replayed dead letter (a record with
  `replayed`, written under the failed request's id, so the admin sees that request turn Failed → Success);
- `all`: every request; `off`: none.
The LogiSense HTTP attempts of a sync (kinds `POST Account`, `PUT Contact`, ...) never land: the tab shows one
record per sync request, and its attempts stay in `<prefix>.requests` for `sfls requests --kind`.

A dead letter becomes an error log (`error_fields`) under the request its `sfls.error.request_id` header names.
A dead letter without one (the listener's, the importer's) gets a request of its own, made from the dead
letter (`letter_request`), and so does one whose request is not in Salesforce (not landed yet, or purged): that
request is created, never upserted, so it cannot overwrite the real record, which updates it when it lands.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from shared.deadletter import ERROR_RESPONSE, ERROR_SERVICE, ERROR_STATUS, DeadLetter
from shared.events import RequestRecord, RequestStatus
from shared.salesforce_errors import result_error
from shared.salesforce_view import (
    ERROR_ID,
    ERROR_PARENT_RELATIONSHIP,
    REQUEST_ID,
    REQUEST_OBJECT,
    TEXT_LENGTH,
)

Mode = Literal["off", "failures", "all"]
# A LogiSense request attempt of the syncer (shared/requests.py RequestLog.request): its kind is METHOD Resource.
HTTP_ATTEMPT = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE) ")
ACCOUNT_ID = re.compile(r"^001[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")
NAME_LENGTH = 80


def wanted(record: RequestRecord, mode: Mode) -> bool:
    """Whether the request record lands in `mode` (see the module docstring)."""
    if mode == "off" or HTTP_ATTEMPT.match(record.kind):
        return False
    return mode == "all" or record.status is RequestStatus.FAILED or record.replayed


def account_of(key: str) -> str | None:
    """The Account lookup of a request keyed by a Salesforce Account id, else None."""
    return key if ACCOUNT_ID.match(key) else None


def _name(*parts: str) -> str:
    return " ".join(p for p in parts if p)[:NAME_LENGTH]


def _text(value: str) -> str | None:
    return value[:TEXT_LENGTH] or None


def request_fields(record: RequestRecord) -> dict[str, Any]:
    """The LogiSense_Request__c record of a request-log record, for an upsert by Request_Id__c."""
    events = record.counts.get("events") or len(record.event_ids)
    return {
        REQUEST_ID: record.request_id,
        "Name": _name(record.kind, record.key),
        "Kind__c": record.kind[:NAME_LENGTH],
        "Status__c": record.status.value,
        "Account__c": account_of(record.key),
        "Key__c": record.key[:NAME_LENGTH] or None,
        "Service__c": record.service,
        "Started__c": record.started_at.isoformat(timespec="milliseconds"),
        "Duration_Seconds__c": round(record.duration_seconds, 3),
        "Attempts__c": record.attempts,
        "Events__c": events or None,
        "Reason__c": _text(record.reason),
    }


def letter_id(letter: DeadLetter) -> str:
    """The error log's external id: where the dead letter is (what `sfls dlq` names it by)."""
    return f"{letter.topic}:{letter.partition}:{letter.offset}"


def parent_id(letter: DeadLetter) -> str:
    """The request a dead letter's error log belongs to: the one it names, or one of its own."""
    return letter.request_id or "dlq-" + hashlib.sha256(letter_id(letter).encode()).hexdigest()[:32]


def replay_command(letter: DeadLetter, syncer_dead_letters: str) -> str:
    """The command that replays it (`sfls dlq` serves the syncer's dead-letter topic)."""
    if letter.topic != syncer_dead_letters:
        return ""
    return f"sfls dlq replay --at {letter.partition}:{letter.offset}"


def error_fields(letter: DeadLetter, syncer_dead_letters: str) -> dict[str, Any]:
    """The LogiSense_Request_Error__c record of a dead letter, for an upsert by Dead_Letter_Id__c."""
    status = letter.headers.get(ERROR_STATUS, "")
    first = letter.first_failure
    attempts = letter.attempts
    return {
        ERROR_ID: letter_id(letter),
        "Name": _name(letter.error_class or "Error"),
        ERROR_PARENT_RELATIONSHIP: {REQUEST_ID: parent_id(letter)},
        "Error_Class__c": letter.error_class[:255] or None,
        "Message__c": _text(letter.message),
        "HTTP_Status__c": int(status) if status.isdigit() else None,
        "Response__c": _text(letter.headers.get(ERROR_RESPONSE, "")),
        "Attempts__c": int(attempts) if attempts.isdigit() else None,
        "First_Failure__c": first.isoformat(timespec="milliseconds") if first else None,
        "Last_Failure__c": letter.last_failure.isoformat(timespec="milliseconds"),
        "Topic__c": letter.topic,
        "Partition__c": letter.partition,
        "Offset__c": letter.offset,
        "Replay_Command__c": replay_command(letter, syncer_dead_letters) or None,
    }


def letter_request(letter: DeadLetter) -> dict[str, Any]:
    """A Failed request made from a dead letter, for one without a landed request (created, never upserted)."""
    key = (letter.key or b"").decode(errors="replace")
    service = letter.headers.get(ERROR_SERVICE, "")
    first = letter.first_failure or letter.last_failure
    attempts = letter.attempts
    return {
        "attributes": {"type": REQUEST_OBJECT},
        REQUEST_ID: parent_id(letter),
        "Name": _name(f"dead letter ({service})" if service else "dead letter", key),
        "Kind__c": "dead_letter",
        "Status__c": RequestStatus.FAILED.value,
        "Account__c": account_of(key),
        "Key__c": key[:NAME_LENGTH] or None,
        "Service__c": service[:20] or None,
        "Started__c": first.isoformat(timespec="milliseconds"),
        "Attempts__c": int(attempts) if attempts.isdigit() else None,
        "Reason__c": _text(letter.message),
    }


def latest(records: list[RequestRecord]) -> list[RequestRecord]:
    """One record per request id, the last one read (the request's latest state), in first-seen order."""
    by_id: dict[str, RequestRecord] = {}
    for record in records:
        by_id.pop(record.request_id, None)
        by_id[record.request_id] = record
    return list(by_id.values())


# The errors of a record whose Account lookup cannot be set: the Account was deleted, or is not one.
LOOKUP_ERRORS = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "FIELD_INTEGRITY_EXCEPTION"})
MISSING_PARENT = "Foreign key external ID"


def lookup_refused(result: dict[str, Any]) -> bool:
    code, _message, fields = result_error(result)
    return code in LOOKUP_ERRORS and (not fields or "Account__c" in fields)


def parent_missing(result: dict[str, Any]) -> bool:
    code, message, _fields = result_error(result)
    return code == "INVALID_FIELD" and message.startswith(MISSING_PARENT) and REQUEST_ID in message
