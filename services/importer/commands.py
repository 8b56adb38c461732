"""The `sfls import` subcommands: thin functions that read settings and call the importer."""

from __future__ import annotations

import json
from typing import Annotated

import typer

import_app = typer.Typer(
    help="Import catalogue, reference data and invoices from LogiSense into Kafka and Salesforce.",
    no_args_is_help=True,
)

Only = Annotated[str | None, typer.Option("--only", help="Import just this entity of the group (e.g. package).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Fetch and report what would change; write nothing.")]


def register(app: typer.Typer) -> None:
    """Attach this service's subcommands to the `sfls` command."""
    app.add_typer(import_app, name="import")


def _run(ctx: typer.Context, group: str, only: str | None, dry_run: bool, account: str | None = None) -> None:
    from services.command import run_guarded, settings_of
    from services.importer.app import import_command
    from services.importer.targets import select

    settings = settings_of(ctx)
    names = run_guarded(lambda: select(group, only))
    code = run_guarded(
        lambda: import_command(settings, names, dry_run=dry_run, account=account),
        again="run the same import again (what already landed is unchanged and skipped)",
    )
    if code:
        raise typer.Exit(code)


@import_app.command("catalogue")
def catalogue(ctx: typer.Context, only: Only = None, dry_run: DryRun = False) -> None:
    """Import the catalogue: Packages, Services, Rate Plans, Share Plans, then the LogiSense Price Book.

    Packages with their frequencies (Product2), currencies, pricing rules and rate plan connections;
    Services with usage buckets; Rate Plans with groups and rates; Share Plans with levels and amounts;
    the price book (price_book) and its standard and custom entries (price_book_entry).
    """
    _run(ctx, "catalogue", only, dry_run)


@import_app.command("data")
def data(ctx: typer.Context, only: Only = None, dry_run: DryRun = False) -> None:
    """Import reference data: status and account types, contact types and points, countries and states, ...

    Account Status Types, Account Types, Contact Types and Points, Countries and States, Owners and
    their Currencies, Bill Groups, AR Terms.
    """
    _run(ctx, "data", only, dry_run)


@import_app.command("invoices")
def invoices(
    ctx: typer.Context,
    account: Annotated[
        str | None,
        typer.Option(
            "--account", help="Only this account's invoices: a LogiSense account id or a Salesforce Account Id."
        ),
    ] = None,
    dry_run: DryRun = False,
) -> None:
    """The account invoice list with the configured columns and labels (mappings.invoice_columns)."""
    _run(ctx, "invoices", None, dry_run, account)


@import_app.command("all")
def import_all(ctx: typer.Context, only: Only = None, dry_run: DryRun = False) -> None:
    """Data, then catalogue, then invoices."""
    _run(ctx, "all", only, dry_run)


@import_app.command("schema")
def schema(ctx: typer.Context) -> None:
    """Print the Salesforce custom objects and fields the import lands in (JSON), for an org admin to deploy."""
    from services.command import out, settings_of
    from services.importer.targets import salesforce_schema

    out.print_json(json.dumps(salesforce_schema(settings_of(ctx))))
