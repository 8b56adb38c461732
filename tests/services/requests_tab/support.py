"""Helpers of the Requests tab tests: the writer run in the test's event loop, its progress, the org's records."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from services.requests_tab.app import RequestsTabService, topics_read
from shared import kafka
from shared.events import RequestRecord, RequestStatus
from shared.kafka_reader import committed_records
from shared.salesforce_view import ERROR_OBJECT, REQUEST_OBJECT
from shared.settings import Settings
from tests.fixtures.salesforce import SalesforceEmulator
from tests.services.syncer.e2e import run_service


def tab_committed(settings: Settings) -> int:
    """Records the writer's group has committed, over every topic it reads."""
    group = kafka.requests_tab_group(settings.kafka.topic_prefix)
    return sum(committed_records(settings.kafka, group, topic) for topic in topics_read(settings))


def org_records(sf: SalesforceEmulator) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The org's requests and error logs (live ones), through the emulator's admin API."""
    live = lambda rows: [r for r in rows if not r.get("IsDeleted")]  # noqa: E731
    return live(sf.records(REQUEST_OBJECT)), live(sf.records(ERROR_OBJECT))


async def run_tab(settings: Settings, sf: SalesforceEmulator, until: Callable[[], bool], within: float = 60) -> None:
    """Run the writer until `until()` holds; on timeout say what the org and the group hold."""

    def last_seen() -> str:
        requests, errors = org_records(sf)
        statuses = sorted(str(r.get("Status__c")) for r in requests)
        return f"{len(requests)} requests {statuses}, {len(errors)} error logs, {tab_committed(settings)} committed"

    await run_service(RequestsTabService(settings, install_signals=False), until, within, last_seen)


def request_record(key: str, status: RequestStatus = RequestStatus.FAILED, **fields: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "service": "syncer",
        "kind": "account_sync",
        "status": status,
        "key": key,
        "started_at": datetime.now(UTC),
        "duration_seconds": 0.25,
        "reason": "" if status is RequestStatus.SUCCESS else "LogiSense said no",
        **fields,
    }
    return RequestRecord(**values)
