"""``pva-compare-runs A B``: are the outputs of two data folders identical?

    pva-compare-runs data data_previous                 # Phase 2 and 3 (exit 0 when all match, 1 with a list)
    pva-compare-runs data golden --phases phase0 phase0_1 phase1_0   # the golden check of a refactor
    pva-compare-runs data other_machine --robust        # two runs in other numerics: the replicate summary

Same seed, same outputs: this is the check that two runs of the study agree, and that a refactor kept
behaviour. Every Parquet table is compared value for value (NaN equals NaN), NPZ arrays bit for bit, every
JSON and the report as text. Left out, because they describe the machine or the run rather than the result:
the wall-clock columns (``generation_seconds``, ``sandbox_seconds``), the Phase 1 partitions' run sidecars
(``dataset_*_metadata.json``: timings, device, resource settings), and each folder's own root in stored paths
(Phase 1 records point at their activation files by absolute path).

``--robust`` asks the question two runs on other CPUs or in other numerics can answer: do their replicate
summaries agree within their stated intervals (study/evaluation/replicate_agreement.py)? It prints each
readout's median [5 %, 95 %] of both runs and the latents each names, and exits 1 when a median falls outside
the other run's band.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pva_dagster.study.domain import TIMING_COLUMNS
from pva_dagster.study.evaluation.replicate_agreement import named_latents, run_bands, summary_agreement
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.outputs import REPLICATE_SUMMARY, REPLICATES, SAE_SEED_SELECTIONS
from pva_dagster.study.plots import markdown_table

DEFAULT_PHASES = ("phase2", "phase3")
COMPARED_SUFFIXES = {".parquet", ".json", ".md", ".npz"}
RUN_SIDECAR_GLOB = "dataset_*_metadata.json"


def output_files(root: Path, phases: tuple[str, ...] = DEFAULT_PHASES) -> set[Path]:
    """The output files of ``phases`` under ``root``, relative to it."""
    return {
        path.relative_to(root)
        for folder in phases if (root / folder).is_dir()
        for path in (root / folder).rglob("*")
        if path.is_file() and path.suffix in COMPARED_SUFFIXES and not path.match(RUN_SIDECAR_GLOB)
    }


def _relative_paths(value: Any, root: str) -> Any:
    """``value`` with ``root`` taken off the stored paths in it (strings, or arrays/lists of strings)."""
    if isinstance(value, str):
        return value.removeprefix(root)
    if isinstance(value, (list, np.ndarray)):
        return [_relative_paths(v, root) for v in value]
    return value


def _table(path: Path, root: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path).drop(columns=list(TIMING_COLUMNS), errors="ignore")
    prefix = f"{root.resolve()}/"
    for column in frame.select_dtypes(include="object").columns:
        frame[column] = frame[column].map(lambda v: _relative_paths(v, prefix))
    return frame


def _same_arrays(a: Path, b: Path) -> bool:
    with np.load(a) as left, np.load(b) as right:
        return sorted(left.files) == sorted(right.files) and all(
            np.array_equal(left[k], right[k], equal_nan=left[k].dtype.kind == "f") for k in left.files
        )


def _same_file(a_root: Path, b_root: Path, relative: Path) -> bool:
    a, b = a_root / relative, b_root / relative
    if a.suffix == ".parquet":
        return _table(a, a_root).equals(_table(b, b_root))
    if a.suffix == ".npz":
        return _same_arrays(a, b)
    return a.read_bytes() == b.read_bytes()


def differences(a: Path, b: Path, phases: tuple[str, ...] = DEFAULT_PHASES) -> list[str]:
    """What differs between the two folders' outputs, one line each (empty when they agree)."""
    files_a, files_b = output_files(a, phases), output_files(b, phases)
    if not files_a:
        return [f"{a} has no outputs of {', '.join(phases)}"]
    lines = [f"only in {a}: {p}" for p in sorted(files_a - files_b)]
    lines += [f"only in {b}: {p}" for p in sorted(files_b - files_a)]
    lines += [f"differs: {p}" for p in sorted(files_a & files_b) if not _same_file(a, b, p)]
    return lines


def robust_agreement(a: Path, b: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two folders' replicate summaries side by side: the banded readouts' agreement, and the named latents."""
    def bands(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        layout = DataLayout(root)
        summary = pd.read_parquet(layout.phase3_table(REPLICATE_SUMMARY))
        replicates, seeds = (layout.phase3_table(name) for name in (REPLICATES, SAE_SEED_SELECTIONS))
        if not (replicates.is_file() and seeds.is_file()):  # a run made before SAE seed variants: no pooled band
            return summary, run_bands(summary)
        return summary, run_bands(summary, pd.read_parquet(replicates), pd.read_parquet(seeds))

    (first, first_bands), (second, second_bands) = bands(a), bands(b)
    return summary_agreement(first_bands, second_bands), named_latents(first, second)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument(
        "--phases", nargs="+", default=list(DEFAULT_PHASES),
        help="data folders to compare (default: phase2 phase3; the golden check: phase0 phase0_1 phase1_0)",
    )
    parser.add_argument(
        "--robust", action="store_true",
        help="compare the replicate summaries within their 5-95 %% bands instead of the files value for value",
    )
    args = parser.parse_args(argv)
    if args.robust:
        agreement, latents = robust_agreement(args.first, args.second)
        print(markdown_table(agreement), markdown_table(latents), sep="\n\n")
        agreeing = int(agreement.agree.sum())
        print(f"{agreeing} of {len(agreement)} readouts agree within each other's 5-95 % band")
        return 0 if agreeing == len(agreement) else 1
    phases = tuple(args.phases)
    found = differences(args.first, args.second, phases)
    for line in found:
        print(line)
    compared = len(output_files(args.first, phases))
    print(f"{compared} files compared: {'identical' if not found else f'{len(found)} differ'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
