"""Bounded-memory sorting and merging (services/reconcile/merge.py), on records made here."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from services.reconcile.merge import KeyIndex, NumberIndex, SortedRuns, groups


def test_a_stream_larger_than_a_buffer_comes_back_sorted_from_files_and_can_be_read_twice(tmp_path: Path) -> None:
    """1,000 shuffled records in runs of 64: 16 temporary files, read back in key order, twice, then removed."""
    keys = [f"{n:05d}" for n in range(1000)]
    random.Random(3).shuffle(keys)
    with SortedRuns(lambda r: r["k"], chunk=64, work_dir=str(tmp_path)) as runs:
        runs.extend({"k": k, "payload": {"n": int(k)}} for k in keys)
        assert runs.count == 1000
        assert len(runs._files) == 15  # 15 full buffers so far; the last 40 records spill when read
        first = [r["k"] for r in runs]
        assert first == sorted(keys)
        assert [r["payload"]["n"] for r in runs] == list(range(1000))  # the second pass, the nested values too
    assert runs._files == []


def test_a_small_stream_never_touches_the_disk(tmp_path: Path) -> None:
    with SortedRuns(lambda r: r["k"], chunk=100, work_dir=str(tmp_path)) as runs:
        runs.extend({"k": k} for k in "dbca")
        assert [r["k"] for r in runs] == list("abcd")
        assert runs._files == []


def test_groups_pair_equal_keys_and_keep_one_sided_ones() -> None:
    """Keys on the left only, the right only and both, with several records per key on either side."""
    left = [{"k": k} for k in ("a", "b", "b", "d")]
    right = [{"k": k, "n": n} for n, k in enumerate(("b", "c", "c", "d", "e"))]
    found = [(k, len(a), [r["n"] for r in b]) for k, a, b in groups(left, right, lambda r: r["k"], lambda r: r["k"])]
    assert found == [("a", 1, []), ("b", 2, [0]), ("c", 0, [1, 2]), ("d", 1, [3]), ("e", 0, [4])]
    assert list(groups([], [], lambda r: r, lambda r: r)) == []


def test_key_index_maps_ordered_ids_and_refuses_disorder() -> None:
    """15-character ids in order map to their first value; other widths are ignored; disorder is an error."""
    index = KeyIndex()
    for key, value in (("001000000000001", 7), ("001000000000001", 9), ("001000000000002", 8), ("short", 1)):
        index.add(key, value)
    assert len(index) == 2
    assert (index.get("001000000000001"), index.get("001000000000002")) == (7, 8)
    assert index.get("001000000000003") is None
    assert index.get("short") is None
    with pytest.raises(ValueError, match="in order"):
        index.add("001000000000000", 1)


def test_number_index_sorts_what_came_out_of_order() -> None:
    index = NumberIndex(18)
    for number, key in ((30, "001000000000003AAA"), (10, "001000000000001AAA"), (20, "001000000000002".ljust(18))):
        index.add(number, key)
    index.freeze()
    assert index.get(10) == "001000000000001AAA"
    assert index.get(20) == "001000000000002   "
    assert index.get(30) == "001000000000003AAA"
    assert index.get(15) is None
