"""Phase 3 statistical validation: does a latent's activation predict correctness on held-out problems?

Thresholds come from the non-validation problems (``sae`` and ``hyperparams``, their greedy samples): the one with
the best mean F1 over the cross-fitting folds (:func:`cross_folds`, stratified by label and difficulty), ties to
the highest. They are applied unchanged to the validation split, overall, per temperature and per difficulty
bucket. The mean over folds, not the median of each fold's own optimum: a fold's optimum rests on a fifth of the
problems, the small-sample choice cross-fitting replaces, and a median of thresholds can fall where no fold's F1
is best; the folds' spread shows in ``cv_f1`` beside ``hyperparams_f1``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pva_dagster.study.analysis.latent_samples import latent_column
from pva_dagster.study.domain import GREEDY_TEMPERATURE, HYPERPARAMS_SPLIT, temperature_tag
from pva_dagster.study.evaluation.cross_fitting import cross_folds
from pva_dagster.study.evaluation.validation import (
    Threshold,
    auroc,
    choose_threshold,
    classification_metrics,
    positive_class,
)
from pva_dagster.study.problems.difficulty import difficulty_bucket
from pva_dagster.study.statistics import auroc_permutation_p, bootstrap_intervals

# A threshold chosen on fewer samples than this is flagged in the tables and the report.
MIN_THRESHOLD_SAMPLES = 20


def _metrics(values: np.ndarray, correct: np.ndarray, direction: str, threshold: Threshold) -> dict[str, float]:
    both_classes = 0 < correct.sum() < len(correct)
    return {
        "auroc": auroc(values, correct, direction) if both_classes else float("nan"),
        **classification_metrics(values, correct, direction, threshold),
    }


def _uncertainty(values: np.ndarray, correct: np.ndarray, direction: str, threshold: Threshold, seed: int) -> dict:
    """Bootstrap intervals of AUROC and F1, AUROC's permutation p-value, and flags on the threshold."""
    positive = positive_class(correct, direction)
    predicted = threshold.predict(values)
    return {
        **bootstrap_intervals(values, positive, threshold.cut, seed),
        "auroc_p_permutation": auroc_permutation_p(values, positive, seed),
        "threshold_samples": threshold.n,
        "threshold_few_samples": threshold.n < MIN_THRESHOLD_SAMPLES,
        "threshold_one_class": threshold.one_class,
        "predicts_one_class": bool(predicted.all() or not predicted.any()),
    }


def threshold_folds(fitting: pd.DataFrame, difficulty: pd.DataFrame, seed: int) -> tuple[np.ndarray, str]:
    """``(fold[samples], note)``: the cross-fitting folds of ``fitting``'s samples (one per task), stratified by
    label and difficulty, and what fell back (:func:`cross_folds`)."""
    repeated = fitting.task_id[fitting.task_id.duplicated()]
    if len(repeated):
        raise ValueError(f"thresholds are chosen on one sample per task; tasks {sorted(set(repeated))[:5]} repeat")
    complexity = fitting.task_id.map(difficulty.set_index("task_id").cyclomatic_complexity)
    if complexity.isna().any():
        raise ValueError(f"no difficulty for tasks {sorted(fitting.task_id[complexity.isna()])[:5]}")
    folds = cross_folds(fitting.passed.to_numpy(bool), complexity.to_numpy(int), np.ones(len(fitting), bool), seed)
    return folds.fold, folds.note


def validate_latents(
    selected: pd.DataFrame,
    fitting: pd.DataFrame,
    validation: pd.DataFrame,
    difficulty: pd.DataFrame,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For each selected latent (direction, layer, latent): the overall table and a per-group table.

    ``fitting`` (the non-validation greedy samples, one per task, with their ``split``) / ``validation`` come from
    :func:`latent_samples`; the threshold is chosen across the folds of :func:`threshold_folds` on ``fitting``;
    overall metrics use the validation split's temperature-0 samples, with seeded bootstrap intervals and a
    permutation p-value; groups are each temperature and each difficulty bucket (temperature 0).
    """
    buckets = difficulty.set_index("task_id").cyclomatic_complexity.map(difficulty_bucket)
    greedy = validation[validation.temperature == GREEDY_TEMPERATURE]
    fold, fold_note = threshold_folds(fitting, difficulty, seed)
    hyper = (fitting.split == HYPERPARAMS_SPLIT).to_numpy()
    overall, grouped = [], []
    for row in selected.itertuples():
        column = latent_column(row.layer, row.latent)
        threshold = choose_threshold(fitting[column].to_numpy(), fitting.passed.to_numpy(bool), row.direction, fold)
        key = {"direction": row.direction, "layer": row.layer, "latent": row.latent}
        values, correct = greedy[column].to_numpy(), greedy.passed.to_numpy(bool)
        hyper_f1 = classification_metrics(
            fitting[column].to_numpy()[hyper], fitting.passed.to_numpy(bool)[hyper], row.direction, threshold
        )["f1"] if hyper.any() else float("nan")
        overall.append(
            {**key, "threshold": threshold.value, "operator": threshold.operator, "hyperparams_f1": hyper_f1,
             "cv_f1": threshold.f1, "threshold_folds": threshold.folds, "threshold_note": fold_note,
             **_metrics(values, correct, row.direction, threshold),
             **_uncertainty(values, correct, row.direction, threshold, seed)}
        )
        groups: list[tuple[str, str, pd.DataFrame]] = [
            ("temperature", temperature_tag(t), part) for t, part in validation.groupby("temperature")
        ]
        groups += [("difficulty", b, part) for b, part in greedy.groupby(greedy.task_id.map(buckets))]
        for kind, name, part in groups:
            grouped.append(
                {**key, "group_kind": kind, "group": name,
                 **_metrics(part[column].to_numpy(), part.passed.to_numpy(bool), row.direction, threshold)}
            )
    return pd.DataFrame(overall), pd.DataFrame(grouped)


def selected_latents(top: pd.DataFrame, per_direction: int) -> pd.DataFrame:
    """The first ``per_direction`` latents of each direction of a Phase 2 ranking (rank 1 = best)."""
    return (
        top.sort_values(["direction", "rank"]).groupby("direction").head(per_direction)[
            ["direction", "rank", "layer", "latent"]
        ].reset_index(drop=True)
    )
