"""A replicate's dense probe: layer and C chosen by nested cross-validation inside its non-validation problems.

The rank-1 latent of a replicate is set against what the residual stream holds at all: a standardised L2 logistic
regression on the residual at the readout token (the single run's ``dense_probe``). Within the replicate's
non-validation problems, stratified folds (:func:`cross_folds`, label x difficulty) choose each layer's C by mean
held-out AUROC (:func:`fit_and_score`, ties to the smaller C); the layer is the one whose chosen C has the best
mean held-out AUROC (ties to the smaller C, then the lower layer), i.e. the best cell of the layer x C grid. That
layer's model, refitted at its C on every non-validation problem, scores the replicate's validation problems once.

The *length-regressed* probe is the same after prompt length is taken out of every residual dimension: each
dimension's least-squares line on ``prompt_tokens`` is fitted on the non-validation problems only and subtracted on
every problem, so what the probe reads is not a linear function of length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pva_dagster.study.evaluation.cross_fitting import TIE_DECIMALS, cross_folds
from pva_dagster.study.evaluation.readouts import _scalar_model, fit_and_score
from pva_dagster.study.evaluation.validation import auroc

PROBE_C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1)  # the single run's dense probes choose 0.001 on every fold
PROBE_FOLDS = 3  # inner folds; each replicate fits layers x C x folds models twice (plain, length-regressed)
EXPLAINED = 1e-9  # a column whose spread the line leaves below this share of it is taken as explained entirely
PROBE_COLUMNS: tuple[str, ...] = ("auroc", "layer", "C", "cv_auroc", "note")


def regress_out(matrix: np.ndarray, covariate: np.ndarray, fitting: np.ndarray) -> np.ndarray:
    """``matrix[tasks, d]`` minus each column's least-squares line on ``covariate[tasks]``, the lines fitted on
    the ``fitting[tasks]`` rows only. A column the line explains entirely on those rows becomes 0: what is left
    of it is rounding, itself nearly linear in the covariate, which standardising would blow back up."""
    design = np.column_stack([np.ones(len(covariate)), np.asarray(covariate, dtype=np.float64)])
    coefficients, *_ = np.linalg.lstsq(design[fitting], matrix[fitting], rcond=None)
    left = matrix - design @ coefficients
    explained = left[fitting].std(axis=0) <= EXPLAINED * matrix[fitting].std(axis=0)
    left[:, explained] = 0.0
    return left


def nested_probe(
    residuals: Mapping[int, np.ndarray], tasks: pd.DataFrame, fitting: np.ndarray, scored: np.ndarray, seed: int,
    c_grid: Sequence[float] = PROBE_C_GRID, folds: int = PROBE_FOLDS,
) -> dict[str, float | str]:
    """PROBE_COLUMNS of the dense probe over ``residuals[layer]`` (``float[tasks, d_model]``, ``tasks``' order):
    layer and C by cross-validation over the ``fitting[tasks]`` rows, its AUROC for "correct" on the ``scored``
    rows. ``tasks``: ``correct`` and ``complexity`` per task. Without folds (a class too small) nothing is
    fitted and ``note`` says why."""
    correct = tasks.correct.to_numpy(bool)
    inner = cross_folds(correct, tasks.complexity.to_numpy(), fitting, seed, folds)
    if not residuals or inner.count == 0 or not 0 < correct[scored].sum() < scored.sum():
        why = ("no residuals" if not residuals else inner.note
               or f"{int(correct[scored].sum())} of {int(scored.sum())} scored tasks correct")  # fmt: skip
        return {"auroc": np.nan, "layer": np.nan, "C": np.nan, "cv_auroc": np.nan, "note": why}
    fitted = []
    for layer, matrix in sorted(residuals.items()):
        score, choice = fit_and_score(np.asarray(matrix, dtype=np.float64), tasks, _scalar_model, seed, inner, c_grid)
        fitted.append((-round(choice.cv_auroc, TIE_DECIMALS), choice.c, layer, score, choice))
    _, c, layer, score, choice = min(fitted, key=lambda entry: entry[:3])
    return {"auroc": auroc(score[scored], correct[scored], "correct"), "layer": float(layer), "C": c,
            "cv_auroc": choice.cv_auroc, "note": inner.note}  # fmt: skip


def replicate_probes(
    residuals: Mapping[int, np.ndarray], tasks: pd.DataFrame, scored: np.ndarray, seed: int
) -> dict[str, float | str]:
    """The replicate's ``dense_probe_*`` and ``length_regressed_probe_*`` columns (PROBE_COLUMNS each): fitted on
    the tasks outside ``scored[tasks]`` (its validation split), scored on those in it."""
    fitting = ~scored
    length = tasks.prompt_tokens.to_numpy(np.float64)
    regressed = {layer: regress_out(np.asarray(m, dtype=np.float64), length, fitting) for layer, m in residuals.items()}
    plain = nested_probe(residuals, tasks, fitting, scored, seed)
    without_length = nested_probe(regressed, tasks, fitting, scored, seed)
    return {
        **{f"dense_probe_{k}": v for k, v in plain.items()},
        **{f"length_regressed_probe_{k}": v for k, v in without_length.items()},
    }
