"""``pva-compare-runs A B``: are the Phase 2 and Phase 3 outputs of two data folders identical?

    pva-compare-runs data data_previous          # exit 0 when every output matches, 1 with a list otherwise

Same seed, same outputs: this is the check that two runs of the study agree. Every Parquet table is compared
value for value (NaN equals NaN), every JSON and the report as text; only the wall-clock columns of the
steering unit files (``generation_seconds``, ``sandbox_seconds``) are left out, as they time the machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

COMPARED_FOLDERS = ("phase2", "phase3")
TIMING_COLUMNS = ("generation_seconds", "sandbox_seconds")


def output_files(root: Path) -> set[Path]:
    """The Phase 2/3 output files under ``root``, relative to it."""
    return {
        path.relative_to(root)
        for folder in COMPARED_FOLDERS if (root / folder).is_dir()
        for path in (root / folder).rglob("*") if path.is_file() and path.suffix in {".parquet", ".json", ".md"}
    }


def _same_file(a: Path, b: Path) -> bool:
    if a.suffix != ".parquet":
        return a.read_bytes() == b.read_bytes()
    left, right = pd.read_parquet(a), pd.read_parquet(b)
    drop = [c for c in TIMING_COLUMNS if c in left.columns]
    return left.drop(columns=drop).equals(right.drop(columns=[c for c in drop if c in right.columns]))


def differences(a: Path, b: Path) -> list[str]:
    """What differs between the two folders' outputs, one line each (empty when they agree)."""
    files_a, files_b = output_files(a), output_files(b)
    if not files_a:
        return [f"{a} has no Phase 2/3 outputs"]
    lines = [f"only in {a}: {p}" for p in sorted(files_a - files_b)]
    lines += [f"only in {b}: {p}" for p in sorted(files_b - files_a)]
    lines += [f"differs: {p}" for p in sorted(files_a & files_b) if not _same_file(a / p, b / p)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    found = differences(args.first, args.second)
    for line in found:
        print(line)
    print(f"{len(output_files(args.first))} files compared: {'identical' if not found else f'{len(found)} differ'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
