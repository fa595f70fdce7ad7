"""Cross-fitting: folds over the non-validation problems, C by cross-validated AUROC, and what it buys over one
20-problem hyperparameter split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pva_dagster.study.evaluation.cross_fitting import (
    LABEL_AND_DIFFICULTY,
    LABEL_ONLY,
    NO_FOLDS,
    NOT_IN_A_FOLD,
    choose_regularisation,
    cross_folds,
)
from pva_dagster.study.evaluation.readouts import _scalar_model, fit_and_score, fitting_folds
from pva_dagster.study.evaluation.validation import auroc, choose_threshold

# The embedded profile's split sizes.
SIZES = {"sae": 100, "hyperparams": 20, "validation": 80}
COARSE_GRID = (0.001, 1.0, 1000.0)


def _nuisance(seed: int, noise: int = 10, signal: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Tasks whose first feature is the class shifted by ``signal`` plus a large nuisance ``u`` that the second
    feature also carries, beside ``noise`` pure-noise features. Only ``x1 - x2`` cancels ``u``: a strong L2 penalty
    shrinks the weights towards the class-mean difference (mostly ``x1``, nuisance kept), so the weakest penalty of
    the grid is the known best, and its margin is too small for 20 problems to see every time."""
    rng = np.random.default_rng(seed)
    n = sum(SIZES.values())
    correct = rng.random(n) < 0.5
    u = rng.normal(size=n) * 3
    x1 = signal * np.where(correct, 1.0, -1.0) + u + rng.normal(size=n) * 0.5
    x2 = u + rng.normal(size=n) * 0.5
    features = np.column_stack([x1, x2, rng.normal(size=(n, noise))])
    tasks = pd.DataFrame({
        "task_id": np.arange(1000, 1000 + n), "split": np.repeat(list(SIZES), list(SIZES.values())),
        "correct": correct, "complexity": rng.choice([1, 2, 3, 5], size=n),
    })
    return tasks, features


def _c_on_one_split(tasks: pd.DataFrame, features: np.ndarray) -> float:
    """The choice cross-fitting replaces: fitted on sae, C by AUROC on the 20 hyperparams tasks, ties smaller."""
    correct = tasks.correct.to_numpy(bool)
    sae, hyper = (tasks.split == "sae").to_numpy(), (tasks.split == "hyperparams").to_numpy()
    qualities = [
        auroc(_scalar_model(c, 0).fit(features[sae], correct[sae]).decision_function(features[hyper]),
              correct[hyper], "correct")
        for c in COARSE_GRID
    ]
    return COARSE_GRID[int(np.argmax(qualities))]


def test_cross_fitting_picks_the_known_best_c_on_every_redraw_where_one_small_split_does_not():
    cross_fitted, one_split = [], []
    for seed in range(10):
        tasks, features = _nuisance(seed)
        _, choice = fit_and_score(features, tasks, _scalar_model, 0, fitting_folds(tasks, 0), COARSE_GRID)
        cross_fitted.append(choice.c)
        one_split.append(_c_on_one_split(tasks, features))
    assert cross_fitted == [1000.0] * 10
    assert len(set(one_split)) > 1, one_split  # the 20-problem choice moves with the draw


class _Recording:
    """A stand-in model that records the task ids (its one feature) it is fitted on and scores."""

    fitted: list[set[int]] = []
    scored: list[set[int]] = []

    def fit(self, rows: np.ndarray, correct: np.ndarray) -> _Recording:
        _Recording.fitted.append({int(t) for t in rows[:, 0]})
        return self

    def decision_function(self, rows: np.ndarray) -> np.ndarray:
        _Recording.scored.append({int(t) for t in rows[:, 0]})
        return np.asarray(rows[:, 1], dtype=np.float64)


def test_validation_tasks_never_enter_a_fold_and_are_scored_once_by_the_refitted_model():
    tasks, features = _nuisance(0)
    rows = np.column_stack([tasks.task_id.to_numpy(np.float64), features[:, 0]])
    _Recording.fitted, _Recording.scored = [], []
    folds = fitting_folds(tasks, 0)
    score, choice = fit_and_score(rows, tasks, lambda c, seed: _Recording(), 0, folds, COARSE_GRID)
    validation = set(tasks.task_id[tasks.split == "validation"])
    fitting = set(tasks.task_id[tasks.split != "validation"])
    assert set(tasks.task_id[folds.fold == NOT_IN_A_FOLD]) == validation
    held_out = [set(tasks.task_id[folds.fold == k]) for k in range(folds.count)]
    assert set().union(*held_out) == fitting and sum(map(len, held_out)) == len(fitting)  # each task once
    *cross_validation, refit = _Recording.fitted
    assert len(cross_validation) == len(COARSE_GRID) * folds.count
    assert all(not (trained & validation) for trained in _Recording.fitted)  # never fitted on validation
    assert refit == fitting
    assert [s for s in _Recording.scored if s & validation] == [validation]  # read once, by the refit
    assert np.isfinite(score).all() and choice.fold_agreement == 1.0


def test_folds_are_stratified_by_label_and_difficulty_and_fall_back_with_a_note():
    tasks, _ = _nuisance(3)
    folds = fitting_folds(tasks, 0)
    assert folds.strata == LABEL_AND_DIFFICULTY and folds.count == 5 and folds.note == ""
    fitting = tasks[folds.fold >= 0].assign(fold=folds.fold[folds.fold >= 0])
    shares = pd.crosstab(fitting.fold, [fitting.correct, fitting.complexity.clip(upper=4)], normalize="columns")
    assert ((shares - 0.2).abs() <= 0.2).all().all()  # every stratum spread over every fold
    correct = np.array([True] * 12 + [False] * 12)
    complexity = np.array([1] * 23 + [9])  # one hard task: its stratum holds 1
    label_only = cross_folds(correct, complexity, np.ones(24, bool), seed=0)
    assert label_only.strata == LABEL_ONLY and label_only.count == 5
    assert label_only.note == "stratified by label only: the smallest label x difficulty stratum holds 1 tasks"
    fewer = cross_folds(correct, np.ones(24, int), np.arange(24) % 6 < 4, seed=0)  # 16 tasks, 8 of each class
    assert fewer.count == 5 and fewer.note == ""
    three = cross_folds(np.array([True, False] * 4), np.ones(8, int), np.ones(8, bool), seed=0)
    assert three.strata == LABEL_AND_DIFFICULTY and three.count == 4 and three.note.startswith("4 folds, not 5")
    one_class = cross_folds(np.ones(10, bool), np.ones(10, int), np.ones(10, bool), seed=0)
    assert one_class.strata == NO_FOLDS and "10 of 10 fitting tasks correct" in one_class.note
    choice, out_of_fold = choose_regularisation(lambda c, train, test: np.zeros(test.sum()), np.ones(10, bool),
                                                one_class, (1.0, 0.01))
    assert choice.c == 0.01 and "the smallest, with nothing to compare" in choice.note
    assert np.isnan(choice.fold_agreement) and np.isnan(out_of_fold).all()


def test_a_threshold_across_folds_uses_every_fold_and_ties_to_the_highest():
    activation = np.array([0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 0.0, 4.0])
    correct = np.array([False, False, True, True, False, True, True, True])
    fold = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    threshold = choose_threshold(activation, correct, "correct", fold)
    assert threshold.folds == 2 and threshold.value == 0.5 and not threshold.one_class
    f1_fold = [1.0, 0.8]  # fold 0 all right; fold 1 misses its correct task at 0
    assert threshold.f1 == pytest.approx(np.mean(f1_fold))
    one_class_fold = choose_threshold(activation, np.array([True] * 4 + [False, True, False, True]), "correct", fold)
    assert one_class_fold.folds == 2  # a fold with one class gives a value, never an error
