"""`sfls requests-tab`: the Requests tab writer (`run`) and its retention purge run once (`purge`)."""

from __future__ import annotations

from typing import Annotated

import typer

tab_app = typer.Typer(
    help="The LogiSense Requests tab inside Salesforce: land the request log and the dead letters there.",
    no_args_is_help=True,
)


@tab_app.command("run")
def run(ctx: typer.Context) -> None:
    """Land the request log and the dead letters in Salesforce, until SIGTERM.

    Each request becomes a LogiSense Request record, each dead letter a Request Error Log under it.
    SFLS_REQUESTS_TAB__MODE says which requests: failures (the default), all, or off.
    """
    import asyncio

    from services.command import run_guarded, settings_of
    from services.requests_tab.app import run as run_writer

    settings = settings_of(ctx)
    run_guarded(lambda: asyncio.run(run_writer(settings)))


@tab_app.command("purge")
def purge(
    ctx: typer.Context,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            min=0.0,
            help="Days; default SFLS_REQUESTS_TAB__RETENTION_DAYS. Requests started before are deleted.",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")] = False,
) -> None:
    """Delete the requests older than the retention, once.

    Their error logs go with them, in one Bulk API 2.0 job. The writer does this every
    SFLS_REQUESTS_TAB__PURGE_INTERVAL_SECONDS.
    """
    from services.command import fail, out, run_guarded, settings_of
    from services.requests_tab.app import SERVICE, check_objects
    from services.requests_tab.purge import purge as purge_expired
    from shared.budget import Work
    from shared.salesforce import SalesforceRest

    settings = settings_of(ctx)
    days = settings.requests_tab.retention_days if older_than is None else older_than
    if days <= 0:
        raise fail("nothing to purge: the retention is 0 days (kept forever); give --older-than DAYS")
    rest = SalesforceRest.for_service(settings, SERVICE, Work.BULK)
    try:
        run_guarded(lambda: check_objects(rest))
        found, errors = run_guarded(lambda: purge_expired(rest, days, dry_run=dry_run))
    finally:
        rest.close()
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{verb} {found} request(s) started more than {days:g} day(s) ago, with their error logs")
    for error in errors[:10]:
        out.print(f"refused: {error}")
    if errors:
        raise fail(f"Salesforce refused to delete {len(errors)} request(s); see above")


def register(app: typer.Typer) -> None:
    """Attach this service's subcommands to the `sfls` command."""
    app.add_typer(tab_app, name="requests-tab")
