"""`sfls reconcile`: the command around services/reconcile/run.py (accounts), catalogue.py (the catalogue) and
price_plans.py (what quote to cash pushed): the scopes, output formats, progress, repair and exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO, TypeVar

import typer

from services.reconcile.drift import Drift
from services.reconcile.run import Report

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from services.reconcile.catalogue import Relanded
    from services.reconcile.sides import Progress
    from shared.salesforce import SalesforceRest
    from shared.settings import Settings

T = TypeVar("T")
EXIT_IN_SYNC, EXIT_DRIFT = 0, 1
EXAMPLES = 5  # drifts shown per kind in the table


class Scope(StrEnum):
    accounts = "accounts"
    catalogue = "catalogue"
    price_plans = "price_plans"
    all = "all"


class Format(StrEnum):
    table = "table"
    json = "json"


def register(app: typer.Typer) -> None:
    """Attach this service's subcommands to the `sfls` command."""
    app.command("reconcile")(reconcile)


def reconcile(  # noqa: PLR0917 - one parameter per option, as typer reads them
    ctx: typer.Context,
    scope: Annotated[
        Scope,
        typer.Option(
            "--scope",
            help="What to compare: accounts (Salesforce accounts against the LogiSense accounts linked to them), "
            "catalogue (LogiSense's catalogue and the price book against what the importer landed in Salesforce), "
            "price_plans (every pushed opportunity's push, planned, against the LogiSense price plans) "
            "or all (accounts, then catalogue, then price plans, in one report).",
        ),
    ] = Scope.accounts,
    where: Annotated[
        str,
        typer.Option(
            "--where",
            help="SOQL condition on Account, e.g. \"Type = 'Customer'\" (no orphan check); accounts only, "
            "not with --scope catalogue or price_plans.",
        ),
    ] = "",
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Publish a RESYNC event for every missing or mismatched account, so the syncer writes it again, "
            "and re-land the catalogue entities with missing or stale records through the importer; orphans, "
            "duplicates, left-behind catalogue records and price plan drift are only reported.",
        ),
    ] = False,
    output_format: Annotated[
        Format,
        typer.Option(
            "--format",
            help="table: drift grouped by kind with examples; json: one object per drift, then a summary object.",
        ),
    ] = Format.table,
    output: Annotated[Path | None, typer.Option("--output", help="Write the report to this file instead.")] = None,
) -> None:
    """Compare Salesforce with LogiSense through the syncer's mapping (accounts), the importer's code (catalogue) and
    the push's plan (price plans); exit 0 in sync, 1 with drift, 2 bad input."""
    from services.command import run_guarded, settings_of
    from services.listener.backfill import check_where
    from services.reconcile.run import check_kafka, log_run, salesforce_client
    from shared.errors import ConfigError
    from shared.observability import configure_logging, secret_values

    settings = settings_of(ctx)
    configure_logging("reconcile", settings.observability, secret_values(settings))

    def body() -> tuple[Report, Relanded | None]:
        if where and scope in (Scope.catalogue, Scope.price_plans):
            raise ConfigError(f"--where narrows the accounts; it does not apply to --scope {scope.value}")
        condition = check_where(where)
        check_kafka(settings)  # the run's request-log record must be writable before anything is read
        started_at = datetime.now(UTC)
        rest = asyncio.run(salesforce_client(settings))  # one login and one /limits read for every scope
        try:
            reports, relanded = _scopes(settings, rest, scope, condition, repair=repair)
        finally:
            rest.close()
        merged = _merged(reports, scope)
        log_run(settings, merged, started_at)
        return merged, relanded

    report, relanded = run_guarded(body)
    from services.reconcile.metrics import record
    from shared.observability import push_metrics

    record(report.counts(), dict(report.records), report.repaired, report.seconds)
    push_metrics(settings.reconcile.pushgateway_url, "sfls-reconcile")
    if output is not None:
        with output.open("w", encoding="utf-8") as handle:
            _write(report, relanded, output_format, handle)
    else:
        _write(report, relanded, output_format, sys.stdout)
    raise typer.Exit(EXIT_IN_SYNC if report.in_sync else EXIT_DRIFT)


def _scopes(
    settings: Settings, rest: SalesforceRest, scope: Scope, where: str, *, repair: bool
) -> tuple[list[Report], Relanded | None]:
    """The report of each scope asked for, in order (accounts, catalogue, price plans), repaired when asked."""
    from services.reconcile.catalogue import reconcile_catalogue, repair_catalogue
    from services.reconcile.price_plans import reconcile_price_plans
    from services.reconcile.run import reconcile_accounts
    from services.reconcile.run import repair as publish_repairs

    reports, relanded = [], None
    if scope in (Scope.accounts, Scope.all):
        accounts = asyncio.run(_counted(lambda p: reconcile_accounts(settings, rest, where=where, on_progress=p)))
        if repair:  # before the catalogue joins the report: only account drift is resynced
            publish_repairs(settings, rest, accounts)
        reports.append(accounts)
    if scope in (Scope.catalogue, Scope.all):
        catalogue = asyncio.run(_counted(lambda p: reconcile_catalogue(settings, rest, on_progress=p)))
        if repair:
            relanded = asyncio.run(repair_catalogue(settings, catalogue))
        reports.append(catalogue)
    if scope in (Scope.price_plans, Scope.all):  # reported only: --repair leaves price plan drift to a person
        reports.append(asyncio.run(_counted(lambda p: reconcile_price_plans(settings, rest, on_progress=p))))
    return reports, relanded


async def _counted(run: Callable[[Progress | None], Awaitable[T]]) -> T:
    """`run(on_progress)` with a counter per name it reports (system, entity) on a terminal; without a terminal
    there is none, and the structured logs tell what was read."""
    from rich.progress import Progress as Bar
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    if not sys.stderr.isatty():
        return await run(None)
    columns = (SpinnerColumn(), TextColumn("{task.description}: {task.completed:,} read"), TimeElapsedColumn())
    with Bar(*columns) as bar:
        tasks: dict[str, Any] = {}

        def advance(name: str, n: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=None)
            bar.update(tasks[name], completed=n)

        return await run(advance)


def _merged(reports: Sequence[Report], scope: Scope) -> Report:
    """One report for `--scope all` (accounts, catalogue, price plans); the one report of a single scope as it is."""
    if len(reports) == 1:
        return reports[0]
    merged = Report(scope=scope.value)
    for report in reports:
        merged.drifts.extend(report.drifts)
        merged.records.update(report.records)
        merged.repaired += report.repaired
        merged.seconds += report.seconds
    return merged


def _summary(report: Report, relanded: Relanded | None) -> dict[str, Any]:
    """The report's summary, plus what `--repair` re-landed through the importer (scopes with the catalogue)."""
    summary = report.summary()
    if report.scope in (Scope.catalogue.value, Scope.all.value):
        from services.reconcile.catalogue import Relanded

        summary["summary"].update((relanded or Relanded()).summary())
    return summary


def _write(report: Report, relanded: Relanded | None, output_format: Format, stream: TextIO) -> None:
    if output_format is Format.json:
        for item in [*(d.to_json() for d in report.drifts), _summary(report, relanded)]:
            stream.write(json.dumps(item, separators=(",", ":"), ensure_ascii=False, default=str) + "\n")
        stream.flush()
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, width=160)
    records = ", ".join(f"{n:,} {system.replace('_', ' ')}" for system, n in sorted(report.records.items()))
    if report.in_sync:
        console.print(f"IN SYNC: no drift ({records} compared)")
        return
    table = Table(title=f"Drift ({records} compared)", title_justify="left")
    for column in ("kind", "count", "examples"):
        table.add_column(column)
    for kind, count in report.counts().items():
        examples = [d for d in report.drifts if d.kind.value == kind][:EXAMPLES]
        table.add_row(kind, str(count), "\n".join(_example(d) for d in examples))
    console.print(table)
    if report.repaired:
        console.print(f"repair: {report.repaired} accounts resynced through the syncer (source reconcile)")
    if relanded is not None and relanded.entities:
        failed = f", {relanded.failed} failed (see the importer's dead letters)" if relanded.failed else ""
        console.print(
            f"repair: {relanded.records} catalogue records re-landed through the importer "
            f"({', '.join(relanded.entities)}){failed}"
        )
    if any(kind.startswith("price_plan") for kind in report.counts()):
        console.print(
            "price plans: reported only; clear the opportunity's LogiSense_Push_Hash__c, then "
            "`sfls opportunity push <Id>` (see the README's Reconcile)"
        )
    console.print(f"DRIFT: {sum(report.counts().values())} differences")


def _example(drift: Drift) -> str:
    where = " / ".join(
        part
        for part in (drift.salesforce_id, f"LogiSense {drift.logisense_id}" if drift.logisense_id else None)
        if part
    )
    if drift.field:
        return f"{where}: {drift.field} {drift.logisense!r} in LogiSense, {drift.salesforce!r} from Salesforce"
    return ": ".join(part for part in (where, drift.detail) if part)  # the price book may have neither id
