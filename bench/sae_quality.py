"""The SAE quality table of a finished run's data folder, made again from what the folder holds: its SAEs
(``saes/layer_L``), its Phase 1.0 records and residuals, and its problem splits.

    python bench/sae_quality.py data            # every task and the validation tasks, per SAE layer
    python bench/sae_quality.py /tmp/old/data   # a run made before the table existed

Compares SAEs trained by two recipes on their own runs' residuals (docs/runs.md), without re-running Phase 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
import pandas as pd

from pva_dagster.study.analysis.activation_index import activation_index, phase1_records
from pva_dagster.study.analysis.sae import load_local_sae
from pva_dagster.study.analysis.sae_quality import quality_markdown, sae_quality_table
from pva_dagster.study.domain import VALIDATION_SPLIT
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.outputs import PROBLEM_SPLITS
from pva_dagster.study.problems.splits import split_task_ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a run's data folder")
    args = parser.parse_args(argv)
    layout = DataLayout(args.data)
    layers = sorted(int(p.name.removeprefix("layer_")) for p in (args.data / "saes").glob("layer_*"))
    if not layers:
        print(f"{args.data} holds no SAEs under saes/", file=sys.stderr)
        return 2
    datasets = sorted(layout.phase1_0_dir.glob("dataset_*[0-9].parquet"))
    records = phase1_records(pd.read_parquet(path) for path in datasets)
    splits = pd.read_parquet(layout.table_file(PROBLEM_SPLITS))
    with duckdb.connect() as conn:
        index = activation_index(conn, records, sorted(set(records.task_id)), layers)
    saes = {layer: load_local_sae(layout.sae_dir(layer), "cpu") for layer in layers}
    table = sae_quality_table(index, layers, saes.__getitem__, print, split_task_ids(splits, VALIDATION_SPLIT))
    print(quality_markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
