"""`sfls reconcile`: the command around services/reconcile/run.py (output formats, progress, exit codes)."""

from __future__ import annotations

import asyncio
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from services.reconcile.drift import Drift
from services.reconcile.run import Report

if TYPE_CHECKING:
    from shared.salesforce import SalesforceRest
    from shared.settings import Settings

EXIT_IN_SYNC, EXIT_DRIFT = 0, 1
EXAMPLES = 5  # drifts shown per kind in the table


class Scope(StrEnum):
    accounts = "accounts"


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
            help="What to compare: accounts (Salesforce accounts against the LogiSense accounts linked to them).",
        ),
    ] = Scope.accounts,
    where: Annotated[
        str, typer.Option("--where", help="SOQL condition on Account, e.g. \"Type = 'Customer'\" (no orphan check).")
    ] = "",
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Publish a RESYNC event for every missing or mismatched account, so the syncer writes it again; "
            "orphans and duplicates are only reported.",
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
    """Compare Salesforce with LogiSense through the syncer's mapping; exit 0 in sync, 1 with drift, 2 bad input."""
    from services.command import run_guarded, settings_of
    from services.listener.backfill import check_where
    from services.reconcile.run import repair as publish_repairs
    from shared.observability import configure_logging, secret_values

    settings = settings_of(ctx)
    configure_logging("reconcile", settings.observability, secret_values(settings))

    def body() -> Report:
        condition = check_where(where)
        report, rest = asyncio.run(_with_progress(settings, condition))
        if repair:
            publish_repairs(settings, rest, report)
        return report

    report = run_guarded(body)
    from services.reconcile.metrics import record
    from shared.observability import push_metrics

    record(report.counts(), dict(report.records), report.repaired, report.seconds)
    push_metrics(settings.reconcile.pushgateway_url, "sfls-reconcile")
    if output is not None:
        with output.open("w", encoding="utf-8") as handle:
            _write(report, output_format, handle)
    else:
        _write(report, output_format, sys.stdout)
    raise typer.Exit(EXIT_IN_SYNC if report.in_sync else EXIT_DRIFT)


async def _with_progress(settings: Settings, where: str) -> tuple[Report, SalesforceRest]:
    """Read and compare, with a counter per system on a terminal (structured logs otherwise)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from services.reconcile.run import reconcile_accounts

    if not sys.stderr.isatty():
        return await reconcile_accounts(settings, where=where)
    columns = (SpinnerColumn(), TextColumn("{task.description}: {task.completed:,} read"), TimeElapsedColumn())
    with Progress(*columns) as bar:
        tasks = {name: bar.add_task(name, total=None) for name in ("logisense", "salesforce", "salesforce contacts")}
        return await reconcile_accounts(
            settings, where=where, on_progress=lambda system, n: bar.update(tasks[system], completed=n)
        )


def _write(report: Report, output_format: Format, stream: TextIO) -> None:
    if output_format is Format.json:
        for item in [*(d.to_json() for d in report.drifts), report.summary()]:
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
    console.print(f"DRIFT: {sum(report.counts().values())} differences")


def _example(drift: Drift) -> str:
    where = " / ".join(
        part
        for part in (drift.salesforce_id, f"LogiSense {drift.logisense_id}" if drift.logisense_id else None)
        if part
    )
    if drift.field:
        return f"{where}: {drift.field} {drift.logisense!r} in LogiSense, {drift.salesforce!r} from Salesforce"
    return f"{where}: {drift.detail}" if drift.detail else where
