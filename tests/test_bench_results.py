"""bench/__main__.py: a subset run replaces only its own rows of RESULTS.md."""

from __future__ import annotations

from typing import Any

from bench.__main__ import TABLE_HEADER, _merged, _table_row


def test_subset_rows_replace_their_benchmark_and_keep_the_others() -> None:
    previous = [
        "# Benchmark results",
        "",
        "Measured 2026-01-01 00:00 UTC by `make bench` on a machine.",
        "",
        TABLE_HEADER,
        "|---|---|---:|---|---|---:|---:|",
        "| listener | rate | 1.00 | msg/s |  |  |  |",
        "| importer | wall time | 9.00 | s |  |  |  |",
        "| importer | calls | 9.00 | calls |  |  |  |",
        "| syncer | rate | 2.00 | ev/s |  |  |  |",
    ]
    rows: list[dict[str, Any]] = [
        {"benchmark": "importer", "metric": "wall time", "value": 3.0, "unit": "s"},
        {"benchmark": "scaleout", "metric": "speed-up", "value": 3.5, "unit": "x"},
    ]
    head, table = _merged(previous, rows, [_table_row(r) for r in rows])
    assert head == ["Measured 2026-01-01 00:00 UTC by `make bench` on a machine."]
    assert table == [
        "| listener | rate | 1.00 | msg/s |  |  |  |",
        "| importer | wall time | 3.00 | s |  |  |  |",
        "| syncer | rate | 2.00 | ev/s |  |  |  |",
        "| scaleout | speed-up | 3.50 | x |  |  |  |",
    ]
