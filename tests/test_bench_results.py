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


def test_more_rows_than_before_stay_together_and_a_longer_label_is_another_benchmark() -> None:
    previous = [
        TABLE_HEADER,
        "|---|---|---:|---|---|---:|---:|",
        "| listener | rate | 1.00 | msg/s |  |  |  |",
        "| syncer | wall time | 9.00 | s |  |  |  |",
        "| importer | wall time | 9.00 | s |  |  |  |",
        "| syncer scale-out (12 partitions) | 1 syncer process | 7.00 | events/s |  |  |  |",
    ]
    rows: list[dict[str, Any]] = [
        {"benchmark": "syncer", "metric": "wall time", "value": 3.0, "unit": "s"},
        {"benchmark": "syncer", "metric": "cpu", "value": 1.0, "unit": "s"},
        {"benchmark": "listener", "metric": "rate", "value": 2.0, "unit": "msg/s"},
        {"benchmark": "listener", "metric": "cpu", "value": 0.5, "unit": "s"},
    ]
    _head, table = _merged(previous, rows, [_table_row(r) for r in rows])
    assert table == [
        "| listener | rate | 2.00 | msg/s |  |  |  |",
        "| listener | cpu | 0.50 | s |  |  |  |",
        "| syncer | wall time | 3.00 | s |  |  |  |",
        "| syncer | cpu | 1.00 | s |  |  |  |",
        "| importer | wall time | 9.00 | s |  |  |  |",
        "| syncer scale-out (12 partitions) | 1 syncer process | 7.00 | events/s |  |  |  |",
    ]
