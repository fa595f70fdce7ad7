"""Atomic writes and the resumable record table."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from pva_dagster.study import storage
from pva_dagster.study.records import RecordTable


def test_atomic_write_leaves_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "table.parquet"
    storage.write_parquet(target, pd.DataFrame({"a": [1, 2]}))
    with pytest.raises(RuntimeError), storage.atomic_path(target) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("crash mid-write")
    assert pd.read_parquet(target).a.tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]  # no temp file left behind


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_take_the_mode_the_umask_gives_a_new_file(tmp_path, umask, mode):
    # Other workers of a cluster (other processes, often other users) read what one worker wrote.
    old = os.umask(umask)
    try:
        for write, name in [(storage.write_json, "a.json"), (lambda p, v: storage.write_npz(p, x=v), "b.npz")]:
            write(tmp_path / name, np.zeros(2) if name.endswith("npz") else {"a": 1})
        storage.write_parquet(tmp_path / "c.parquet", pd.DataFrame({"a": [1]}))
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == dict.fromkeys(
        ["a.json", "b.npz", "c.parquet"], mode
    )


def test_npz_round_trip_keeps_exact_name_and_values(tmp_path):
    target = tmp_path / "deep" / "7_layer_3.npz"
    values = np.random.default_rng(0).normal(size=16).astype(np.float32)
    storage.write_npz(target, residual=values)
    assert os.listdir(target.parent) == ["7_layer_3.npz"]
    with np.load(target) as npz:
        np.testing.assert_array_equal(npz["residual"], values)


def test_record_table_resumes_and_never_duplicates(tmp_path):
    path = tmp_path / "dataset.parquet"
    table = RecordTable(path, ["task_id", "sample"])
    assert table.add([{"task_id": 1, "sample": 0, "x": "a"}, {"task_id": 2, "sample": 0, "x": "b"}]) == 2
    table.flush()
    resumed = RecordTable(path, ["task_id", "sample"])
    assert (1, 0) in resumed and (3, 0) not in resumed
    assert resumed.add([{"task_id": 2, "sample": 0, "x": "again"}, {"task_id": 3, "sample": 0, "x": "c"}]) == 1
    resumed.flush()
    frame = pd.read_parquet(path)
    assert frame.task_id.tolist() == [1, 2, 3]
    assert frame.x.tolist() == ["a", "b", "c"]


def test_record_table_refuses_a_file_without_its_key(tmp_path):
    path = tmp_path / "other.parquet"
    pd.DataFrame({"task": [1]}).to_parquet(path)
    with pytest.raises(ValueError, match="lacks the key columns"):
        RecordTable(path, ["task_id", "sample"])


def test_record_table_keeps_only_records_of_the_expected_producer(tmp_path):
    path = tmp_path / "unit.parquet"
    first = RecordTable(path, ["task_id", "sample"], {(1, 0): "a", (2, 0): "b", (3, 0): "c"})
    first.add([{"task_id": t, "sample": 0, "x": str(t)} for t in (1, 2, 3)])
    first.flush()
    assert pd.read_parquet(path).attrs["fingerprints"] == {"1|0": "a", "2|0": "b", "3|0": "c"}
    # Task 2 now comes from another input, task 3 is no longer asked for, task 4 is new.
    again = RecordTable(path, ["task_id", "sample"], {(1, 0): "a", (2, 0): "B", (4, 0): "d"})
    assert (1, 0) in again and (2, 0) not in again and (3, 0) not in again and again.dropped == 2
    assert again.add([{"task_id": 2, "sample": 0, "x": "2 again"}, {"task_id": 4, "sample": 0, "x": "4"}]) == 2
    again.flush()
    frame = pd.read_parquet(path)
    assert frame.x.tolist() == ["1", "2 again", "4"]
    assert frame.attrs["fingerprints"] == {"1|0": "a", "2|0": "B", "4|0": "d"}
    # A file written without fingerprints (before they existed) resumes nothing.
    pd.DataFrame({"task_id": [1], "sample": [0], "x": ["old"]}).to_parquet(path)
    assert len(RecordTable(path, ["task_id", "sample"], {(1, 0): "a"})) == 0
