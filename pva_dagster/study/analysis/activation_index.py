"""Find Phase 1 activations with DuckDB and load them from the NPZ files the records point to.

A Phase 1 record is one row per (task, sample) with ``layers`` and ``activation_files`` lists; a DuckDB
``unnest`` over the records (handed over as Arrow) turns that into one row per (task, sample, layer, file).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

REQUIRED_COLUMNS = ("task_id", "sample", "temperature", "passed", "label", "layers", "activation_files")


def phase1_records(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The Phase 1 records of several partitions in one frame (a task range with no task adds nothing)."""
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        raise ValueError("the Phase 1 partitions hold no records: materialize Phase 1 first")
    return pd.concat(frames, ignore_index=True)


def activation_index(
    conn: duckdb.DuckDBPyConnection,
    records: pd.DataFrame,
    task_ids: Sequence[int],
    layers: Sequence[int],
) -> pd.DataFrame:
    """One row per (task_id, sample, temperature, layer) of the given tasks: passed, label and NPZ file."""
    missing = [c for c in REQUIRED_COLUMNS if c not in records.columns]
    if missing:
        raise ValueError(f"the Phase 1 records lack the columns {missing}; are they Phase 1 datasets?")
    conn.register("records", pa.Table.from_pandas(records[list(REQUIRED_COLUMNS)], preserve_index=False))
    conn.register("wanted_tasks", pd.DataFrame({"task_id": list(task_ids)}))
    conn.register("wanted_layers", pd.DataFrame({"layer": list(layers)}))
    try:
        return conn.execute(
            """
            WITH rows AS (
                SELECT task_id, sample, temperature, passed, label,
                       unnest(layers) AS layer, unnest(activation_files) AS file
                FROM records
            )
            SELECT rows.* FROM rows
            JOIN wanted_tasks USING (task_id)
            JOIN wanted_layers USING (layer)
            ORDER BY temperature, task_id, sample, layer
            """
        ).df()
    finally:
        for view in ("records", "wanted_tasks", "wanted_layers"):
            conn.unregister(view)


def load_residuals(files: Sequence[str]) -> np.ndarray:
    """Stack the ``residual`` arrays of NPZ files -> [n, d_model] float32; raise naming a missing/broken file.

    A file named several times (Phase 1.2: every sample and temperature of a task shares its files) is read once.
    """
    distinct = list(dict.fromkeys(files))
    arrays = []
    for file in distinct:
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
    row_of = {file: row for row, file in enumerate(distinct)}
    return np.stack(arrays)[[row_of[file] for file in files]]
