"""The `sfls` subcommands of the listener: thin functions that read settings and call the service."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Attach this service's subcommands to the `sfls` command."""
    app.command("listener")(listener)
    app.command("backfill")(backfill)


def listener(ctx: typer.Context) -> None:
    """Stream Salesforce Change Data Capture into Kafka until SIGTERM (resumes from its checkpoint)."""
    from services.command import run_guarded, settings_of
    from services.listener.app import main

    settings = settings_of(ctx)
    run_guarded(lambda: main(settings))


def backfill(
    ctx: typer.Context,
    where: Annotated[
        str, typer.Option("--where", help="SOQL condition on Account (or Opportunity), e.g. \"Type = 'Customer'\".")
    ] = "",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the last unfinished backfill after its last committed Id.")
    ] = False,
    opportunities: Annotated[
        bool,
        typer.Option(
            "--opportunities",
            help="Publish a RESYNC event for every won Opportunity instead, so the syncer pushes (or marks) each "
            "again (needs opportunity.watch or auto_push on the syncer; unchanged ones write nothing).",
        ),
    ] = False,
) -> None:
    """Start Data Sync: publish a RESYNC event for every Account (and so its Contacts)."""
    from services.command import out, run_guarded, settings_of
    from services.listener.backfill_cli import backfill_command

    settings = settings_of(ctx)
    progress = run_guarded(
        lambda: backfill_command(settings, where=where, resume=resume, opportunities=opportunities),
        again="resume with `sfls backfill --resume`",
    )
    what = "won opportunities" if opportunities else "accounts"
    out.print(f"backfill {progress.run_id}: {progress.published} {what} published (resync events)")
