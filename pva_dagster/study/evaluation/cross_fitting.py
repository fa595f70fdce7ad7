"""Cross-fitting over every non-validation problem: the folds, a regularisation C chosen by cross-validated AUROC,
and each model's out-of-fold scores.

The ``sae`` and ``hyperparams`` splits together (120 problems in the embedded profile) are cut into
:data:`FOLDS` folds by scikit-learn's ``StratifiedKFold`` (shuffled, seeded), stratified by the label crossed
with the difficulty bucket (:data:`~pva_dagster.study.problems.difficulty.DIFFICULTY_BUCKETS`), so every fold
holds both classes at every difficulty. Where a stratum holds fewer problems than folds, the folds fall back, in
this order, to as many folds as the smallest stratum holds (at least :data:`MIN_DIFFICULTY_FOLDS`), to the label
alone (``FOLDS`` folds, or as many as the smaller class holds), and to none (one class: nothing to
cross-validate); :attr:`Folds.note` says which and why. ``validation`` never enters a fold.

C is chosen by the mean AUROC over the held-out folds, ties to the smaller C (the stronger regularisation);
beside it each fold's own best C (same tie rule) and the share of folds that agree with the chosen one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from pva_dagster.study.evaluation.validation import auroc
from pva_dagster.study.problems.difficulty import difficulty_bucket

FOLDS = 5
MIN_DIFFICULTY_FOLDS = 3  # below this, label-only strata with more folds beat difficulty strata with fewer
TIE_DECIMALS = 12  # mean AUROCs equal to this many decimals are a tie, whichever CPU summed them
LABEL_AND_DIFFICULTY, LABEL_ONLY, NO_FOLDS = "label x difficulty", "label", "none"
NOT_IN_A_FOLD = -1  # the fold of a validation task


@dataclass(frozen=True)
class Folds:
    fold: np.ndarray  # int[tasks]: the fold each task is held out in, NOT_IN_A_FOLD for none
    strata: str  # LABEL_AND_DIFFICULTY, LABEL_ONLY or NO_FOLDS
    note: str  # "" when FOLDS folds on label x difficulty, else what fell back and why

    @property
    def count(self) -> int:
        return int(self.fold.max()) + 1 if len(self.fold) else 0


def cross_folds(
    correct: np.ndarray, complexity: np.ndarray, fitting: np.ndarray, seed: int, folds: int = FOLDS
) -> Folds:
    """The folds of the tasks where ``fitting[tasks]`` (bool) is True, by ``correct[tasks]`` and
    ``complexity[tasks]`` (cyclomatic, >= 1); every other task is :data:`NOT_IN_A_FOLD`."""
    correct, fitting = np.asarray(correct, dtype=bool), np.asarray(fitting, dtype=bool)
    if folds < 2:
        raise ValueError(f"need at least 2 folds, got {folds}")
    buckets = np.array([difficulty_bucket(int(c)) for c in np.asarray(complexity)[fitting]], dtype=object)
    labels = correct[fitting]
    classes = int(min(labels.sum(), (~labels).sum()))
    if classes < 2:
        none = np.full(len(correct), NOT_IN_A_FOLD)
        why = f"{int(labels.sum())} of {len(labels)} fitting tasks correct"
        return Folds(none, NO_FOLDS, f"no folds: {why}, too few of one class to hold one out in two folds")
    combined = np.array([f"{label}/{bucket}" for label, bucket in zip(labels, buckets, strict=True)])
    smallest = int(np.unique(combined, return_counts=True)[1].min())
    if smallest >= folds:
        return _split(fitting, combined, folds, seed, LABEL_AND_DIFFICULTY, "")
    why = f"the smallest label x difficulty stratum holds {smallest} tasks"
    if smallest >= MIN_DIFFICULTY_FOLDS:
        return _split(fitting, combined, smallest, seed, LABEL_AND_DIFFICULTY, f"{smallest} folds, not {folds}: {why}")
    k = min(folds, classes)
    fewer = f"; {k} folds: the smaller class holds {classes} tasks" if k < folds else ""
    return _split(fitting, labels.astype(int), k, seed, LABEL_ONLY, f"stratified by label only: {why}{fewer}")


def _split(fitting: np.ndarray, key: np.ndarray, k: int, seed: int, strata: str, note: str) -> Folds:
    fold = np.full(len(fitting), NOT_IN_A_FOLD)
    positions = np.flatnonzero(fitting)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for index, (_, test) in enumerate(splitter.split(np.zeros(len(key)), key)):
        fold[positions[test]] = index
    return Folds(fold, strata, note)


@dataclass(frozen=True)
class Regularisation:
    c: float  # chosen: the best mean held-out AUROC, ties to the smaller C
    cv_auroc: float  # that mean (NaN without folds)
    fold_best: tuple[float, ...]  # each fold's own best C, same tie rule
    curve: tuple[tuple[float, float, float], ...]  # (C, mean AUROC, standard deviation over folds) per C
    note: str  # the folds' note, and what was done without folds

    @property
    def fold_agreement(self) -> float:
        """The share of folds whose own best C is the chosen C (NaN without folds)."""
        return float(np.mean([c == self.c for c in self.fold_best])) if self.fold_best else float("nan")


def choose_regularisation(
    fit_score: Callable[[float, np.ndarray, np.ndarray], np.ndarray], correct: np.ndarray, folds: Folds,
    c_grid: Sequence[float],
) -> tuple[Regularisation, np.ndarray]:
    """``(the choice, out-of-fold scores[tasks] at the chosen C)``; the scores are NaN outside the folds.

    ``fit_score(C, train, test)`` fits at ``C`` on the tasks of ``train`` (bool[tasks]) and returns the
    decision function for "correct" on the tasks of ``test``. Without folds the smallest C is kept, said so."""
    grid = sorted(c_grid)
    if not grid:
        raise ValueError("c_grid is empty")
    correct = np.asarray(correct, dtype=bool)
    out_of_fold = np.full((len(grid), len(correct)), np.nan)
    if folds.count == 0:
        note = "; ".join(filter(None, [folds.note, f"C = {grid[0]:g}, the smallest, with nothing to compare"]))
        return Regularisation(grid[0], float("nan"), (), (), note), out_of_fold[0]
    per_fold = np.empty((len(grid), folds.count))
    for i, c in enumerate(grid):
        for k in range(folds.count):
            test = folds.fold == k
            out_of_fold[i, test] = fit_score(c, (folds.fold != NOT_IN_A_FOLD) & ~test, test)
            per_fold[i, k] = auroc(out_of_fold[i, test], correct[test], "correct")
    mean = np.round(per_fold.mean(axis=1), TIE_DECIMALS)
    best = int(np.argmax(mean))  # the first maximum: the smallest C
    fold_best = tuple(grid[int(np.argmax(np.round(per_fold[:, k], TIE_DECIMALS)))] for k in range(folds.count))
    curve = tuple((c, float(per_fold[i].mean()), float(per_fold[i].std())) for i, c in enumerate(grid))
    return Regularisation(grid[best], float(per_fold[best].mean()), fold_best, curve, folds.note), out_of_fold[best]
