"""What a person sees: a progress bar per entity on a terminal, and the run summary table."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.importer.run import EntityReport, RunReport

COLUMNS = ("fetched", "published", "created", "updated", "unchanged", "failed", "deleted")


class RichProgress:
    """One line per entity: spinner while it runs, item count, elapsed time, then its outcome."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description:<24}"),
            BarColumn(bar_width=None),
            TextColumn("{task.completed:>9,.0f} items"),
            TextColumn("{task.fields[outcome]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def start(self, entity: str) -> None:
        self._tasks[entity] = self._progress.add_task(entity, total=None, outcome="")

    def advance(self, entity: str, fetched: int) -> None:
        self._progress.update(self._tasks[entity], completed=fetched)

    def finish(self, report: EntityReport) -> None:
        outcome = "[green]ok" if report.ok else f"[red]{report.failed} failed" + (" (error)" if report.error else "")
        self._progress.update(
            self._tasks[report.entity], completed=report.fetched, total=max(report.fetched, 1), outcome=outcome
        )


def summary_table(report: RunReport) -> Table:
    """Fetched, published, created, updated, unchanged, failed, deleted and duration per entity."""
    title = "Import summary" + (" (dry run: nothing written)" if report.dry_run else "")
    table = Table(title=title, title_justify="left")
    table.add_column("entity")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    table.add_column("seconds", justify="right")
    totals = dict.fromkeys(COLUMNS, 0)
    for entity in report.entities:
        counts = entity.counts()
        for column in COLUMNS:
            totals[column] += counts[column]
        style = None if entity.ok else "red"
        table.add_row(
            entity.entity,
            *(f"{counts[c]:,}" for c in COLUMNS),
            f"{entity.duration_seconds:.1f}",
            style=style,
        )
    table.add_row(
        "total",
        *(f"{totals[c]:,}" for c in COLUMNS),
        f"{sum(e.duration_seconds for e in report.entities):.1f}",
        style="bold",
    )
    return table


def failure_lines(report: RunReport) -> list[str]:
    """One line per reason a record or an entity did not land (the first few per entity)."""
    lines = []
    for entity in report.entities:
        if entity.error:
            lines.append(f"{entity.entity}: {entity.error}")
        lines.extend(entity.reasons)
        hidden = entity.failed - len(entity.reasons)
        if hidden > 0:
            lines.append(f"{entity.entity}: ... and {hidden} more (see the importer dead-letter topic)")
    return lines


def note_lines(report: RunReport) -> list[str]:
    """What an entity planned but did not send, and why (price book entries in currencies the org lacks)."""
    return [f"{entity.entity}: {note}" for entity in report.entities for note in entity.notes]
