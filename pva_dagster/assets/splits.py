"""Phase 0.1: split the problems 50 % sae / 10 % hyperparams / 40 % validation, stratified by difficulty."""


import dagster as dg
import pandas as pd

from pva_dagster.assets.provenance import data_version
from pva_dagster.constants import GROUP_PROBLEMS
from pva_dagster.resources import DataStore, StudyDesign
from pva_dagster.study import storage
from pva_dagster.study.domain import SPLIT_NAMES
from pva_dagster.study.plots import markdown_table
from pva_dagster.study.problems.splits import (
    SPLIT_RATIOS,
    check_covers,
    check_disjoint,
    check_stratum_ratios,
    split_problems,
    split_summary,
)

# Bump when a change of this module's logic changes what the assets produce (the web UI then marks them stale).
CODE_VERSION = "1"


@dg.asset(group_name=GROUP_PROBLEMS, code_version=CODE_VERSION)
def problem_splits(
    context: dg.AssetExecutionContext,
    mbpp_problems: pd.DataFrame,
    difficulty_mapping: pd.DataFrame,
    study_design: StudyDesign,
    data_store: DataStore,
) -> dg.Output[pd.DataFrame]:
    """task_id -> split, seeded and stratified by cyclomatic complexity; also the seed study's split files."""
    splits = split_problems(difficulty_mapping, SPLIT_RATIOS, seed=study_design.seed)
    layout = data_store.layout
    problems = mbpp_problems.merge(splits[["task_id", "split"]], on="task_id")
    for split in SPLIT_NAMES:
        rows = problems[problems.split == split].drop(columns="split").reset_index(drop=True)
        storage.write_parquet(layout.split_file(split), rows)
    summary = {**split_summary(splits), "seed": study_design.seed, "ratios": SPLIT_RATIOS}
    storage.write_json(layout.split_metadata_file, summary)
    sizes = splits.groupby("split").size()
    context.log.info("split sizes: " + ", ".join(f"{s}={sizes.get(s, 0)}" for s in SPLIT_NAMES))
    by_stratum = pd.crosstab(splits.cyclomatic_complexity, splits.split).reset_index()
    return dg.Output(splits, data_version=data_version(splits), metadata={
        **{f"{s} problems": int(sizes.get(s, 0)) for s in SPLIT_NAMES},
        "seed": study_design.seed,
        "split_metadata": dg.MetadataValue.path(str(layout.split_metadata_file)),
        "problems per complexity and split": dg.MetadataValue.md(markdown_table(by_stratum)),
    })


@dg.asset_check(asset=problem_splits, additional_ins={"mbpp_problems": dg.AssetIn()})
def splits_are_disjoint_and_cover_all(
    problem_splits: pd.DataFrame, mbpp_problems: pd.DataFrame
) -> dg.AssetCheckResult:
    disjoint, disjoint_text = check_disjoint(problem_splits)
    covers, covers_text = check_covers(problem_splits, mbpp_problems.task_id.tolist())
    return dg.AssetCheckResult(
        passed=disjoint and covers, metadata={"disjoint": disjoint_text, "coverage": covers_text}
    )


@dg.asset_check(asset=problem_splits)
def splits_match_ratios_per_stratum(problem_splits: pd.DataFrame) -> dg.AssetCheckResult:
    passed, text = check_stratum_ratios(problem_splits, SPLIT_RATIOS, tolerance=1)
    return dg.AssetCheckResult(passed=passed, metadata={"detail": text})
