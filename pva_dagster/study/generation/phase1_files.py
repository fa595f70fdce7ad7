"""The Phase 1 dataset files that a complete Phase 1 materialization leaves, one per partition."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pva_dagster.study.layout import DataLayout
from pva_dagster.study.problems.task_ranges import task_ranges


def phase1_dataset_files(
    layout: DataLayout,
    max_task_id: int,
    range_size: int,
    temperatures: Sequence[float],
    with_sampled: bool,
    input_dataset: str | None = None,
) -> list[Path]:
    """Phase 1.0 files (or ``input_dataset`` instead), plus every Phase 1.2 file when ``with_sampled``."""
    keys = [r.key for r in task_ranges(max_task_id, range_size)]
    files = [Path(input_dataset)] if input_dataset else [layout.phase1_0_dataset(k) for k in keys]
    if with_sampled:
        files += [layout.phase1_2_dataset(t, k) for t in temperatures for k in keys]
    return files


def read_phase1_records(files: Sequence[Path]) -> pd.DataFrame:
    """All records of the given Phase 1 dataset files (empty task ranges contribute nothing)."""
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"Phase 1 dataset files do not exist: {missing}")
    frames = [frame for frame in map(pd.read_parquet, files) if len(frame)]
    if not frames:
        raise ValueError(f"the Phase 1 dataset files {[str(f) for f in files]} hold no records")
    return pd.concat(frames, ignore_index=True)
