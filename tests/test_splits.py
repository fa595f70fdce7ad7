"""Splits: ratio validation, largest-remainder allocation, determinism, stratification, checks and summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pva_dagster.study.domain import SPLIT_NAMES
from pva_dagster.study.problems.difficulty import difficulty_frame
from pva_dagster.study.problems.embedded import load_embedded
from pva_dagster.study.problems.mbpp import load_local
from pva_dagster.study.problems.splits import (
    DEFAULT_STRATUM_CAP,
    SPLIT_RATIOS,
    allocate,
    check_covers,
    check_disjoint,
    check_stratum_ratios,
    split_problems,
    split_summary,
    strata,
    validate_ratios,
)

MBPP = Path(__file__).resolve().parents[1].parent / "shared/mbpp/mbpp.jsonl"


@pytest.fixture(scope="module")
def embedded_difficulty() -> pd.DataFrame:
    return difficulty_frame(load_embedded())


@pytest.fixture(scope="module")
def mbpp_difficulty() -> pd.DataFrame:
    if not MBPP.exists():
        pytest.skip(f"real MBPP not found at {MBPP}")
    return difficulty_frame(load_local(str(MBPP)))


# ---- ratios and allocation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ({"sae": 0.5, "validation": 0.5}, "must name exactly"),
        ({"sae": 0.5, "hyperparams": 0.1, "validation": 0.3, "test": 0.1}, "must name exactly"),
        ({"sae": 0.6, "hyperparams": -0.1, "validation": 0.5}, "'hyperparams' must be a positive number"),
        ({"sae": 0.5, "hyperparams": "0.1", "validation": 0.4}, "'hyperparams' must be a positive number"),
        ({"sae": 0.5, "hyperparams": 0.1, "validation": 0.3}, r"must sum to 1, got 0\.9 from"),
    ],
)
def test_bad_ratios_are_rejected(ratios: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_ratios(ratios)
    with pytest.raises(ValueError, match=message):
        split_problems(pd.DataFrame({"task_id": [1], "cyclomatic_complexity": [1]}), ratios)


def test_allocation_is_floor_or_ceil_per_stratum_and_close_overall() -> None:
    rng = np.random.default_rng(0)
    ratio_sets = [SPLIT_RATIOS, {"sae": 1 / 3, "hyperparams": 1 / 3, "validation": 1 / 3}]
    for trial in range(200):
        ratios = ratio_sets[trial % 2]
        sizes = {stratum: int(rng.integers(1, 60)) for stratum in range(1, int(rng.integers(2, 9)))}
        allocation = allocate(sizes, ratios)
        for stratum, size in sizes.items():
            assert sum(allocation[stratum].values()) == size
            for name, ratio in ratios.items():
                quota = size * ratio
                assert math.floor(quota - 1e-9) <= allocation[stratum][name] <= math.ceil(quota + 1e-9)
        total = sum(sizes.values())
        for name, ratio in ratios.items():
            given = sum(allocation[stratum][name] for stratum in sizes)
            assert abs(given - total * ratio) < 1 + 1e-9, (sizes, name, given)


def test_strata_merge_high_complexities() -> None:
    complexity = pd.Series([1, 2, 5, 6, 16])
    assert strata(complexity, cap=5).tolist() == [1, 2, 5, 5, 5]
    assert strata(complexity, cap=1).tolist() == [1, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="stratum cap must be >= 1, got 0"):
        strata(complexity, cap=0)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"task_id": [1, 2]}), r"lacks column\(s\) \['cyclomatic_complexity'\]"),
        (pd.DataFrame({"task_id": [1, 1], "cyclomatic_complexity": [1, 2]}), r"repeats task_id\(s\) \[1\]"),
        (pd.DataFrame({"task_id": [1, 4], "cyclomatic_complexity": [1, 0]}), "'task_id': 4"),
        (pd.DataFrame({"task_id": [1, 2], "cyclomatic_complexity": [1.5, 2.0]}), "must be integers"),
        (pd.DataFrame({"task_id": [], "cyclomatic_complexity": []}), "no rows"),
    ],
)
def test_bad_difficulty_frame_is_rejected(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_problems(frame)


# ---- split_problems on the embedded set ----------------------------------------------------------------


def test_embedded_split_sizes_strata_and_checks(embedded_difficulty: pd.DataFrame) -> None:
    splits = split_problems(embedded_difficulty)
    assert list(splits.columns) == ["task_id", "cyclomatic_complexity", "split"]
    assert splits["task_id"].tolist() == sorted(embedded_difficulty["task_id"])
    pd.testing.assert_series_equal(splits["cyclomatic_complexity"], embedded_difficulty["cyclomatic_complexity"])
    total = len(splits)
    sizes = splits["split"].value_counts()
    for name, ratio in SPLIT_RATIOS.items():
        assert abs(sizes[name] - total * ratio) <= 1, (name, sizes[name])
    assert sizes["hyperparams"] >= 20  # the smallest split still has enough problems to choose a threshold on
    table = pd.crosstab(strata(splits["cyclomatic_complexity"]), splits["split"])
    for stratum, row in table.iterrows():
        for name, ratio in SPLIT_RATIOS.items():
            assert abs(row[name] - row.sum() * ratio) < 1, (stratum, name)
    for passed, text in (
        check_disjoint(splits),
        check_covers(splits, embedded_difficulty["task_id"]),
        check_stratum_ratios(splits, SPLIT_RATIOS, tolerance=1),
    ):
        assert passed, text


def test_split_is_deterministic_and_independent_of_row_order(embedded_difficulty: pd.DataFrame) -> None:
    first = split_problems(embedded_difficulty, seed=7)
    shuffled = embedded_difficulty.sample(frac=1.0, random_state=3)
    assert shuffled["task_id"].tolist() != embedded_difficulty["task_id"].tolist()
    pd.testing.assert_frame_equal(split_problems(shuffled, seed=7), first)
    pd.testing.assert_frame_equal(split_problems(embedded_difficulty, seed=7), first)
    other = split_problems(embedded_difficulty, seed=8)
    assert (other["split"] != first["split"]).any()
    assert other["split"].value_counts().to_dict() == first["split"].value_counts().to_dict()


def test_checks_catch_broken_splits(embedded_difficulty: pd.DataFrame) -> None:
    splits = split_problems(embedded_difficulty)
    doubled = pd.concat([splits, splits.iloc[[0]].assign(split="validation")], ignore_index=True)
    passed, text = check_disjoint(doubled)
    assert not passed and f"{int(splits.task_id.iloc[0])}:" in text
    stray = splits.iloc[[1]].assign(task_id=999)
    passed, text = check_covers(pd.concat([splits.iloc[1:], stray]), embedded_difficulty["task_id"])
    assert not passed and "1 missing (e.g. [1])" in text and "1 unexpected (e.g. [999])" in text
    passed, text = check_stratum_ratios(splits.assign(split="sae"), SPLIT_RATIOS)
    assert not passed and "exceeds tolerance 1" in text
    assert check_stratum_ratios(splits.iloc[:0], SPLIT_RATIOS) == (False, "no problems in any split")


def test_split_summary_is_consistent_and_json_ready(embedded_difficulty: pd.DataFrame) -> None:
    splits = split_problems(embedded_difficulty)
    summary = split_summary(splits)
    json.dumps(summary)
    assert summary["total"] == len(splits) == sum(summary["sizes"].values())
    for name in SPLIT_NAMES:
        part = splits[splits.split == name]
        assert summary["sizes"][name] == len(part)
        assert summary["mean_cyclomatic_complexity"][name] == pytest.approx(
            part["cyclomatic_complexity"].mean(), abs=1e-4
        )
        assert sum(summary["complexity_counts"][name].values()) == len(part)


# ---- real MBPP -----------------------------------------------------------------------------------------


def test_real_mbpp_split(mbpp_difficulty: pd.DataFrame) -> None:
    splits = split_problems(mbpp_difficulty, SPLIT_RATIOS, seed=42)
    sizes = splits["split"].value_counts()
    assert len(splits) == 974
    assert abs(sizes["sae"] - 487) <= 1 and abs(sizes["hyperparams"] - 97) <= 1
    assert abs(sizes["validation"] - 390) <= 1
    # Capping keeps every stratum large enough for the ratios to mean something.
    assert strata(mbpp_difficulty["cyclomatic_complexity"], DEFAULT_STRATUM_CAP).value_counts().min() >= 50
    for passed, text in (
        check_disjoint(splits),
        check_covers(splits, mbpp_difficulty["task_id"]),
        check_stratum_ratios(splits, SPLIT_RATIOS, tolerance=1),
    ):
        assert passed, text
    # Stratification balances difficulty: the split means differ by far less than the spread of complexity.
    means = split_summary(splits)["mean_cyclomatic_complexity"]
    assert max(means.values()) - min(means.values()) < 0.25 * mbpp_difficulty["cyclomatic_complexity"].std()
    pd.testing.assert_frame_equal(split_problems(mbpp_difficulty.iloc[::-1], seed=42), splits)
