"""Wiring for `sfls import ...`: clients, topics, progress, the summary, metrics, the exit code."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

import structlog
from rich.console import Console

from services.importer.entities import BY_NAME
from services.importer.publish import Publisher
from services.importer.report import RichProgress, failure_lines, note_lines, summary_table
from services.importer.run import AccountLinks, Importer, Progress, RunReport, summary_dict
from services.importer.targets import check_targets
from shared import acls, kafka
from shared.budget import Work
from shared.errors import ConfigError
from shared.observability import configure_logging, push_metrics, secret_values
from shared.retry import RetryPolicy
from shared.settings import Settings

log = structlog.get_logger(__name__)


def topic_specs(settings: Settings, names: Sequence[str]) -> list[kafka.TopicSpec]:
    """The topics a run writes: one compacted topic per entity of the table (the price book has none),
    the dead-letter topic and the request log."""
    topics = kafka.Topics(settings.kafka.topic_prefix)
    wanted = {BY_NAME[name].topic(topics) for name in names if name in BY_NAME} | {topics.importer_dlt, topics.requests}
    return [spec for spec in topics.specs(settings.kafka) if spec.name in wanted]


async def _account_filter(client: Any, account: str, link_field: str) -> list[dict[str, Any]]:
    """`--account` is a LogiSense account id, or a Salesforce Account id found through the link field."""
    if account.isdigit():
        return [{"name": "accountId", "operator": "eq", "value": int(account)}]
    found = await client.search("Account", [{"name": link_field, "operator": "eq", "value": account}])
    if not found:
        raise ConfigError(f"--account {account}: no LogiSense account has {link_field} = {account}")
    return [{"name": "accountId", "operator": "eq", "value": int(found[0]["identity"])}]


def _account_links(client: Any, link_field: str) -> AccountLinks:
    """LogiSense account id -> its Salesforce Account id (the link field), one search per invoice batch."""
    cache: dict[int, str | None] = {}

    async def links(account_ids: Sequence[int]) -> dict[int, str | None]:
        missing = [i for i in account_ids if i not in cache]
        if missing:
            if len(cache) > 10_000:
                cache.clear()
            conditions = [{"name": "identity", "operator": "in", "value": missing}]
            async for account in client.search_paged("Account", conditions):
                cache[int(account["identity"])] = account.get(link_field) or None
        return {i: cache.get(i) for i in account_ids}

    return links


async def run_import(
    settings: Settings,
    names: Sequence[str],
    *,
    dry_run: bool = False,
    account: str | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Run the named entities against the configured LogiSense, Kafka and Salesforce."""
    from shared.logisense import LogisenseClient
    from shared.salesforce import SalesforceRest

    check_targets(settings.importer)
    if not dry_run and settings.kafka.create_topics:
        await asyncio.to_thread(kafka.ensure_topics, settings.kafka, topic_specs(settings, names))
    if not dry_run:
        await asyncio.to_thread(acls.preflight, "importer", settings)
    publisher = None if dry_run else Publisher(settings.kafka)
    policy = RetryPolicy.from_settings(settings.sync.retry)
    async with LogisenseClient(settings.logisense, retry=policy) as client:
        conditions: list[dict[str, Any]] = []
        if account:
            conditions = await _account_filter(client, account, settings.logisense.link_field)
        salesforce = SalesforceRest.for_service(
            settings,
            "importer",
            Work.BULK,
            on_budget_change=lambda: push_metrics(settings.importer.pushgateway_url, "sfls-importer"),
        )
        if not dry_run:
            await asyncio.to_thread(salesforce.budget.refresh)
        importer = Importer(
            settings,
            client,
            salesforce,
            publisher,
            dry_run=dry_run,
            progress=progress,
            account_links=_account_links(client, settings.logisense.link_field),
        )
        return await importer.run(names, invoice_conditions=conditions)


def import_command(settings: Settings, names: Sequence[str], *, dry_run: bool, account: str | None = None) -> int:
    """The body of `sfls import ...`: progress on a terminal, JSON logs otherwise; returns the exit code."""
    dry_run = dry_run or settings.importer.dry_run
    configure_logging("importer", settings.observability, secret_values(settings))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request is noise in a Job's log
    console = Console() if sys.stdout.isatty() else Console(width=160)
    if sys.stderr.isatty():
        with RichProgress(Console(stderr=True)) as progress:
            report = asyncio.run(run_import(settings, names, dry_run=dry_run, account=account, progress=progress))
    else:
        report = asyncio.run(run_import(settings, names, dry_run=dry_run, account=account))
    console.print(summary_table(report))
    for line in note_lines(report):
        console.print(f"[yellow]note:[/] {line}", highlight=False, soft_wrap=True)
    for line in failure_lines(report):
        console.print(f"[red]failed:[/] {line}", highlight=False, soft_wrap=True)
    log.info("import_summary", **summary_dict(report))
    push_metrics(settings.importer.pushgateway_url, "sfls-importer")
    return 0 if report.ok else 1
