"""The two commands' bodies: clients opened and closed, the Kafka request log written, metrics counted."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from services.opportunity.app import PushResult, count, push_opportunity, request_record
from services.opportunity.status import opportunity_status
from shared import acls, kafka
from shared.errors import TransientError
from shared.logisense import LogisenseClient
from shared.requests import RequestLog
from shared.retry import RetryPolicy
from shared.salesforce import SalesforceRest
from shared.settings import Settings

SERVICE = "opportunity"


def _retry(settings: Settings) -> RetryPolicy:
    return RetryPolicy.from_settings(settings.sync.retry)


def push_command(settings: Settings, opportunity_id: str, *, dry_run: bool) -> PushResult:
    """Check Kafka first (a push must be able to log itself), push, then log and count it (not in a dry run)."""
    if not dry_run:
        if settings.kafka.create_topics:
            kafka.ensure_topics(settings.kafka, acls.own_topics(SERVICE, settings))
        acls.preflight(SERVICE, settings)
    started_at, started = datetime.now(UTC), time.perf_counter()
    rest = SalesforceRest(settings.salesforce)

    async def body() -> PushResult:
        async with LogisenseClient(settings.logisense, retry=_retry(settings)) as client:
            return await push_opportunity(settings, rest, client, opportunity_id, dry_run=dry_run)

    try:
        result = asyncio.run(body())
    finally:
        rest.close()
    if not dry_run:
        producer = kafka.producer(settings.kafka)
        RequestLog(producer, kafka.Topics(settings.kafka.topic_prefix).requests).write(
            request_record(result, started_at, time.perf_counter() - started)
        )
        if producer.flush(30):
            raise TransientError(
                f"the request log record of {result.opportunity_id} was not acknowledged by Kafka within 30 s "
                f"(the push itself is {result.outcome}); check SFLS_KAFKA__BOOTSTRAP_SERVERS"
            )
        count(result)
    return result


def status_command(settings: Settings, opportunity_id: str) -> dict[str, Any]:
    rest = SalesforceRest(settings.salesforce)

    async def body() -> dict[str, Any]:
        async with LogisenseClient(settings.logisense, retry=_retry(settings)) as client:
            return await opportunity_status(rest, client, opportunity_id)

    try:
        return asyncio.run(body())
    finally:
        rest.close()
