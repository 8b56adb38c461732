"""The commands' bodies: clients opened and closed, the Kafka request log written, metrics counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from services.opportunity.app import PushResult, count, push_opportunity, request_record
from services.opportunity.status import opportunity_status
from services.opportunity.unpush import unpush_opportunity
from shared import acls, kafka
from shared.budget import Work
from shared.errors import TransientError
from shared.logisense import LogisenseClient
from shared.retry import RetryPolicy
from shared.salesforce import SalesforceRest
from shared.settings import Settings

SERVICE: Final = "opportunity"
T = TypeVar("T")


def _with_clients(settings: Settings, body: Callable[[SalesforceRest, LogisenseClient], Awaitable[T]]) -> T:
    """Run `body` with a Salesforce and a retrying LogiSense client, both closed after."""
    rest = SalesforceRest.for_service(settings, "opportunity", Work.ESSENTIAL)

    async def run() -> T:
        async with LogisenseClient(settings.logisense, retry=RetryPolicy.from_settings(settings.sync.retry)) as client:
            return await body(rest, client)

    try:
        return asyncio.run(run())
    finally:
        rest.close()


def _logged(settings: Settings, kind: str, dry_run: bool, act: Callable[[], PushResult]) -> PushResult:
    """Check Kafka first (a write must be able to log itself), act, then log and count it (not in a dry run)."""
    if not dry_run:
        if settings.kafka.create_topics:
            kafka.ensure_topics(settings.kafka, acls.own_topics(SERVICE, settings))
        acls.preflight(SERVICE, settings)
    started_at, started = datetime.now(UTC), time.perf_counter()
    result = act()
    if not dry_run:
        record = request_record(result, started_at, time.perf_counter() - started, service=SERVICE)
        record = record.model_copy(update={"kind": kind})
        topic = kafka.Topics(settings.kafka.topic_prefix).requests
        try:
            kafka.produce_and_flush(
                kafka.producer(settings.kafka),
                topic,
                [(record.key.encode() or None, record.to_bytes(), [])],
                settings=settings.kafka,
            )
        except TransientError as exc:
            raise TransientError(
                f"the request log record of {result.opportunity_id} did not reach Kafka ({exc}); the {kind} itself "
                f"is {result.outcome}; check SFLS_KAFKA__BOOTSTRAP_SERVERS"
            ) from None
        count(result, trigger="command")
    return result


def push_command(settings: Settings, opportunity_id: str, *, dry_run: bool) -> PushResult:
    return _logged(
        settings,
        "opportunity_push",
        dry_run,
        lambda: _with_clients(
            settings, lambda rest, client: push_opportunity(settings, rest, client, opportunity_id, dry_run=dry_run)
        ),
    )


def unpush_command(settings: Settings, opportunity_id: str, *, dry_run: bool) -> PushResult:
    return _logged(
        settings,
        "opportunity_unpush",
        dry_run,
        lambda: _with_clients(
            settings, lambda rest, client: unpush_opportunity(settings, rest, client, opportunity_id, dry_run=dry_run)
        ),
    )


def status_command(settings: Settings, opportunity_id: str) -> dict[str, Any]:
    return _with_clients(settings, lambda rest, client: opportunity_status(rest, client, opportunity_id))
