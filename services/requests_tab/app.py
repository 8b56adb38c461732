"""Wiring of `sfls requests-tab run`: the request log and the dead letters, landed in Salesforce.

Start-up: logs and the health server; Kafka (its topics when missing, then the ACL preflight of shared/acls.py);
unless `requests_tab.mode` is `off`, Salesforce: a login and a describe of both objects (missing ones end the
process with exit code 2, naming the schema to deploy). Then the consume loop of services/syncer/consume.py
(`BatchLoop`, the same commit and crash guarantees as the syncer's) over `<prefix>.requests` and the three
dead-letter topics, landing each batch (services/requests_tab/land.py) within `requests_tab.flush_seconds` or
once `requests_tab.batch_records` are read; and every `requests_tab.purge_interval_seconds` the retention purge
(services/requests_tab/purge.py). Its Salesforce calls are deferrable work (shared/budget.py): at the org's
reserve they wait, and the request log keeps everything meanwhile.
"""

from __future__ import annotations

import asyncio

import structlog

from services.requests_tab.land import Lander, RequestsBatch
from services.requests_tab.metrics import PURGE_FAILURES, LoopMetrics
from services.requests_tab.purge import purge
from services.syncer.batch import Received
from services.syncer.consume import BatchLoop
from services.syncer.service import LoopService
from shared import acls, kafka
from shared.budget import Work
from shared.errors import ConfigError, SflsError
from shared.observability import Health, start_observability
from shared.salesforce import SalesforceRest
from shared.salesforce_errors import RecordNotFoundError
from shared.salesforce_view import ERROR_OBJECT, REQUEST_OBJECT
from shared.settings import Settings

log = structlog.get_logger(__name__)
SERVICE = "requests_tab"
SCHEMA_HINT = (
    "deploy sfls's Salesforce schema (`sfls import schema --out DIR`, then `sf project deploy start` in DIR), "
    "or set SFLS_REQUESTS_TAB__MODE=off"
)


class RequestsTabLoop(BatchLoop[RequestsBatch]):
    """The consume loop over the request log and the dead-letter topics; it dead-letters nothing itself."""

    def prepare(self, records: list[Received]) -> RequestsBatch:
        return RequestsBatch(records)


def topics_read(settings: Settings) -> list[str]:
    topics = kafka.Topics(settings.kafka.topic_prefix)
    return [topics.requests, topics.changes_dlt, topics.listener_dlt, topics.importer_dlt]


def check_objects(rest: SalesforceRest) -> None:
    """Both objects must be deployed (and visible to the integration user) before anything lands."""
    missing = []
    for sobject in (REQUEST_OBJECT, ERROR_OBJECT):
        try:
            rest.describe(sobject)
        except RecordNotFoundError:  # any other failure (Salesforce away, a refused login) is itself the error
            missing.append(sobject)
    if missing:
        raise ConfigError(f"Salesforce has no {' or '.join(missing)} for the Requests tab: {SCHEMA_HINT}")


class RequestsTabService(LoopService):
    """The running writer; `run()` until `stop()` (or SIGTERM/SIGINT when it installs the handlers)."""

    async def run(self) -> None:
        health, server = start_observability(SERVICE, self.settings)
        mode = self.settings.requests_tab.mode
        rest = None if mode == "off" else SalesforceRest.for_service(self.settings, SERVICE, Work.DEFERRABLE, poll=True)
        try:
            await self._run(health, rest)
        finally:
            health.set_ready(False, "stopped")
            if rest is not None:
                rest.close()
            server.stop()

    async def _run(self, health: Health, rest: SalesforceRest | None) -> None:
        settings, tab = self.settings, self.settings.requests_tab
        topics = kafka.Topics(settings.kafka.topic_prefix)
        if settings.kafka.create_topics:
            health.set_ready(False, "waiting for Kafka")
            await kafka.ensure_topics_waiting(settings.kafka, acls.own_topics(SERVICE, settings), on_wait=health.tick)
        await asyncio.to_thread(acls.preflight, SERVICE, settings)
        if rest is not None:
            await asyncio.to_thread(rest.login)
            await asyncio.to_thread(check_objects, rest)
        group = kafka.requests_tab_group(settings.kafka.topic_prefix)
        loop = RequestsTabLoop(
            consumer=kafka.consumer(settings.kafka, group),
            producer=None,
            subscribe=topics_read(settings),
            process=Lander(rest, mode=tab.mode, requests_topic=topics.requests, syncer_dead_letters=topics.changes_dlt),
            interval_seconds=tab.flush_seconds,
            max_events=tab.batch_records,
            service=SERVICE,
            hooks=LoopMetrics(),
            tick=health.tick,
            on_assigned=lambda: health.set_ready(True, "consuming"),
        )
        purging = asyncio.create_task(self._purge_every(rest)) if rest is not None else None
        health.set_ready(False, "waiting for partitions")
        log.info("requests_tab_started", group=group, mode=tab.mode, topics=topics_read(settings))
        try:
            await self.run_loop(loop)
        finally:
            if purging is not None:
                purging.cancel()
            log.info("requests_tab_stopped", batches=loop.batches_committed)

    async def _purge_every(self, rest: SalesforceRest) -> None:
        tab = self.settings.requests_tab
        while True:
            try:
                await asyncio.to_thread(purge, rest, tab.retention_days)
            except SflsError as exc:  # the next interval tries again; the request log keeps everything
                PURGE_FAILURES.inc()
                log.warning("requests_purge_failed", error=str(exc))
            await asyncio.sleep(tab.purge_interval_seconds)


async def run(settings: Settings) -> None:
    """Run the writer until SIGTERM/SIGINT."""
    await RequestsTabService(settings).run()
