"""The `sfls import` subcommands: thin functions that read settings and call the importer."""

from __future__ import annotations

import json
from pathlib import Path
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
def schema(
    ctx: typer.Context,
    out_dir: Annotated[
        Path,
        typer.Option("--out", help="Directory of the Salesforce DX project to write (made if missing)."),
    ] = Path("sfls-schema"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the schema as JSON (the emulator's shape) instead; write nothing.")
    ] = False,
) -> None:
    """Write the Salesforce custom objects, fields, tab and permission set sfls needs as DX source to deploy.

    Every custom object and field the import lands in, the LogiSense Requests tab and its error logs, the
    Account link and trigger fields, the quote to cash fields, and the permission set sfls_Integration:
    deploy with `sf project deploy start --source-dir force-app --target-org <alias>` (see DIR/README.md).
    """
    from services.command import out, run_guarded, settings_of
    from services.importer.schema import sfls_schema
    from services.importer.sfdx import PERMISSION_SET, render, write

    settings = settings_of(ctx)
    spec = run_guarded(lambda: sfls_schema(settings))
    if as_json:
        out.print_json(json.dumps(spec))
        return
    files = run_guarded(lambda: render(spec, settings.salesforce.api_version))
    run_guarded(lambda: write(out_dir, files))
    fields = sum(1 for path in files if "/fields/" in path)
    tabs = sum(1 for path in files if "/tabs/" in path)
    out.print(
        f"Wrote {len(files)} files to {out_dir}: {len(spec['objects'])} custom objects, {fields} custom fields "
        f"(on {len(spec['fields'])} standard objects too), {tabs} tab, permission set {PERMISSION_SET}.",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"Deploy: cd {out_dir} && sf project deploy start --source-dir force-app --target-org <alias> && "
        f"sf org assign permset --name {PERMISSION_SET} --target-org <alias> --on-behalf-of <integration user>",
        highlight=False,
        soft_wrap=True,
    )
