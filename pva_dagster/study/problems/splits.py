"""Phase 0.1: split the problems into SAE-analysis, hyper-parameter and validation sets, stratified by difficulty.

Stratifying by cyclomatic complexity keeps the difficulty mix equal across splits, so a latent that merely
tracks difficulty cannot look better on one split than on another. Complexities above a cap share one stratum:
MBPP has only a handful of problems at each complexity above 6, and strata of two or three problems would
round every allocation to whole problems and drift from the ratios.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from pva_dagster.study.domain import DEFAULT_SEED, SPLIT_NAMES

SPLIT_RATIOS: dict[str, float] = {"sae": 0.5, "hyperparams": 0.1, "validation": 0.4}
# Complexities >= this share one stratum (MBPP: 142 of 974 problems; embedded: 34 of 200).
DEFAULT_STRATUM_CAP = 5
SPLIT_COLUMNS: tuple[str, ...] = ("task_id", "cyclomatic_complexity", "split")


def validate_ratios(ratios: Mapping[str, float]) -> dict[str, float]:
    """The ratios in ``SPLIT_NAMES`` order; raise ValueError naming the bad entry."""
    if set(ratios) != set(SPLIT_NAMES):
        raise ValueError(f"split ratios must name exactly {list(SPLIT_NAMES)}, got {sorted(ratios)}")
    for name, ratio in ratios.items():
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not ratio > 0:
            raise ValueError(f"split ratio {name!r} must be a positive number, got {ratio!r}")
    total = sum(ratios.values())
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise ValueError(f"split ratios must sum to 1, got {total:.6g} from {dict(ratios)}")
    return {name: float(ratios[name]) for name in SPLIT_NAMES}


def strata(complexity: pd.Series, cap: int = DEFAULT_STRATUM_CAP) -> pd.Series:
    """Stratum key of each problem: its complexity, with everything at or above ``cap`` merged into ``cap``."""
    if cap < 1:
        raise ValueError(f"stratum cap must be >= 1, got {cap}")
    return complexity.clip(upper=cap).rename("stratum")


def allocate(stratum_sizes: Mapping[int, int], ratios: Mapping[str, float]) -> dict[int, dict[str, int]]:
    """How many problems of each stratum go to each split.

    Per stratum this is the largest-remainder method: every split gets the floor of its quota, and the
    problems left over go one each to splits with a fractional quota, so every count is within one problem of
    ``size * ratio``. Which splits get the leftovers is decided by how far each split lags behind its quota
    over all strata so far, which keeps the split totals within a problem of ``total * ratio`` too (plain
    per-stratum remainders would favour the same split in every stratum and add up).
    """
    ratios = validate_ratios(ratios)
    quota_so_far = dict.fromkeys(ratios, 0.0)
    given_so_far = dict.fromkeys(ratios, 0)
    allocation: dict[int, dict[str, int]] = {}
    for stratum in sorted(stratum_sizes):
        size = stratum_sizes[stratum]
        # Rounded so that 30 * 0.1 = 3.0000000000000004 does not count as a fraction.
        quotas = {name: round(size * ratio, 9) for name, ratio in ratios.items()}
        counts = {name: math.floor(quota) for name, quota in quotas.items()}
        for name in ratios:
            quota_so_far[name] += quotas[name]
        leftover = size - sum(counts.values())
        candidates = [name for name in ratios if quotas[name] > counts[name]]
        candidates.sort(
            key=lambda name: (
                -(quota_so_far[name] - given_so_far[name] - counts[name]),
                -(quotas[name] - counts[name]),
                SPLIT_NAMES.index(name),
            )
        )
        for name in candidates[:leftover]:
            counts[name] += 1
        for name in ratios:
            given_so_far[name] += counts[name]
        allocation[stratum] = counts
    return allocation


def _check_difficulty(difficulty: pd.DataFrame) -> None:
    missing = [column for column in ("task_id", "cyclomatic_complexity") if column not in difficulty.columns]
    if missing:
        raise ValueError(f"difficulty frame lacks column(s) {missing}; columns are {list(difficulty.columns)}")
    if difficulty.empty:
        raise ValueError("difficulty frame has no rows")
    duplicated = difficulty.loc[difficulty["task_id"].duplicated(), "task_id"].tolist()
    if duplicated:
        raise ValueError(f"difficulty frame repeats task_id(s) {duplicated[:10]}")
    complexity = difficulty["cyclomatic_complexity"]
    if not pd.api.types.is_integer_dtype(complexity):
        raise ValueError(f"cyclomatic_complexity must be integers, got dtype {complexity.dtype}")
    if (complexity < 1).any():
        bad = difficulty.loc[complexity < 1, ["task_id", "cyclomatic_complexity"]].head(10)
        raise ValueError(f"cyclomatic_complexity must be >= 1; bad rows: {bad.to_dict('records')}")


def split_problems(
    difficulty: pd.DataFrame,
    ratios: Mapping[str, float] = SPLIT_RATIOS,
    seed: int = DEFAULT_SEED,
    stratum_cap: int = DEFAULT_STRATUM_CAP,
) -> pd.DataFrame:
    """Assign every problem to a split: ``task_id``, ``cyclomatic_complexity``, ``split``, sorted by task_id.

    Deterministic in (problems, ratios, seed, cap): the rows are sorted before shuffling, so the input order
    does not matter. Within each stratum the task ids are permuted with one seeded generator, strata in
    ascending order, and cut into consecutive runs of the sizes ``allocate`` gives.
    """
    _check_difficulty(difficulty)
    ratios = validate_ratios(ratios)
    frame = difficulty[["task_id", "cyclomatic_complexity"]].sort_values("task_id", ignore_index=True)
    frame["stratum"] = strata(frame["cyclomatic_complexity"], stratum_cap)
    sizes = frame["stratum"].value_counts().to_dict()
    allocation = allocate(sizes, ratios)
    rng = np.random.default_rng(seed)
    split_of: dict[int, str] = {}
    for stratum in sorted(allocation):
        ids = rng.permutation(frame.loc[frame["stratum"] == stratum, "task_id"].to_numpy())
        start = 0
        for name in SPLIT_NAMES:
            for task_id in ids[start : start + allocation[stratum][name]]:
                split_of[int(task_id)] = name
            start += allocation[stratum][name]
    frame["split"] = frame["task_id"].map(split_of)
    return frame[list(SPLIT_COLUMNS)]


def check_disjoint(splits: pd.DataFrame) -> tuple[bool, str]:
    """No task in two splits (or twice in one)."""
    counts = splits.groupby("task_id")["split"].agg(list)
    repeated = counts[counts.map(len) > 1]
    if repeated.empty:
        return True, f"{len(counts)} tasks, each in exactly one split"
    examples = {int(task_id): names for task_id, names in repeated.head(10).items()}
    return False, f"{len(repeated)} task(s) appear more than once, e.g. {examples}"


def check_covers(splits: pd.DataFrame, task_ids: Iterable[int]) -> tuple[bool, str]:
    """The splits hold exactly the given tasks, none missing and none extra."""
    expected = {int(task_id) for task_id in task_ids}
    present = {int(task_id) for task_id in splits["task_id"]}
    missing, extra = sorted(expected - present), sorted(present - expected)
    if not missing and not extra:
        return True, f"all {len(expected)} tasks are in a split"
    return False, f"{len(missing)} missing (e.g. {missing[:10]}), {len(extra)} unexpected (e.g. {extra[:10]})"


def check_stratum_ratios(
    splits: pd.DataFrame,
    ratios: Mapping[str, float] = SPLIT_RATIOS,
    tolerance: float = 1,
    stratum_cap: int = DEFAULT_STRATUM_CAP,
) -> tuple[bool, str]:
    """Every stratum's count in every split is within ``tolerance`` problems of ``stratum size * ratio``."""
    ratios = validate_ratios(ratios)
    if splits.empty:
        return False, "no problems in any split"
    table = pd.crosstab(strata(splits["cyclomatic_complexity"], stratum_cap), splits["split"])
    table = table.reindex(columns=list(SPLIT_NAMES), fill_value=0)
    deviations = {
        (int(stratum), name): abs(int(row[name]) - int(row.sum()) * ratios[name])
        for stratum, row in table.iterrows()
        for name in SPLIT_NAMES
    }
    (stratum, name), deviation = max(deviations.items(), key=lambda item: item[1])
    where = f" (stratum {stratum}, split {name!r})"
    passed = deviation <= tolerance + 1e-9
    verdict = "within" if passed else "exceeds"
    return passed, f"largest deviation {deviation:.2f} problems{where} {verdict} tolerance {tolerance}"


def split_summary(splits: pd.DataFrame) -> dict[str, Any]:
    """Sizes, fractions and difficulty of each split for ``split_metadata.json`` (the caller adds seed/ratios)."""
    grouped = splits.groupby("split")["cyclomatic_complexity"]
    total = len(splits)
    sizes = {name: int(grouped.size().get(name, 0)) for name in SPLIT_NAMES}
    means = grouped.mean()
    return {
        "total": total,
        "sizes": sizes,
        "fractions": {name: sizes[name] / total for name in SPLIT_NAMES},
        "mean_cyclomatic_complexity": {
            name: round(float(means[name]), 4) for name in SPLIT_NAMES if name in means.index
        },
        "complexity_counts": {
            name: {str(cc): int(n) for cc, n in counts.items() if n}
            for name, counts in pd.crosstab(splits["split"], splits["cyclomatic_complexity"]).iterrows()
        },
    }


def split_task_ids(splits: pd.DataFrame, split: str) -> list[int]:
    """The task ids of one split of ``problem_splits``, in its order (none for a split it does not hold)."""
    return [int(t) for t in splits.task_id[splits.split == split]]
