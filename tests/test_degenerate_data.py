"""Degenerate data through the analysis: every statistic returns a finite value or an explicitly flagged one.

Small random and adversarial inputs (one class, constant scores, ties everywhere, perfect separation, a handful
of tasks, NaN) go through the real functions; hypothesis shrinks any failure to its smallest case. The recorded
case of a validation split that one latent separates is kept as a regression test.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pva_dagster.study.analysis.separation import separation_scores
from pva_dagster.study.evaluation.beyond_difficulty import (
    FIRTH,
    NOT_ESTIMABLE,
    beyond_difficulty_sentences,
    beyond_difficulty_table,
    likelihood_ratio_test,
    stratified_auroc,
)
from pva_dagster.study.evaluation.confirmatory import (
    confirmatory_family,
    declared_p_values,
    primary_replicate_p_values,
)
from pva_dagster.study.evaluation.cross_fitting import NO_FOLDS, NOT_IN_A_FOLD, choose_regularisation, cross_folds
from pva_dagster.study.evaluation.readout_metrics import readout_table
from pva_dagster.study.evaluation.readouts import BASELINE, BEST_LATENT, LATENT
from pva_dagster.study.evaluation.surface_difference import DIFFERENCE_COLUMNS, SURFACE_REFERENCE
from pva_dagster.study.evaluation.validation import choose_threshold
from pva_dagster.study.statistics import (
    auroc_permutation_p,
    bootstrap_intervals,
    clopper_pearson,
    minimum_detectable_rate,
    paired_auroc_difference,
    paired_difference_interval,
    paired_exact_test,
)
from pva_dagster.study.steering.results import control_tests, experiment_tests

# Derandomised: the suite tries the same examples on every run and machine (a wider search: PVA_HYPOTHESIS_EXAMPLES).
EXAMPLES = settings(
    max_examples=int(os.environ.get("PVA_HYPOTHESIS_EXAMPLES", "40")), deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

# Scores from a small pool, so ties, constants and separation come up often; NaN among them on purpose.
POOL = st.sampled_from([0.0, 0.0, 1.0, 1.0, -2.5, 3.25, 1e-12, 7.0])
SCORE = st.one_of(POOL, st.floats(-1e3, 1e3, allow_nan=False), st.just(float("nan")))


@st.composite
def labelled(draw, min_size: int = 0, max_size: int = 14, score=SCORE):
    """(positive[n], length[n], complexity[n], score[n]) of one small split."""
    n = draw(st.integers(min_size, max_size))
    positive = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    length = np.array(draw(st.lists(st.integers(1, 200), min_size=n, max_size=n)), dtype=np.float64)
    complexity = np.array(draw(st.lists(st.integers(1, 10), min_size=n, max_size=n)), dtype=np.float64)
    scores = np.array(draw(st.lists(score, min_size=n, max_size=n)), dtype=np.float64)
    return positive, length, complexity, scores


def _is_probability(value: float) -> bool:
    return bool(np.isfinite(value) and 0.0 <= value <= 1.0)


def test_collinear_length_and_complexity_are_one_dimension_not_an_error():
    result = likelihood_ratio_test(np.array([0, 0, 0, 0, 1]), np.array([2, 1, 1, 2, 1]), np.array([2, 1, 1, 2, 1]),
                                   np.array([0.0, 0, 0, 0, 1]))  # fmt: skip
    assert _is_probability(result["p_lrt"]) and result["lrt_method"] == FIRTH


def test_a_separating_latent_on_a_small_validation_split_gets_firth_not_an_exception():
    positive = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    prompt_tokens = np.array([48, 76, 63, 50, 75, 76, 94, 90, 92, 100])
    complexity = np.array([1, 1, 1, 1, 1, 3, 4, 4, 4, 8])
    score = np.array([-1.378, -1.118, -1.035, -1.457, -0.995, -0.394, -0.772, -0.674, -0.606, -0.675])
    result = likelihood_ratio_test(positive, prompt_tokens, complexity, score)
    assert result["lrt_method"] == FIRTH and "separation" in result["lrt_note"]
    assert _is_probability(result["p_lrt"]) and result["lr_stat"] >= 0
    low, high = result["odds_ratio_ci_low"], result["odds_ratio_ci_high"]
    assert 0 < low < result["odds_ratio_per_sd"] < high < np.inf  # finite, where maximum likelihood has none


@EXAMPLES
@given(labelled())
def test_the_likelihood_ratio_test_is_a_probability_or_says_why_not(split):
    positive, length, complexity, score = split
    result = likelihood_ratio_test(positive, length, complexity, score)
    if result["lrt_method"] == NOT_ESTIMABLE:
        assert np.isnan(result["p_lrt"]) and result["lrt_note"]
    else:
        assert _is_probability(result["p_lrt"]) and result["lr_stat"] >= 0
    if len(positive) > 4 and np.isfinite(score).all() and 0 < positive.sum() < len(positive):
        assert result["lrt_method"] != NOT_ESTIMABLE  # estimable data always gets a fit: ML, Firth or constant


@EXAMPLES
@given(labelled(), st.integers(0, 3))
def test_stratified_auroc_is_an_auroc_or_nan(split, seed):
    positive, _, complexity, score = split
    result = stratified_auroc(score, positive, complexity > 3, seed, resamples=50)
    for name in ("stratified_auroc", "stratified_auroc_ci_low", "stratified_auroc_ci_high"):
        assert np.isnan(result[name]) or _is_probability(result[name])


@EXAMPLES
@given(labelled(min_size=1, score=POOL), st.integers(0, 3))
def test_bootstrap_and_permutation_are_intervals_and_probabilities_or_nan(split, seed):
    positive, _, _, score = split
    intervals = bootstrap_intervals(score, positive, threshold=0.5, seed=seed, resamples=50)
    assert _is_probability(intervals["f1_ci_low"]) and intervals["f1_ci_low"] <= intervals["f1_ci_high"]
    both = 0 < positive.sum() < len(positive)
    assert (intervals["auroc_resamples"] > 0) == _is_probability(intervals["auroc_ci_low"])
    p = auroc_permutation_p(score, positive, seed, permutations=49)
    assert _is_probability(p) if both else np.isnan(p)


@EXAMPLES
@given(labelled(), st.integers(0, 3))
def test_the_paired_auroc_difference_is_a_difference_or_nan_with_a_reason(split, seed):
    positive, length, _, score = split
    result = paired_auroc_difference(score, length, positive, seed, resamples=50)
    if np.isnan(result["difference"]):
        assert result["note"] and np.isnan(result["ci_low"]) and np.isnan(result["p_delong"])
    else:
        assert -1 <= result["ci_low"] <= result["ci_high"] <= 1 and -1 <= result["difference"] <= 1
        assert _is_probability(result["p_delong"]) or (np.isnan(result["p_delong"]) and result["note"])
    estimable = len(positive) and np.isfinite(score).all() and 0 < positive.sum() < len(positive)
    assert np.isfinite(result["difference"]) == bool(estimable)


@EXAMPLES
@given(labelled(min_size=1, score=POOL))
def test_a_threshold_is_always_chosen_inside_the_observed_range(split):
    positive, _, _, score = split
    threshold = choose_threshold(score, positive, "correct")
    assert score.min() <= threshold.value <= score.max() and _is_probability(threshold.f1)


@EXAMPLES
@given(st.integers(2, 12), st.integers(1, 6), st.integers(0, 2**16))
def test_separation_scores_are_finite_or_infinite_by_rule(n, d_sae, seed):
    rng = np.random.default_rng(seed)
    latents = np.where(rng.random((n, d_sae)) < 0.5, 0.0, rng.choice([1.0, 2.0], size=(n, d_sae)))
    correct = np.zeros(n, dtype=bool)
    correct[: rng.integers(1, n)] = True
    scores = separation_scores(latents, correct, layer=0)
    assert scores.s_correct.between(-1, 1).all()
    single = min(correct.sum(), (~correct).sum()) == 1
    assert single or not scores.t_stat.isna().any()  # NaN only where a class has one sample


@EXAMPLES
@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=30))
def test_paired_steering_statistics_are_defined_for_any_table(pairs):
    target = np.array([t for t, _ in pairs], dtype=bool)
    control = np.array([c for _, c in pairs], dtype=bool)
    assert _is_probability(paired_exact_test(target, control)["p_paired"])
    low, high = paired_difference_interval(target, control)
    if pairs:
        assert -1 <= low <= target.mean() - control.mean() <= high <= 1
        rate = float(control.mean())
        detectable = minimum_detectable_rate(len(pairs), rate)
        assert np.isnan(detectable) or rate <= detectable <= 1
        assert all(_is_probability(v) for v in clopper_pearson(int(target.sum()), len(pairs)))
    else:
        assert np.isnan(low) and np.isnan(high)


@EXAMPLES
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=12))
def test_steering_tables_for_any_outcomes(outcomes):
    n = len(outcomes)
    rows = [
        pd.DataFrame({
            "split": "validation", "coefficient": 0.1, "direction": "correct", "kind": kind, "layer": 6,
            "latent": latent, "problems": "incorrect", "task_id": range(n), "before": "incorrect",
            "after": ["correct" if o[column] else "incorrect" for o in outcomes], "similarity": 0.9,
        })
        for kind, latent, column in (("target", 5, 0), ("control", 9, 1))
    ]
    tests = experiment_tests(pd.concat(rows), control_tests(pd.concat(rows)))
    row = tests.iloc[0]
    assert _is_probability(row.p_paired) and _is_probability(row.ci_low) and _is_probability(row.ci_high)
    assert np.isnan(row.minimum_detectable_effect) or 0 <= row.minimum_detectable_effect <= 1


def _scores_frame(
    rng: np.random.Generator, n: int, score: np.ndarray, correct: np.ndarray, surface: np.ndarray | None = None
) -> pd.DataFrame:
    """The long scores of one latent, and of the combined surface baseline when ``surface`` is given."""
    split = np.array(["hyperparams"] * (n // 2) + ["validation"] * (n - n // 2))
    folds = cross_folds(correct, np.ones(n, int), split != "validation", seed=int(rng.integers(100)))
    latent = pd.DataFrame({
        "readout": BEST_LATENT, "kind": LATENT, "layer": 6.0, "direction": "correct", "latent": 3, "C": np.nan,
        "hyperparams_auroc": np.nan, "task_id": np.arange(n), "split": split, "correct": correct, "score": score,
        "fold": folds.fold, "cv_auroc": np.nan, "C_fold_agreement": np.nan, "C_fold_best": "",
        "cv_note": folds.note,
    })
    if surface is None:
        return latent
    return pd.concat([latent, latent.assign(readout=SURFACE_REFERENCE, kind=BASELINE, layer=np.nan, latent=-1,
                                            score=surface)], ignore_index=True)  # fmt: skip


@EXAMPLES
@given(labelled(min_size=2, max_size=16), st.integers(0, 3))
def test_readout_and_beyond_difficulty_tables_flag_what_they_cannot_compute(split, seed):
    positive, length, complexity, score = split
    n = len(positive)
    scores = _scores_frame(np.random.default_rng(seed), n, score, positive, surface=length + complexity)
    both = readout_table(scores, seed, resamples=50, permutations=49)
    assert list(both.readout) == [BEST_LATENT, SURFACE_REFERENCE]
    for row in both.itertuples():
        assert (-1 <= row.auroc_minus_surface <= 1) or (np.isnan(row.auroc_minus_surface)
                                                        and row.auroc_minus_surface_note)  # fmt: skip
    assert np.isnan(both.auroc_minus_surface.iloc[0]) or _is_probability(both.auroc.iloc[0])
    table = both.iloc[0]
    assert _is_probability(table.auroc) or (np.isnan(table.auroc) and table.note)
    scores = scores[scores.readout == BEST_LATENT]
    tasks = pd.DataFrame({"task_id": np.arange(n), "prompt_tokens": length, "complexity": complexity.astype(int)})
    beyond = beyond_difficulty_table(scores, tasks, seed, resamples=50)
    row = beyond.iloc[0]
    assert _is_probability(row.p_lrt) or row.lrt_method == NOT_ESTIMABLE
    assert beyond_difficulty_sentences(beyond)  # one sentence, whatever the fit
    primary = primary_replicate_p_values(table.to_frame().T.assign(auroc_p_permutation=0.5), beyond, {"correct": 6})
    assert all(_is_probability(p) or np.isnan(p) for p in primary.values())
    summary = pd.DataFrame({"direction": ["correct"], "p_selection_aware": [np.nan], "p_beyond_merged": [np.nan]})
    family = confirmatory_family(declared_p_values(summary, ["correct", "incorrect"]))
    assert family.p.tolist() == [1.0] * 4  # a test the data cannot estimate enters as p = 1, never as an error
    assert family.p.between(0, 1).all()


@pytest.mark.parametrize("fill", [np.nan, np.inf])
def test_a_readout_with_non_finite_scores_is_flagged_with_the_count(fill):
    rng = np.random.default_rng(0)
    score = rng.normal(size=20)
    score[[3, 15]] = fill
    table = readout_table(_scores_frame(rng, 20, score, np.arange(20) % 2 == 0), 0, 50, 49).iloc[0]
    assert np.isnan(table.auroc) and "1 of 10 scores are not finite" in table.note
    assert all(np.isnan(table[c]) for c in DIFFERENCE_COLUMNS[:-1])
    assert "not scored" in table.auroc_minus_surface_note


def test_a_surface_baseline_with_non_finite_scores_leaves_every_difference_nan_with_the_count():
    rng = np.random.default_rng(1)
    surface = rng.normal(size=20)
    surface[12] = np.nan
    correct = np.arange(20) % 2 == 0
    table = readout_table(_scores_frame(rng, 20, rng.normal(size=20), correct, surface), 0, 50, 49)
    latent = table[table.readout == BEST_LATENT].iloc[0]
    assert _is_probability(latent.auroc) and np.isnan(latent.auroc_minus_surface)
    assert "1 of 10 tasks have a non-finite score" in latent.auroc_minus_surface_note


@EXAMPLES
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 8), st.booleans()), max_size=40), st.integers(0, 3))
def test_cross_folds_fall_back_with_a_note_and_never_fold_a_held_out_task(rows, seed):
    table = np.array(rows, dtype=np.int64).reshape(len(rows), 3)
    correct, complexity, fitting = table[:, 0].astype(bool), table[:, 1], table[:, 2].astype(bool)
    folds = cross_folds(correct, complexity, fitting, seed)
    assert (folds.fold[~fitting] == NOT_IN_A_FOLD).all()  # a held-out task is in no fold
    if folds.strata == NO_FOLDS:
        assert folds.note and folds.count == 0
        return
    assert (folds.fold[fitting] >= 0).all() and folds.count >= 2
    assert bool(folds.note) == (folds.count < 5 or folds.strata != "label x difficulty")
    for k in range(folds.count):  # every held-out fold holds both classes: its AUROC is defined
        assert 0 < correct[folds.fold == k].sum() < (folds.fold == k).sum()
    choice, out_of_fold = choose_regularisation(
        lambda c, train, test: np.where(correct[test], 1.0, 0.0) * c, correct, folds, (0.1, 1.0)
    )
    assert choice.c == 0.1 and choice.fold_agreement == 1.0  # a tie goes to the smaller C
    assert np.isfinite(out_of_fold[fitting]).all()
