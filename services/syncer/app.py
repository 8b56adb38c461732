"""Wiring of `sfls syncer`: settings in, the consume loop running, telemetry on.

Start-up order: logs and the health server; Kafka (its own topics, waiting for a broker that is not up
yet, then the ACL preflight of shared/acls.py); LogiSense reference data and the Salesforce describes
(an Account describe with CurrencyIsoCode makes this a multi-currency org: accounts are read and created
with their currency, services/syncer/accounts.py; with opportunities followed, the Opportunity and line
write-back fields must exist); the mapping check (a bad mapping ends the process with
exit code 2 and one line per problem); then the consume loop (services/syncer/consume.py, batches
processed by services/syncer/process.py) until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import structlog

from services.opportunity.automatic import AutomaticPush
from services.opportunity.opportunities import check_fields
from services.syncer.consume import SERVICE, ConsumeLoop
from services.syncer.deliver import Deliverer, current_account
from services.syncer.link import AccountLink, missing_link_fields
from services.syncer.metrics import RETRIES, BatchMetrics
from services.syncer.process import BatchProcessor
from services.syncer.references import References
from services.syncer.service import LoopService
from shared import acls, kafka
from shared.budget import Work
from shared.errors import ConfigError, MappingError
from shared.logisense import LogisenseClient, RequestOutcome
from shared.mapping import check_mappings, org_currencies
from shared.observability import Health, start_observability
from shared.requests import RequestLog
from shared.retry import RetryPolicy
from shared.salesforce import SalesforceRest
from shared.settings import Settings

log = structlog.get_logger(__name__)


def _keyed(account_id: str) -> Callable[[], None]:
    """Key the request log's LogiSense calls by `account_id` until the returned reset is called."""
    token = current_account.set(account_id)
    return lambda: current_account.reset(token)


def group_id(settings: Settings) -> str:
    return kafka.syncer_group(settings.kafka.topic_prefix)


async def validate(settings: Settings, client: LogisenseClient, salesforce: SalesforceRest, refs: References) -> None:
    """The start-up mapping check against LogiSense's contact types and Salesforce's describes."""
    await refs.load(client)
    account = await asyncio.to_thread(salesforce.describe, "Account")
    contact = await asyncio.to_thread(salesforce.describe, "Contact")
    codes = org_currencies(account)
    refs.multi_currency = codes is not None
    if codes is not None:
        unknown = refs.unknown_currencies(codes)
        if unknown:
            log.warning(
                "currencies_missing_in_logisense",
                currencies=unknown,
                consequence="accounts in these currencies are dead-lettered until LogiSense has them",
            )
    check_mappings(
        settings,
        contact_point_types=refs.points_by_contact_type(),
        account_fields=[f["name"] for f in account.get("fields", [])],
        contact_fields=[f["name"] for f in contact.get("fields", [])],
    )
    if settings.opportunity.watched:  # the write-back fields must exist before any opportunity is handled
        await asyncio.to_thread(check_fields, salesforce)
    if settings.sync.on_account_delete == "close":
        try:
            refs("account_status_type", settings.sync.closed_status_name)
        except MappingError as exc:
            raise ConfigError(f"SFLS_SYNC__CLOSED_STATUS_NAME (sync.closed_status_name): {exc}") from None


async def account_link(settings: Settings, salesforce: SalesforceRest) -> AccountLink | None:
    """The Account link writer, when `sync.account_link` is on and the org has its fields (else a warning)."""
    if not settings.sync.account_link:
        return None
    account = await asyncio.to_thread(salesforce.describe, "Account")  # cached by validate()
    missing = missing_link_fields(account)
    if missing:
        log.warning(
            "account_link_unavailable",
            missing=missing,
            fix="deploy sfls's schema (sfls import schema --out DIR; sf project deploy start), "
            "or set SFLS_SYNC__ACCOUNT_LINK=false",
        )
        return None
    return AccountLink(salesforce)


class SyncerService(LoopService):
    """The running syncer; `run()` until `stop()` (or SIGTERM/SIGINT when it installs the handlers)."""

    async def run(self) -> None:
        health, server = start_observability(SERVICE, self.settings)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is the request log's job
        salesforce = SalesforceRest.for_service(self.settings, SERVICE, Work.ESSENTIAL, poll=True)
        try:
            await self._run(health, salesforce)
        finally:
            health.set_ready(False, "stopped")
            salesforce.close()
            server.stop()

    async def _run(self, health: Health, salesforce: SalesforceRest) -> None:
        settings = self.settings
        topics = kafka.Topics(settings.kafka.topic_prefix)
        producer = kafka.producer(settings.kafka)
        request_log = RequestLog(producer, topics.requests)

        def on_request(outcome: RequestOutcome) -> None:
            if outcome.attempt > 1:
                RETRIES.labels(resource=outcome.resource).inc()
            request_log.request(
                method=outcome.method,
                resource=outcome.resource,
                status=outcome.status,
                duration_seconds=outcome.duration_seconds,
                error=outcome.error,
                attempt=outcome.attempt,
                key=current_account.get(),
            )

        policy = RetryPolicy.from_settings(settings.sync.retry)
        connections = max(8, settings.sync.concurrency * 2)
        single = RetryPolicy(max_attempts=1)
        async with (
            LogisenseClient(
                settings.logisense, retry=policy, on_request=on_request, max_connections=connections
            ) as client,
            # Creates go through `once` (a failed create is searched before it is tried again), so it needs as
            # many connections as the writes in flight: with fewer, sync.concurrency is not what LogiSense sees.
            LogisenseClient(
                settings.logisense, retry=single, on_request=on_request, max_connections=connections
            ) as once,
        ):
            # Kafka first: no request-log record is written before the topics and the permissions are known.
            if settings.kafka.create_topics:
                health.set_ready(False, "waiting for Kafka")
                specs = acls.own_topics(SERVICE, settings)
                await kafka.ensure_topics_waiting(settings.kafka, specs, on_wait=health.tick)
            await asyncio.to_thread(acls.preflight, SERVICE, settings)
            await asyncio.to_thread(salesforce.login)
            refs = References()
            await validate(settings, client, salesforce, refs)
            deliverer = Deliverer(
                client, once, settings, refs, policy=policy, on_retry=lambda r: RETRIES.labels(resource=r).inc()
            )
            link = await account_link(settings, salesforce)
            opportunities = None
            if settings.opportunity.watched:
                opportunities = AutomaticPush(settings, salesforce, client, request_log, on_account=_keyed)
                log.info("opportunities_followed", auto_push=settings.opportunity.auto_push)
            loop = ConsumeLoop(
                consumer=kafka.consumer(settings.kafka, group_id(settings)),
                producer=producer,
                topics=topics,
                process=BatchProcessor(
                    settings,
                    salesforce,
                    deliverer,
                    request_log,
                    multi_currency=refs.multi_currency,
                    opportunities=opportunities,
                    link=link,
                ),
                interval_seconds=settings.sync.interval_minutes * 60,
                max_events=settings.sync.max_batch_events,
                hooks=BatchMetrics(),
                retry_pause_seconds=settings.sync.batch_retry_base_seconds,
                retry_pause_cap_seconds=settings.sync.batch_retry_cap_seconds,
                tick=health.tick,
                on_assigned=lambda: health.set_ready(True, "consuming"),
            )
            health.set_ready(False, "waiting for partitions")
            log.info("syncer_started", group=group_id(settings), topic=topics.changes)
            try:
                await self.run_loop(loop)
            finally:
                producer.flush(30)
                log.info("syncer_stopped", batches=loop.batches_committed)


async def run(settings: Settings) -> None:
    """Run the syncer until SIGTERM/SIGINT (see consume.py for what a stop does to a batch)."""
    await SyncerService(settings).run()
