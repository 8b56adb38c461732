"""The `sfls` subcommands of the syncer: thin functions that read settings and call the service.

sfls syncer                                   run the syncer (until SIGTERM/SIGINT)
sfls dlq list  [--error-class C] [--key K] [--since T] [--until T] [--json]
sfls dlq show  PARTITION:OFFSET [--json]
sfls dlq replay [filters] [--at PARTITION:OFFSET ...] [--dry-run]
sfls requests  [--limit N] [--status Success|Failed] [--key K] [--kind K] [--json]
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

dlq_app = typer.Typer(help="Inspect and replay dead letters of the syncer (sfls.changes.dlt).", no_args_is_help=True)

ErrorClass = Annotated[str | None, typer.Option("--error-class", help="Only this error class, e.g. RejectedError.")]
Key = Annotated[str | None, typer.Option("--key", help="Only this record key (the Salesforce account id).")]
Since = Annotated[str | None, typer.Option("--since", help="Failed at or after: ISO-8601 or a duration ago (2h).")]
Until = Annotated[str | None, typer.Option("--until", help="Failed at or before: ISO-8601 or a duration ago.")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")]


def _filter(error_class: str | None, key: str | None, since: str | None, until: str | None) -> Any:
    from services.syncer.dlq import DlqFilter, parse_time

    return DlqFilter(
        error_class=error_class,
        key=key,
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
    )


def syncer(ctx: typer.Context) -> None:
    """Consume sfls.changes and keep LogiSense in step with Salesforce (batched, coalesced, retried)."""
    import asyncio

    from services.command import run_guarded, settings_of
    from services.syncer.app import run

    settings = settings_of(ctx)
    run_guarded(lambda: asyncio.run(run(settings)))


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    *,
    error_class: ErrorClass = None,
    key: Key = None,
    since: Since = None,
    until: Until = None,
    as_json: AsJson = False,
) -> None:
    """List dead letters (oldest failure first) with their error class and reason."""
    from rich.table import Table

    from services.command import out, print_json_lines, run_guarded, settings_of
    from services.syncer.dlq import dead_letters
    from shared.acls import preflight
    from shared.kafka import Topics

    settings = settings_of(ctx)
    topic = Topics(settings.kafka.topic_prefix).changes_dlt
    run_guarded(lambda: preflight("dlq", settings))
    letters = run_guarded(lambda: dead_letters(settings.kafka, topic, _filter(error_class, key, since, until)))
    if as_json:
        print_json_lines(letter.as_dict() for letter in letters)
        return
    table = Table(title=f"{len(letters)} dead letter(s) in {topic}")
    for column in ("position", "failed at", "key", "error class", "status", "attempts", "reason"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            f"{letter.partition}:{letter.offset}",
            letter.last_failure.isoformat(timespec="seconds"),
            (letter.key or b"").decode(errors="replace"),
            letter.error_class,
            letter.http_status,
            letter.attempts,
            letter.message[:300],
        )
    out.print(table)


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    position: Annotated[str, typer.Argument(help="PARTITION:OFFSET as `sfls dlq list` shows it.")],
    as_json: AsJson = False,
) -> None:
    """Show one dead letter: every header and the original payload."""
    from services.command import fail, out, print_json_lines, run_guarded, settings_of
    from services.syncer.dlq import find, parse_position
    from shared.acls import preflight
    from shared.kafka import Topics

    settings = settings_of(ctx)
    topic = Topics(settings.kafka.topic_prefix).changes_dlt
    partition, offset = run_guarded(lambda: parse_position(position))
    run_guarded(lambda: preflight("dlq", settings))
    letter = run_guarded(lambda: find(settings.kafka, topic, partition, offset))
    if letter is None:
        raise fail(f"no dead letter at {position} in {topic}")
    if as_json:
        print_json_lines([letter.as_dict()])
        return
    out.print(f"[bold]{topic} {position}[/]  key={(letter.key or b'').decode(errors='replace')}")
    for name, value in sorted(letter.headers.items()):
        out.print(f"  {name}: {value}", highlight=False)
    for name, raw in letter.original_headers:
        out.print(f"  {name}: {raw.decode(errors='replace')}", highlight=False)
    value = (letter.value or b"").decode(errors="replace")
    try:
        out.print_json(value)
    except json.JSONDecodeError:
        out.print(value, highlight=False)


@dlq_app.command("replay")
def dlq_replay(
    ctx: typer.Context,
    *,
    error_class: ErrorClass = None,
    key: Key = None,
    since: Since = None,
    until: Until = None,
    at: Annotated[
        list[str] | None, typer.Option("--at", help="Only the dead letter at PARTITION:OFFSET (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed; produce nothing.")] = False,
) -> None:
    """Send matching dead letters back to their original topic (same key and payload, plus a replay header)."""
    from services.command import out, run_guarded, settings_of
    from services.syncer.dlq import dead_letters, parse_position, replay
    from shared.acls import preflight
    from shared.kafka import Topics

    settings = settings_of(ctx)
    topics = Topics(settings.kafka.topic_prefix)
    positions = {run_guarded(lambda p=p: parse_position(p)) for p in at or []}  # type: ignore[misc]
    run_guarded(lambda: preflight("dlq", settings))
    letters = run_guarded(
        lambda: dead_letters(settings.kafka, topics.changes_dlt, _filter(error_class, key, since, until))
    )
    if positions:
        letters = [letter for letter in letters if (letter.partition, letter.offset) in positions]
    plan = run_guarded(lambda: replay(settings.kafka, letters, default_topic=topics.changes, dry_run=dry_run))
    verb = "would replay" if dry_run else "replayed"
    for letter, target in plan:
        key_text = (letter.key or b"").decode(errors="replace")
        out.print(f"{verb} {letter.partition}:{letter.offset} key={key_text} -> {target} ({letter.error_class})")
    out.print(f"{verb} {len(plan)} dead letter(s)")


def requests(
    ctx: typer.Context,
    *,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many, newest first.")] = 50,
    status: Annotated[str | None, typer.Option("--status", help="Success or Failed.")] = None,
    key: Key = None,
    kind: Annotated[str | None, typer.Option("--kind", help="e.g. account_sync, POST Account.")] = None,
    as_json: AsJson = False,
) -> None:
    """Recent LogiSense requests with status, duration and reason (the original Requests tab)."""
    from rich.table import Table

    from services.command import out, print_json_lines, run_guarded, settings_of
    from shared.acls import preflight
    from shared.kafka import Topics
    from shared.requests import as_row, recent

    settings = settings_of(ctx)
    topic = Topics(settings.kafka.topic_prefix).requests
    run_guarded(lambda: preflight("requests", settings))
    records = run_guarded(lambda: recent(settings.kafka, topic, limit=limit, status=status, key=key, kind=kind))
    rows = [as_row(r) for r in records]
    if as_json:
        print_json_lines(rows)
        return
    table = Table(title=f"{len(rows)} most recent request(s) in {topic}")
    for column in ("started", "service", "kind", "key", "status", "ms", "attempts", "reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = "red" if row["status"] == "Failed" else ""
        table.add_row(
            row["started_at"],
            row["service"],
            row["kind"],
            row["key"],
            row["status"],
            str(row["duration_ms"]),
            str(row["attempts"]),
            row["reason"][:300],
            style=style,
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    """Attach this service's subcommands to the `sfls` command."""
    app.command("syncer")(syncer)
    app.command("requests")(requests)
    app.add_typer(dlq_app, name="dlq")
