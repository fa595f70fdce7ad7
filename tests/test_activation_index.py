"""DuckDB finds Phase 1 activations in the records; missing columns and broken or missing files are named."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from pva_dagster.study import storage
from pva_dagster.study.analysis.activation_index import activation_index, load_residuals, phase1_records
from pva_dagster.study.layout import DataLayout


def _phase1_file(layout: DataLayout, key: str, task_ids: list[int], layers: list[int]) -> pd.DataFrame:
    rows = []
    for task_id in task_ids:
        passed = task_id % 2 == 0
        label = "correct" if passed else "incorrect"
        files = []
        for layer in layers:
            path = layout.phase1_0_activation(label, task_id, layer)
            storage.write_npz(path, residual=np.full(4, task_id * 10 + layer, dtype=np.float32))
            files.append(str(path))
        rows.append({"task_id": task_id, "sample": 0, "temperature": 0.0, "passed": passed, "label": label,
                     "layers": layers, "activation_files": files})
    storage.write_parquet(layout.phase1_0_dataset(key), pd.DataFrame(rows))
    return pd.read_parquet(layout.phase1_0_dataset(key))  # as the IO manager hands a partition over


def test_index_selects_tasks_and_layers_and_files_load(tmp_path):
    layout = DataLayout(tmp_path)
    partitions = [
        _phase1_file(layout, "0000-0004", [1, 2, 3, 4], [0, 3]),
        _phase1_file(layout, "0005-0009", [5, 6], [0, 3]),
        pd.DataFrame(),  # a range with no tasks
    ]
    with duckdb.connect() as conn:
        index = activation_index(conn, phase1_records(partitions), task_ids=[2, 3, 6], layers=[3])
    assert index.task_id.tolist() == [2, 3, 6]
    assert index.passed.tolist() == [True, False, True]
    residuals = load_residuals(index.file.tolist())
    assert residuals.shape == (3, 4)
    assert residuals[:, 0].tolist() == [23.0, 33.0, 63.0]


def test_phase1_2_samples_and_temperatures_sharing_a_task_file_each_get_a_row(tmp_path):
    layout = DataLayout(tmp_path)
    for task_id in (1, 2):
        storage.write_npz(layout.phase1_2_activation(task_id, 3), residual=np.full(4, task_id, dtype=np.float32))
    records = pd.DataFrame([
        {"task_id": task_id, "sample": sample, "temperature": temperature, "passed": sample == 0,
         "label": "correct" if sample == 0 else "incorrect", "layers": [3],
         "activation_files": [str(layout.phase1_2_activation(task_id, 3))]}
        for temperature in (0.3, 0.6) for task_id in (1, 2) for sample in (0, 1)
    ])
    with duckdb.connect() as conn:
        index = activation_index(conn, records, task_ids=[1, 2], layers=[3])
    assert len(index) == 8 and index.file.nunique() == 2
    residuals = load_residuals(index.file.tolist())
    assert residuals[:, 0].tolist() == index.task_id.astype(float).tolist()


def test_no_records_and_wrong_columns_are_named():
    with pytest.raises(ValueError, match="hold no records: materialize Phase 1"):
        phase1_records([pd.DataFrame(), pd.DataFrame()])
    with duckdb.connect() as conn, pytest.raises(ValueError, match=r"lack the columns \['temperature'"):
        activation_index(conn, pd.DataFrame({"task_id": [1], "sample": [0]}), [1], [0])


def test_truncated_or_missing_npz_is_named(tmp_path):
    layout = DataLayout(tmp_path)
    _phase1_file(layout, "0000-0004", [1, 2], [0])
    good, broken = layout.phase1_0_activation("correct", 2, 0), layout.phase1_0_activation("incorrect", 1, 0)
    broken.write_bytes(broken.read_bytes()[:20])
    with pytest.raises(ValueError, match="1_layer_0.npz"):
        load_residuals([str(good), str(broken)])
    broken.unlink()
    with pytest.raises(FileNotFoundError, match="1_layer_0.npz"):
        load_residuals([str(broken)])
