"""How a failed Salesforce call becomes an sfls error (shared/errors.py), for shared/salesforce.py.

5xx, timeouts, connection errors and REQUEST_LIMIT_EXCEEDED are TransientError; 400s are RejectedError
(with Salesforce's errorCode and message); 404 is RecordNotFoundError; a TLS failure is ConfigError naming
the CA setting. Secrets never appear in messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import requests
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceOperationError,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from shared.errors import ConfigError, PermanentError, RejectedError, SflsError, TransientError

_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$")

AUTH_HINT = (
    "check SFLS_SALESFORCE__CLIENT_ID, SFLS_SALESFORCE__CLIENT_SECRET, SFLS_SALESFORCE__USERNAME, "
    "SFLS_SALESFORCE__PASSWORD and SFLS_SALESFORCE__SECURITY_TOKEN (or SFLS_SALESFORCE__REFRESH_TOKEN), "
    "and that SFLS_SALESFORCE__INSTANCE_URL is your My Domain URL"
)


class RecordNotFoundError(PermanentError):
    """The record does not exist (or was deleted): Salesforce answered 404 NOT_FOUND."""


def error_summary(content: Any) -> tuple[str, str]:
    """(errorCode, message) from a Salesforce error body, whatever its shape."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return str(first.get("errorCode", "")), str(first.get("message", ""))
    if isinstance(content, dict):
        return str(content.get("error", content.get("errorCode", ""))), str(
            content.get("error_description", content.get("message", ""))
        )
    return "", str(content)[:300]


def result_error(result: dict[str, Any]) -> tuple[str, str, list[str]]:
    """(statusCode, message, fields) of the first error of one sObject Collections result."""
    errors = result.get("errors") or [{}]
    first = errors[0] if isinstance(errors[0], dict) else {}
    return str(first.get("statusCode", "")), str(first.get("message", "")), list(first.get("fields") or [])


def map_error(error: Exception, what: str) -> SflsError:
    """The sfls error for a simple-salesforce or requests failure of the call described by `what`."""
    if isinstance(error, requests.exceptions.SSLError):
        return ConfigError(
            f"Salesforce {what}: TLS verification failed; set SFLS_SALESFORCE__CA_FILE to the CA that "
            "signed the server certificate (verification is never turned off)"
        )
    if isinstance(error, requests.Timeout | requests.ConnectionError):
        return TransientError(f"Salesforce {what}: {type(error).__name__}")
    if isinstance(error, SalesforceOperationError):  # a Bulk API job Salesforce failed or could not take
        return PermanentError(f"Salesforce {what} failed: {str(error)[:500]}")
    if not isinstance(error, SalesforceError):
        return PermanentError(f"Salesforce {what}: unexpected {type(error).__name__}")
    code, message = error_summary(error.content)
    text = f"Salesforce {what} failed: {code}: {message}".strip()
    excerpt = str(error.content)[:500]
    status = getattr(error, "status", None)
    status = status if isinstance(status, int) else None
    mapped: SflsError
    if isinstance(error, SalesforceMalformedRequest):
        mapped = RejectedError(text, status=400, response_excerpt=excerpt)
    elif isinstance(error, SalesforceResourceNotFound):
        mapped = RecordNotFoundError(text, status=404, response_excerpt=excerpt)
    elif isinstance(error, SalesforceRefusedRequest) and code == "REQUEST_LIMIT_EXCEEDED":
        mapped = TransientError(text, status=403, retry_after=60.0)
    elif isinstance(error, SalesforceExpiredSession):
        mapped = ConfigError(f"{text}; the session was refused again right after logging in; {AUTH_HINT}")
    elif isinstance(error, SalesforceMoreThanOneRecord):
        mapped = PermanentError(text, status=300, response_excerpt=excerpt)
    elif status is not None and status >= 500:
        mapped = TransientError(text, status=status)
    else:
        mapped = PermanentError(text, status=status, response_excerpt=excerpt)
    return mapped


def check_name(value: str) -> str:
    """An API name (object, field, `Relationship__r.Field__c`) safe to put in SOQL or a URL, or RejectedError."""
    if not _NAME.match(value):
        raise RejectedError(f"not a valid Salesforce API name: {value!r}")
    return value


def check_ids(ids: Iterable[str]) -> list[str]:
    """Record ids (15 or 18 characters), each once in first-seen order, or RejectedError naming the bad one."""
    unique: dict[str, None] = {}
    for record_id in ids:
        if not isinstance(record_id, str) or not _ID.match(record_id):
            raise RejectedError(f"not a Salesforce record id: {record_id!r}")
        unique[record_id] = None
    return list(unique)
