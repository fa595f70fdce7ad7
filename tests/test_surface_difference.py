"""The combined surface baseline and every readout's AUROC difference to it, on planted synthetic data through
the real fits: correctness that length and complexity explain together, and correctness with a signal beyond
them that the residual carries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from pva_dagster.study.evaluation.readout_metrics import TABLE_COLUMNS, readout_table
from pva_dagster.study.evaluation.readouts import readout_scores_and_curves
from pva_dagster.study.evaluation.surface_difference import (
    DIFFERENCE_COLUMNS,
    SURFACE_REFERENCE,
    difference_to_surface,
)
from pva_dagster.study.statistics import auroc_rows, bootstrap_index, delong_difference_p, paired_auroc_difference

LAYER, D_MODEL, PER_SPLIT = 3, 8, 200
FAST = {"resamples": 400, "permutations": 99}
SURFACE_BASELINES = ("prompt_length", "complexity", "tfidf", SURFACE_REFERENCE, "length_complexity_tfidf")


def _planted(seed: int, extra_signal: float) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    """Tasks whose correctness is logistic in standardised length and complexity, jointly (each alone misses
    half of it), plus ``extra_signal * z`` with z hidden per task. The residual carries length, complexity and
    ``extra_signal * z`` along three random directions, in a little isotropic noise."""
    rng = np.random.default_rng(seed)
    n = 3 * PER_SPLIT
    length, complexity = rng.integers(20, 200, size=n), rng.choice([1, 2, 3, 4, 6, 8], size=n)
    z_length, z_complexity = ((v - v.mean()) / v.std() for v in (length, complexity))
    z = rng.normal(size=n)
    correct = rng.random(n) < 1 / (1 + np.exp(1.5 * z_length + 1.5 * z_complexity - extra_signal * z))
    tasks = pd.DataFrame({
        "task_id": np.arange(n), "split": np.repeat(["sae", "hyperparams", "validation"], PER_SPLIT),
        "correct": correct, "prompt_tokens": length, "complexity": complexity,
        "prompt_text": [f"write a function that returns gamma {i % 7}" for i in range(n)],
    })
    directions = rng.normal(size=(3, D_MODEL))
    carried = np.column_stack([z_length, z_complexity, extra_signal * z])
    residual = carried @ directions + 0.1 * rng.normal(size=(n, D_MODEL))
    return tasks, {LAYER: residual}


def _row(table: pd.DataFrame, readout: str, direction: str = "correct") -> pd.Series:
    rows = table[(table.readout == readout) & (table.direction == direction)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


@pytest.fixture(scope="module")
def difficulty_only() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    tasks, residuals = _planted(seed=11, extra_signal=0.0)
    scores = readout_scores_and_curves(tasks, residuals, {}, seed=0)[0]
    return tasks, scores, readout_table(scores, seed=0, **FAST)


def test_every_baseline_is_a_row_and_the_columns_only_grow(difficulty_only):
    *_, table = difficulty_only
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert TABLE_COLUMNS[-len(DIFFERENCE_COLUMNS):] == DIFFERENCE_COLUMNS
    assert set(SURFACE_BASELINES) <= set(table.readout)
    for name in SURFACE_BASELINES:
        assert pd.isna(_row(table, name).layer) and _row(table, name).kind == "baseline"


def test_length_and_complexity_together_beat_each_alone(difficulty_only):
    *_, table = difficulty_only
    combined = _row(table, SURFACE_REFERENCE)
    assert combined.auroc > 0.8 and combined.C in (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    assert (combined.auroc_minus_surface, combined.auroc_minus_surface_p) == (0.0, 1.0)
    for alone in ("prompt_length", "complexity"):
        row = _row(table, alone)
        assert row.auroc < combined.auroc - 0.05
        assert row.auroc_minus_surface == pytest.approx(row.auroc - combined.auroc)
        assert row.auroc_minus_surface_ci_high < 0 and row.auroc_minus_surface_p < 0.05


def test_a_readout_that_is_the_combined_score_differs_by_about_nothing(difficulty_only):
    tasks, scores, table = difficulty_only
    # A residual of length and complexity (its probe pays a little for its noise dimensions); uninformative text.
    for name in ("dense_probe", "length_complexity_tfidf"):
        assert abs(_row(table, name).auroc_minus_surface) < 0.02, name
    surface = scores[scores.readout == SURFACE_REFERENCE]
    known = tasks.set_index("task_id").loc[surface.task_id]
    length, complexity = known.prompt_tokens.to_numpy(np.float64), known.complexity.to_numpy(np.float64)
    joint = -((length - length.mean()) / length.std() + (complexity - complexity.mean()) / complexity.std())
    sign = np.where(surface.direction == "correct", 1.0, -1.0)
    readouts = {
        "copy": surface.score.to_numpy(),  # the combined baseline's own score
        "generating": sign * joint,  # the score the labels were drawn from: what the baseline estimates
    }
    extra = [surface.assign(readout=name, kind="probe", layer=1.0, score=score) for name, score in readouts.items()]
    table = readout_table(pd.concat([scores, *extra]), seed=0, **FAST)
    copied = _row(table, "copy")
    assert copied.auroc_minus_surface == 0.0 and copied.auroc_minus_surface_ci_low == 0.0
    assert copied.auroc_minus_surface_ci_high == 0.0 and copied.auroc_minus_surface_p == 1.0
    for direction in ("correct", "incorrect"):
        generating = _row(table, "generating", direction)
        assert abs(generating.auroc_minus_surface) < 0.01
        assert generating.auroc_minus_surface_ci_low < 0 < generating.auroc_minus_surface_ci_high
        assert generating.auroc_minus_surface_p > 0.05


def test_a_readout_with_signal_beyond_length_and_complexity_clears_them():
    tasks, residuals = _planted(seed=12, extra_signal=2.0)
    table = readout_table(readout_scores_and_curves(tasks, residuals, {}, seed=0)[0], seed=0, **FAST)
    for direction in ("correct", "incorrect"):
        dense = _row(table, "dense_probe", direction)
        assert dense.auroc_minus_surface > 0.05
        assert dense.auroc_minus_surface_ci_low > 0 and dense.auroc_minus_surface_p < 0.01
        assert dense.auroc_minus_surface == pytest.approx(dense.auroc - _row(table, SURFACE_REFERENCE).auroc)


def test_the_paired_interval_is_narrower_than_the_unpaired_one():
    """Two readouts that share most of their ranking: pairing cancels what they share."""
    rng = np.random.default_rng(4)
    positive = rng.random(120) < 0.4
    shared = positive + rng.normal(0, 1, 120)
    first, second = shared + rng.normal(0, 0.3, 120), shared + rng.normal(0, 0.3, 120)
    paired = paired_auroc_difference(first, second, positive, seed=0, resamples=1000)
    one, other = bootstrap_index(120, 1, 1000), bootstrap_index(120, 2, 1000)  # each AUROC its own resamples
    unpaired = np.percentile(
        auroc_rows(first[one], positive[one]) - auroc_rows(second[other], positive[other]), [2.5, 97.5]
    )
    assert paired["ci_high"] - paired["ci_low"] < 0.6 * (unpaired[1] - unpaired[0])


def test_delong_agrees_with_its_definition_on_a_small_case():
    positive = np.array([True, True, True, False, False, False])
    scores = np.array([3.0, 2.0, 0.5, 1.0, 0.0, -1.0])  # AUROC 8/9
    reference = np.array([1.0, 0.0, 2.0, 3.0, -1.0, 0.5])  # AUROC 5/9
    p = delong_difference_p(scores, reference, positive)
    wins = lambda s: (s[:3, None] > s[None, 3:]) + 0.5 * (s[:3, None] == s[None, 3:])  # noqa: E731
    v10 = np.stack([wins(scores).mean(1), wins(reference).mean(1)])
    v01 = np.stack([wins(scores).mean(0), wins(reference).mean(0)])
    s = np.cov(v10) / 3 + np.cov(v01) / 3
    z = (8 / 9 - 5 / 9) / np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    assert p == pytest.approx(2 * norm.sf(abs(z)))
    assert delong_difference_p(scores, scores, positive) == 1.0


def _validation(score: np.ndarray, correct: np.ndarray, task_ids: np.ndarray | None = None) -> pd.DataFrame:
    ids = np.arange(len(score)) if task_ids is None else task_ids
    return pd.DataFrame({"task_id": ids, "correct": correct, "score": score})


@pytest.mark.parametrize(
    ("readout", "surface", "reason"),
    [
        (_validation(np.arange(6.0), np.arange(6) % 2 == 0), None, "no length_and_complexity readout"),
        (_validation(np.arange(6.0), np.arange(6) % 2 == 0),
         _validation(np.arange(6.0), np.arange(6) % 2 == 0, np.arange(1, 7)), "not scored on the same tasks"),
        (_validation(np.arange(6.0), np.ones(6, bool)), _validation(np.zeros(6), np.ones(6, bool)),
         "need both classes"),
        (_validation(np.array([0, 1, np.nan, 3, 4, 5]), np.arange(6) % 2 == 0),
         _validation(np.arange(6.0), np.arange(6) % 2 == 0), "1 of 6 tasks have a non-finite score"),
        (_validation(np.arange(6.0), np.arange(6) % 2 == 0), _validation(np.arange(6.0), np.arange(6) % 3 == 0),
         "disagree on a task's label"),
    ],
)
def test_degenerate_comparisons_are_nan_with_the_reason(readout, surface, reason):
    result = difference_to_surface(readout, surface, "correct", seed=0, resamples=50)
    assert set(result) == set(DIFFERENCE_COLUMNS)
    assert all(np.isnan(result[c]) for c in DIFFERENCE_COLUMNS[:-1])
    assert reason in result["auroc_minus_surface_note"]


def test_a_table_without_the_reference_or_with_an_unscored_readout_says_why(difficulty_only):
    _, scores, _ = difficulty_only
    without = readout_table(scores[scores.readout != SURFACE_REFERENCE], seed=0, **FAST)
    assert without.auroc_minus_surface.isna().all()
    assert without.auroc_minus_surface_note.str.contains("no length_and_complexity readout").all()
    one_class = scores.assign(correct=scores.correct | (scores.split == "validation"))
    flagged = readout_table(one_class, seed=0, **FAST)
    assert flagged.auroc_minus_surface.isna().all()
    assert flagged.auroc_minus_surface_note.str.startswith("the readout is not scored: validation").all()
