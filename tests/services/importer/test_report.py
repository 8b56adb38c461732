"""Unit tests: the run summary table and the failure lines people read after a run."""

from __future__ import annotations

from rich.console import Console

from services.importer.report import failure_lines, summary_table
from services.importer.run import EntityReport, RunReport


def _render(report: RunReport) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(summary_table(report))
    return console.export_text()


def _rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│") if cell.strip()]
        if cells:
            rows[cells[0]] = cells[1:]
    return rows


def test_summary_has_a_row_per_entity_and_totals() -> None:
    """Each entity shows fetched..deleted and seconds; the total row sums them."""
    report = RunReport(
        [
            EntityReport("country", fetched=4, published=4, created=4, duration_seconds=0.25),
            EntityReport("state", fetched=10, published=10, updated=1, unchanged=8, failed=1, duration_seconds=0.5),
        ]
    )
    rows = _rows(_render(report))
    assert rows["country"] == ["4", "4", "4", "0", "0", "0", "0", "0.2"]
    assert rows["state"] == ["10", "10", "0", "1", "8", "1", "0", "0.5"]
    assert rows["total"] == ["14", "14", "4", "1", "8", "1", "0", "0.8"]
    assert not report.ok


def test_failure_lines_name_each_reason_and_how_many_more() -> None:
    """Failure lines list the recorded reasons, an entity-level error, and the count left in the dead-letter topic."""
    package = EntityReport("package", failed=7)
    for identity in range(1, 6):
        package.note(f"package {identity}: STRING_TOO_LONG")
    rate = EntityReport("rate", error="LogiSense unreachable")
    lines = failure_lines(RunReport([package, rate], dry_run=True))
    assert lines[:5] == [f"package {i}: STRING_TOO_LONG" for i in range(1, 6)]
    assert lines[5] == "package: ... and 2 more (see the importer dead-letter topic)"
    assert lines[6] == "rate: LogiSense unreachable"
    assert "dry run" in _render(RunReport([], dry_run=True))
