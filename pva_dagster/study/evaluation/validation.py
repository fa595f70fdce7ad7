"""Phase 3 statistics of one latent: AUROC, an F1-optimal threshold, and the classification it gives.

A latent is ``"correct"``- or ``"incorrect"``-preferring (Phase 2: it fires more on correct, or on incorrect,
solutions). Its *positive class* is the class matching its direction, so higher activation always means
"predict positive": correct = 1 for a correct-preferring latent, incorrect = 1 for an incorrect-preferring one.
One comparison (``activation > threshold``) is therefore used for both directions and both splits; a threshold
that classifies everything positive sits at the smallest activation seen, inclusively (``>=``), so a printed
threshold always lies within the observed range (never below zero for an SAE activation).

Every metric is scikit-learn's; this module only turns (activation, correct, direction) into (score, label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from pva_dagster.study.domain import DIRECTIONS

OPERATOR = ">"  # predict the positive class when activation > threshold
AT_LEAST = ">="  # at the smallest activation seen: everything positive


@dataclass(frozen=True)
class Threshold:
    value: float  # chosen on the non-validation problems, applied unchanged elsewhere
    operator: str  # OPERATOR, or AT_LEAST at the observed minimum (see module docstring)
    f1: float  # F1 it reached where it was chosen (the mean over folds when chosen across folds)
    one_class: bool = False  # it predicts one class only on the samples it was chosen on
    n: int = 0  # samples it was chosen on
    folds: int = 0  # folds whose mean F1 chose it; 0: F1 on all its samples at once

    @property
    def cut(self) -> float:
        """The value that ``activation > cut`` classifies by: ``>=`` value is ``>`` just below it."""
        return self.value if self.operator == OPERATOR else float(np.nextafter(self.value, -np.inf))

    def predict(self, activation: np.ndarray) -> np.ndarray:
        """``bool[n]``: the positive class predicted."""
        return np.asarray(activation, dtype=np.float64) > self.cut


def _scores_and_labels(
    activation: np.ndarray, correct: np.ndarray, direction: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(activation[n] float64, positive[n] bool)`` for a direction."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose from {DIRECTIONS}")
    scores = np.asarray(activation, dtype=np.float64)
    correct = np.asarray(correct)
    if scores.ndim != 1 or correct.ndim != 1 or len(scores) != len(correct):
        raise ValueError(
            f"activation and correct must be 1-D of one length, got shapes {scores.shape} and {correct.shape}"
        )
    if len(scores) == 0:
        raise ValueError("no samples: activation and correct are empty")
    if correct.dtype != bool and not np.isin(correct, (0, 1)).all():
        raise ValueError(f"correct must be boolean (or 0/1), got values {np.unique(correct)[:5]}")
    if not np.isfinite(scores).all():
        raise ValueError(f"activation has {int((~np.isfinite(scores)).sum())} non-finite values")
    return scores, positive_class(correct, direction)


def positive_class(correct: np.ndarray, direction: str) -> np.ndarray:
    """The direction's positive class per sample: ``correct`` itself, or its negation for "incorrect"."""
    correct = np.asarray(correct, dtype=bool)
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose from {DIRECTIONS}")
    return correct if direction == "correct" else ~correct


def _require_both_classes(positive: np.ndarray, direction: str) -> None:
    if positive.all() or not positive.any():
        present = "correct" if positive.all() == (direction == "correct") else "incorrect"
        missing = "incorrect" if present == "correct" else "correct"
        raise ValueError(f"no {missing} samples ({len(positive)} samples, all {present}): need both classes")


def auroc(activation: np.ndarray, correct: np.ndarray, direction: str) -> float:
    """Area under the ROC curve of ``activation[n]`` for the direction's positive class (0.5 = chance)."""
    scores, positive = _scores_and_labels(activation, correct, direction)
    _require_both_classes(positive, direction)
    return float(roc_auc_score(positive, scores))


def threshold_candidates(scores: np.ndarray) -> np.ndarray:
    """Every distinct classification of ``scores`` under ``>``, as one threshold each (ascending).

    Below the minimum (everything positive), the midpoint between each pair of consecutive distinct values, and
    the maximum (nothing positive): F1 is constant between these, so no other threshold can do better.
    """
    values = np.unique(scores)
    step = float(values[-1] - values[0]) or 1.0
    return np.concatenate([[values[0] - step], (values[:-1] + values[1:]) / 2, [values[-1]]])


def choose_threshold(
    activation: np.ndarray, correct: np.ndarray, direction: str, fold: np.ndarray | None = None
) -> Threshold:
    """The threshold (``activation > value``) maximising F1 of the positive class; ties go to the *highest*.

    With ``fold[n]`` (int, the fold each sample belongs to; negative: none) F1 is the mean of the folds' F1s
    (cross-validated F1), else F1 on all samples at once. SAE activations are >= 0 and mostly 0, so "everything
    positive" is often among the F1-optimal thresholds on a small split; breaking ties upward picks the optimal
    threshold that separates the most, and :attr:`Threshold.one_class` says when even that one predicts a single
    class.
    """
    scores, positive = _scores_and_labels(activation, correct, direction)
    candidates = threshold_candidates(scores)
    fold = np.full(len(scores), -1) if fold is None else np.asarray(fold)
    if fold.shape != scores.shape:
        raise ValueError(f"fold must have the activation's shape {scores.shape}, got {fold.shape}")
    folds = [fold == k for k in np.unique(fold[fold >= 0])]
    groups = folds or [np.ones(len(scores), bool)]
    f1 = np.array([
        np.mean([f1_score(positive[g], scores[g] > value, zero_division=0) for g in groups]) for value in candidates
    ])
    f1 = np.round(f1, 12)  # equal up to summation order: a tie, on every CPU
    best = int(np.flatnonzero(f1 == f1.max())[-1])  # the last maximum = the highest threshold
    predicted = scores > candidates[best]
    below = candidates[best] < scores.min()  # everything positive: the same classification at the minimum
    return Threshold(
        value=float(scores.min() if below else candidates[best]), operator=AT_LEAST if below else OPERATOR,
        f1=float(f1[best]), one_class=bool(predicted.all() or not predicted.any()), n=len(scores),
        folds=len(folds),
    )


def classification_metrics(
    activation: np.ndarray, correct: np.ndarray, direction: str, threshold: Threshold
) -> dict[str, float]:
    """F1, precision, recall, accuracy of ``threshold`` applied unchanged; n and n_positive (true class)."""
    if threshold.operator not in (OPERATOR, AT_LEAST):
        raise ValueError(f"unknown threshold operator {threshold.operator!r}; expected {OPERATOR!r} or {AT_LEAST!r}")
    scores, positive = _scores_and_labels(activation, correct, direction)
    predicted = threshold.predict(scores)
    return {
        "f1": float(f1_score(positive, predicted, zero_division=0)),
        "precision": float(precision_score(positive, predicted, zero_division=0)),
        "recall": float(recall_score(positive, predicted, zero_division=0)),
        "accuracy": float(accuracy_score(positive, predicted)),
        "n": len(positive),
        "n_positive": int(positive.sum()),
    }


def roc_points(activation: np.ndarray, correct: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of the ROC curve, for plots."""
    scores, positive = _scores_and_labels(activation, correct, direction)
    _require_both_classes(positive, direction)
    fpr, tpr, _ = roc_curve(positive, scores)
    return fpr, tpr


def pr_points(activation: np.ndarray, correct: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """``(recall, precision)`` of the precision-recall curve, for plots."""
    scores, positive = _scores_and_labels(activation, correct, direction)
    _require_both_classes(positive, direction)
    precision, recall, _ = precision_recall_curve(positive, scores)
    return recall, precision
