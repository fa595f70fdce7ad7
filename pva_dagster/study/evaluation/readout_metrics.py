"""The readout table: every readout's threshold from the non-validation problems, and its metrics on ``validation``
(touched once).

Beside each number sits what it should be read against: AUROC with its 95 % percentile-bootstrap interval and
label-permutation p (:mod:`statistics`), average precision beside the prevalence of the direction's class, and F1
beside the F1 of always predicting the majority class, balanced accuracy and Matthews' correlation, and the AUROC
minus that of prompt length and complexity together on the same tasks (:mod:`surface_difference`).

A threshold is chosen on the non-validation tasks' scores (out-of-fold scores for a fitted readout, the activation
for a latent) as the one with the best mean F1 over the cross-fitting folds (:func:`choose_threshold` with the
folds of ``readout_scores_and_curves``). It lies on the observed range of those scores: the F1-optimal threshold is
kept, except that "everything positive", which it spells as a value below the minimum (below zero for an SAE
activation, which is never negative), becomes ``score >= minimum``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, matthews_corrcoef

from pva_dagster.study.domain import HYPERPARAMS_SPLIT, NON_VALIDATION, VALIDATION_SPLIT
from pva_dagster.study.evaluation.surface_difference import (
    DIFFERENCE_COLUMNS,
    SURFACE_REFERENCE,
    difference_to_surface,
    not_compared,
)
from pva_dagster.study.evaluation.validation import Threshold, auroc, choose_threshold, positive_class
from pva_dagster.study.statistics import BOOTSTRAP_RESAMPLES, PERMUTATIONS, auroc_permutation_p, bootstrap_intervals

FITTING = NON_VALIDATION  # the sae and hyperparams splits together, where C and thresholds are chosen
READOUT_KEY: tuple[str, ...] = ("readout", "kind", "layer", "direction")
TABLE_COLUMNS: tuple[str, ...] = (
    *READOUT_KEY, "latent", "C", "C_fold_agreement", "C_fold_best", "cv_auroc", "cv_note", "threshold",
    "threshold_operator", "hyperparams_f1", "cv_f1", "threshold_folds", "threshold_one_class", "auroc", "auroc_ci_low",
    "auroc_ci_high", "auroc_p_permutation", "average_precision", "prevalence", "f1", "f1_ci_low", "f1_ci_high",
    "majority_f1", "balanced_accuracy", "mcc", "predicts_one_class", "n", "n_positive", "note",
    *DIFFERENCE_COLUMNS,
)
METRIC_COLUMNS: tuple[str, ...] = TABLE_COLUMNS[TABLE_COLUMNS.index("auroc") : TABLE_COLUMNS.index("note")]


def majority_f1(positive: np.ndarray) -> float:
    """F1 of the positive class when every sample is predicted as the majority class (a tie predicts positive):
    ``2p / (1 + p)`` for prevalence ``p >= 1/2``, else 0. The floor an F1 must beat to mean anything."""
    positive = np.asarray(positive, dtype=bool)
    return float(f1_score(positive, np.full(len(positive), positive.mean() >= 0.5), zero_division=0))


def why_not_scored(fitting_scores: np.ndarray, fitting_correct: np.ndarray, scores: np.ndarray,
                   correct: np.ndarray) -> str | None:
    """Why a readout has no threshold or no metrics (non-finite scores, a split without both classes), or None."""
    for split, split_scores, split_correct in (
        (FITTING, fitting_scores, fitting_correct), (VALIDATION_SPLIT, scores, correct)
    ):
        values, labels = np.asarray(split_scores, dtype=np.float64), np.asarray(split_correct, dtype=bool)
        if not np.isfinite(values).all():
            return f"{split}: {int((~np.isfinite(values)).sum())} of {len(values)} scores are not finite"
        if not 0 < labels.sum() < len(labels):
            return f"{split}: {int(labels.sum())} of {len(labels)} correct: need both classes"
    return None


def readout_metrics(
    scores: np.ndarray, correct: np.ndarray, direction: str, threshold: Threshold, seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES, permutations: int = PERMUTATIONS,
) -> dict[str, float | int | bool]:
    """The metrics of one readout's ``scores[n]`` on one split, ``threshold`` applied unchanged."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = positive_class(correct, direction)
    predicted = threshold.predict(scores)
    intervals = bootstrap_intervals(scores, positive, threshold.cut, seed, resamples)
    return {
        "auroc": auroc(scores, correct, direction),
        "auroc_ci_low": intervals["auroc_ci_low"], "auroc_ci_high": intervals["auroc_ci_high"],
        "auroc_p_permutation": auroc_permutation_p(scores, positive, seed, permutations),
        "average_precision": float(average_precision_score(positive, scores)),
        "prevalence": float(positive.mean()),
        "f1": float(f1_score(positive, predicted, zero_division=0)),
        "f1_ci_low": intervals["f1_ci_low"], "f1_ci_high": intervals["f1_ci_high"],
        "majority_f1": majority_f1(positive),
        "balanced_accuracy": float(balanced_accuracy_score(positive, predicted)),
        "mcc": float(matthews_corrcoef(positive, predicted)),
        "predicts_one_class": bool(predicted.all() or not predicted.any()),
        "n": len(scores), "n_positive": int(positive.sum()),
    }


def readout_table(
    scores: pd.DataFrame, seed: int, resamples: int = BOOTSTRAP_RESAMPLES, permutations: int = PERMUTATIONS
) -> pd.DataFrame:
    """One row per (readout, kind, layer, direction) of ``readout_scores_and_curves``' long frame: TABLE_COLUMNS, C's
    cross-validation columns, the threshold chosen across the folds on the non-validation tasks, every metric on
    ``validation``, and the AUROC difference to :data:`SURFACE_REFERENCE` on the same validation tasks
    (:func:`difference_to_surface`)."""
    on_validation = scores[scores.split == VALIDATION_SPLIT]
    surface = {
        str(direction): rows for direction, rows in on_validation[on_validation.readout == SURFACE_REFERENCE]
        .groupby("direction")
    }
    rows = []
    for key, group in scores.groupby(list(READOUT_KEY), dropna=False, sort=False):
        direction = str(key[3])
        fitting = group[group.split != VALIDATION_SPLIT]
        validation = group[group.split == VALIDATION_SPLIT]
        first = group.iloc[0]
        identity = {**dict(zip(READOUT_KEY, key, strict=True)), "latent": int(first.latent), "C": first.C,
                    **{c: first[c] for c in ("C_fold_agreement", "C_fold_best", "cv_auroc", "cv_note")}}
        reason = why_not_scored(fitting.score, fitting.correct, validation.score, validation.correct)
        if reason:
            rows.append({**identity, **dict.fromkeys(METRIC_COLUMNS, np.nan), "n": len(validation), "note": reason,
                         **not_compared(f"the readout is not scored: {reason}")})
            continue
        threshold = choose_threshold(fitting.score.to_numpy(), fitting.correct.to_numpy(bool), direction,
                                     fitting.fold.to_numpy())
        rows.append({
            **identity, "threshold": threshold.value, "threshold_operator": threshold.operator,
            "hyperparams_f1": _f1_on(fitting[fitting.split == HYPERPARAMS_SPLIT], direction, threshold),
            "cv_f1": threshold.f1, "threshold_folds": threshold.folds, "threshold_one_class": threshold.one_class,
            **readout_metrics(
                validation.score.to_numpy(), validation.correct.to_numpy(bool), direction, threshold, seed,
                resamples, permutations,
            ),
            "note": "",
            **difference_to_surface(validation, surface.get(direction), direction, seed, resamples),
        })
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _f1_on(rows: pd.DataFrame, direction: str, threshold: Threshold) -> float:
    """F1 of ``threshold`` on ``rows`` (the hyperparams tasks), NaN where there are none."""
    if rows.empty:
        return float("nan")
    positive = positive_class(rows.correct.to_numpy(bool), direction)
    return float(f1_score(positive, threshold.predict(rows.score.to_numpy()), zero_division=0))
