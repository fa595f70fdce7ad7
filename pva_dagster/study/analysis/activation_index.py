"""Find Phase 1 activations with DuckDB and load them from the NPZ files the records point to.

The Phase 1 Parquet holds one row per (task, sample) with ``layers`` and ``activation_files`` lists; a DuckDB
``unnest`` turns that into one row per (task, sample, layer, file) without loading the tables into pandas first.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

REQUIRED_COLUMNS = ("task_id", "sample", "temperature", "passed", "label", "layers", "activation_files")


def _sql_list(paths: Sequence[str | Path]) -> str:
    quoted = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    return f"[{quoted}]"


def check_datasets(conn: duckdb.DuckDBPyConnection, files: Sequence[str | Path]) -> None:
    """Raise naming the file when a dataset is missing or lacks a column Phase 2 reads."""
    check_exists(files)
    for file in files:
        columns = {
            row[0]
            for row in conn.execute(f"DESCRIBE SELECT * FROM read_parquet({_sql_list([file])})").fetchall()
        }
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"Phase 1 dataset {file} lacks the columns {missing}; is it a Phase 1 dataset?")


def nonempty(files: Sequence[str | Path]) -> list[str]:
    """The files that hold at least one record (a task range with no task of a split writes an empty file)."""
    check_exists(files)
    return [str(f) for f in files if pq.ParquetFile(f).metadata.num_rows > 0]


def check_exists(files: Sequence[str | Path]) -> None:
    if not files:
        raise FileNotFoundError("no Phase 1 dataset files were given: materialize Phase 1 first")
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"Phase 1 dataset files do not exist: {missing}")


def activation_index(
    conn: duckdb.DuckDBPyConnection,
    files: Sequence[str | Path],
    task_ids: Sequence[int],
    layers: Sequence[int],
) -> pd.DataFrame:
    """One row per (task_id, sample, temperature, layer) of the given tasks: passed, label and NPZ file."""
    files = nonempty(files)
    check_datasets(conn, files)
    conn.register("wanted_tasks", pd.DataFrame({"task_id": list(task_ids)}))
    conn.register("wanted_layers", pd.DataFrame({"layer": list(layers)}))
    try:
        return conn.execute(
            f"""
            WITH rows AS (
                SELECT task_id, sample, temperature, passed, label,
                       unnest(layers) AS layer, unnest(activation_files) AS file
                FROM read_parquet({_sql_list(files)}, union_by_name = true)
            )
            SELECT rows.* FROM rows
            JOIN wanted_tasks USING (task_id)
            JOIN wanted_layers USING (layer)
            ORDER BY temperature, task_id, sample, layer
            """
        ).df()
    finally:
        conn.unregister("wanted_tasks")
        conn.unregister("wanted_layers")


def load_residuals(files: Sequence[str]) -> np.ndarray:
    """Stack the ``residual`` arrays of NPZ files -> [n, d_model] float32; raise naming a missing/broken file."""
    arrays = []
    for file in files:
        try:
            with np.load(file) as npz:
                arrays.append(np.asarray(npz["residual"], dtype=np.float32))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"activation file {file} is missing: re-materialize its Phase 1 partition"
            ) from None
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as error:
            raise ValueError(f"activation file {file} is unreadable or truncated ({error})") from error
    if not arrays:
        raise ValueError("no activation files to load")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"activation files disagree on shape: {sorted(shapes)}")
    return np.stack(arrays)
