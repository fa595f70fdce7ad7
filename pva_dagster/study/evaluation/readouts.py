"""Readouts of correctness: surface baselines, a dense and a sparse probe, and the best latent.

Every fitted readout has its hyperparameter (the inverse regularisation ``C`` of a logistic regression) chosen by
cross-validated AUROC over every non-validation problem (``sae`` and ``hyperparams``, :mod:`cross_fitting`), is
refitted at that C on all of them and scored on ``validation``; a non-validation task's score is its out-of-fold
score (from the fold's model that did not see it), so nothing downstream reads a score of a model fitted on that
task. :mod:`readout_metrics` then chooses its threshold on those out-of-fold scores and scores ``validation`` once.

Readouts, per task ``t``:

- surface baselines: ``prompt_length`` (tokens), ``complexity`` (the reference solution's cyclomatic complexity),
  each a one-feature logistic regression (it only orients the feature: AUROC is unchanged by scale),
  ``tfidf``, a logistic regression on TF-IDF word uni- and bigrams of the prompt text, and the combinations
  ``length_and_complexity`` (a logistic regression on both, standardised: the floor every readout is compared
  with, :mod:`surface_difference`) and ``length_complexity_tfidf`` (the two beside the TF-IDF features);
- per layer with stored residuals: ``dense_probe``, an L2 logistic regression on the standardised residual
  ``float[tasks, d_model]``; ``sparse_probe``, an L1 logistic regression on all standardised SAE latents
  ``float[tasks, d_sae]``; ``best_latent``, per direction the latent with the largest separation score
  (:func:`separation_scores`, ``s_correct`` or ``s_incorrect``) on ``sae``, its activation the score.

A fitted model's score is its decision function for "correct"; the "incorrect" direction's score is its negation.
A latent's score is its activation for the direction it was chosen for (higher = that direction's class), as in
:mod:`validation`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from pva_dagster.study.analysis.separation import separation_scores
from pva_dagster.study.domain import DIRECTIONS, HYPERPARAMS_SPLIT, SAE_SPLIT, SPLIT_NAMES, VALIDATION_SPLIT
from pva_dagster.study.evaluation.cross_fitting import Folds, Regularisation, choose_regularisation, cross_folds
from pva_dagster.study.evaluation.surface_difference import SURFACE_REFERENCE
from pva_dagster.study.evaluation.validation import auroc

TASK_COLUMNS: tuple[str, ...] = ("task_id", "split", "correct", "prompt_tokens", "complexity", "prompt_text")
SCORE_COLUMNS: tuple[str, ...] = (
    "readout", "kind", "layer", "direction", "latent", "C", "hyperparams_auroc", "task_id", "split", "correct",
    "score", "fold", "cv_auroc", "C_fold_agreement", "C_fold_best", "cv_note",
)
CURVE_COLUMNS: tuple[str, ...] = ("readout", "kind", "layer", "C", "mean_auroc", "sd_auroc", "folds", "chosen")
BASELINE, PROBE, LATENT = "baseline", "probe", "latent"
BEST_LATENT = "best_latent"
LENGTH_COMPLEXITY_TFIDF = "length_complexity_tfidf"
C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
MAX_ITER = 5000

ModelFactory = Callable[[float, int], Pipeline]  # (C, seed) -> an unfitted pipeline


def _scalar_model(c: float, seed: int) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, random_state=seed, max_iter=MAX_ITER))


def _tfidf_model(c: float, seed: int) -> Pipeline:
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        LogisticRegression(C=c, random_state=seed, max_iter=MAX_ITER),
    )


def _surface_and_text_model(c: float, seed: int) -> Pipeline:
    """On rows ``[prompt_tokens, complexity, prompt_text]``: the two numbers standardised beside the prompt's
    TF-IDF features (as :func:`_tfidf_model` makes them), one L2 logistic regression on all of them."""
    features = ColumnTransformer([
        ("surface", StandardScaler(), [0, 1]),
        ("text", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True), 2),
    ])
    return make_pipeline(features, LogisticRegression(C=c, random_state=seed, max_iter=MAX_ITER))


def _sparse_model(c: float, seed: int) -> Pipeline:
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=c, l1_ratio=1.0, solver="liblinear", random_state=seed, max_iter=MAX_ITER),
    )


def validate_tasks(tasks: pd.DataFrame) -> None:
    """Raise, naming what is wrong, unless ``tasks`` has the columns, known splits and both classes on each."""
    missing = [c for c in TASK_COLUMNS if c not in tasks.columns]
    if missing:
        raise ValueError(f"tasks lack columns {missing}; have {list(tasks.columns)}")
    unknown = sorted(set(tasks.split) - set(SPLIT_NAMES))
    if unknown:
        raise ValueError(f"unknown splits {unknown}; choose from {SPLIT_NAMES}")
    for split in SPLIT_NAMES:
        correct = tasks.correct[tasks.split == split].to_numpy(bool)
        if not 0 < correct.sum() < len(correct):
            raise ValueError(f"split {split!r} has {correct.sum()} correct of {len(correct)}: need both classes")


def fitting_folds(tasks: pd.DataFrame, seed: int) -> Folds:
    """The cross-fitting folds of ``tasks``' non-validation rows, by label and difficulty (:func:`cross_folds`)."""
    return cross_folds(
        tasks.correct.to_numpy(bool), tasks.complexity.to_numpy(), (tasks.split != VALIDATION_SPLIT).to_numpy(), seed
    )


def fit_and_score(
    features: np.ndarray | Sequence[str], tasks: pd.DataFrame, factory: ModelFactory, seed: int, folds: Folds,
    c_grid: Sequence[float] = C_GRID,
) -> tuple[np.ndarray, Regularisation]:
    """``(score[tasks], the choice of C)``: C by cross-validated AUROC over ``folds`` (ties to the smallest C, the
    most regularised), the model refitted at it on every task in a fold and scored on the rest (``validation``);
    a task in a fold gets its out-of-fold score. Score = decision function for "correct"."""
    correct = tasks.correct.to_numpy(bool)
    rows = np.asarray(features, dtype=object) if not isinstance(features, np.ndarray) else features

    def fit_score(c: float, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        model = factory(c, seed).fit(rows[train], correct[train])
        return np.asarray(model.decision_function(rows[test]), dtype=np.float64)

    choice, out_of_fold = choose_regularisation(fit_score, correct, folds, c_grid)
    fitting = folds.fold >= 0
    score = np.where(fitting, out_of_fold, np.nan)
    score[~fitting] = fit_score(choice.c, fitting, ~fitting)
    return score, choice


def _frame(tasks: pd.DataFrame, score: np.ndarray, folds: Folds, **readout: object) -> pd.DataFrame:
    """One readout's rows for one direction: ``readout`` (readout, kind, layer, direction, latent, C,
    hyperparams_auroc and the cross-validation columns) repeated beside each task's id, split, label, ``score``
    and fold."""
    return pd.DataFrame({
        **readout, "task_id": tasks.task_id.to_numpy(), "split": tasks.split.to_numpy(),
        "correct": tasks.correct.to_numpy(bool), "score": score, "fold": folds.fold,
    })


def _hyperparams_auroc(tasks: pd.DataFrame, score: np.ndarray, direction: str) -> float:
    """AUROC on the ``hyperparams`` tasks (out-of-fold for a fitted readout), comparable with earlier runs."""
    hyper = (tasks.split == HYPERPARAMS_SPLIT).to_numpy()
    return auroc(score[hyper], tasks.correct.to_numpy(bool)[hyper], direction)


def _rows(
    tasks: pd.DataFrame, readout: str, kind: str, layer: float, score: np.ndarray, choice: Regularisation,
    folds: Folds,
) -> list[pd.DataFrame]:
    """The long score rows of one fitted readout, for each direction: the "incorrect" score is negated, so its
    AUROC for the incorrect class equals the "correct" score's for the correct class."""
    return [
        _frame(tasks, score if direction == "correct" else -score, folds, readout=readout, kind=kind, layer=layer,
               direction=direction, latent=-1, C=choice.c, hyperparams_auroc=_hyperparams_auroc(tasks, score,
                                                                                                 "correct"),
               cv_auroc=choice.cv_auroc, C_fold_agreement=choice.fold_agreement,
               C_fold_best=" ".join(f"{c:g}" for c in choice.fold_best), cv_note=choice.note)
        for direction in DIRECTIONS
    ]


def _curve(readout: str, kind: str, layer: float, choice: Regularisation) -> pd.DataFrame:
    """The cross-validation curve of one fitted readout: mean and spread of the held-out AUROC per C."""
    return pd.DataFrame(
        [(readout, kind, layer, c, mean, sd, len(choice.fold_best), c == choice.c) for c, mean, sd in choice.curve],
        columns=list(CURVE_COLUMNS),
    )


def best_latent_scores(
    latents: np.ndarray, tasks: pd.DataFrame, layer: int, chosen: Mapping[tuple[int, str], int] | None = None,
    folds: Folds | None = None,
) -> list[pd.DataFrame]:
    """Per direction, the rows of one latent of ``latents[tasks, d_sae]``, its activation as the score: the one
    ``chosen[(layer, direction)]`` names (e.g. Phase 2's rank-1), else the one with the largest separation score
    on ``sae`` (ties to the lowest index). Nothing is fitted: ``cv_auroc`` is the activation's mean AUROC over
    ``folds`` (default: :func:`fitting_folds` with seed 0)."""
    folds = folds if folds is not None else fitting_folds(tasks, 0)
    sae = (tasks.split == SAE_SPLIT).to_numpy()
    correct = tasks.correct.to_numpy(bool)
    separation = separation_scores(latents[sae], correct[sae], layer)
    frames = []
    for direction in DIRECTIONS:
        latent = (chosen or {}).get((layer, direction), int(np.argmax(separation[f"s_{direction}"].to_numpy())))
        if not 0 <= latent < latents.shape[1]:
            raise ValueError(f"layer {layer} {direction}: latent {latent} outside 0..{latents.shape[1] - 1}")
        activation = np.asarray(latents[:, latent], dtype=np.float64)
        per_fold = [auroc(activation[folds.fold == k], correct[folds.fold == k], direction) for k in range(folds.count)]
        frames.append(_frame(
            tasks, activation, folds, readout=BEST_LATENT, kind=LATENT, layer=float(layer), direction=direction,
            latent=latent, C=np.nan, hyperparams_auroc=_hyperparams_auroc(tasks, activation, direction),
            cv_auroc=float(np.mean(per_fold)) if per_fold else np.nan, C_fold_agreement=np.nan, C_fold_best="",
            cv_note=folds.note,
        ))
    return frames


def readout_scores_and_curves(
    tasks: pd.DataFrame,
    residuals: Mapping[int, np.ndarray],
    latents: Mapping[int, np.ndarray],
    seed: int,
    c_grid: Sequence[float] = C_GRID,
    chosen_latents: Mapping[tuple[int, str], int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every readout's score for every task and direction, in long form (SCORE_COLUMNS), and each fitted
    readout's cross-validation curve (CURVE_COLUMNS).

    ``tasks``: one row a task, TASK_COLUMNS; ``residuals[layer]``: ``float[tasks, d_model]`` and
    ``latents[layer]``: ``float[tasks, d_sae]``, rows in ``tasks``' order; ``chosen_latents``:
    ``(layer, direction) -> latent`` for ``best_latent`` (default: :func:`best_latent_scores`' own pick).
    ``layer`` is NaN for the surface baselines, ``latent`` -1 except for ``best_latent``, ``C`` NaN for it.
    One set of folds (:func:`fitting_folds`) serves every readout, so their choices are comparable.
    """
    validate_tasks(tasks)
    folds = fitting_folds(tasks, seed)
    frames: list[pd.DataFrame] = []
    curves: list[pd.DataFrame] = []
    surface: list[tuple[str, np.ndarray | Sequence[str], ModelFactory]] = [
        ("prompt_length", tasks[["prompt_tokens"]].to_numpy(np.float64), _scalar_model),
        ("complexity", tasks[["complexity"]].to_numpy(np.float64), _scalar_model),
        ("tfidf", tasks.prompt_text.astype(str).tolist(), _tfidf_model),
        (SURFACE_REFERENCE, tasks[["prompt_tokens", "complexity"]].to_numpy(np.float64), _scalar_model),
        (LENGTH_COMPLEXITY_TFIDF, _surface_and_text_rows(tasks), _surface_and_text_model),
    ]

    def fit(name: str, kind: str, layer: float, features: np.ndarray | Sequence[str], factory: ModelFactory) -> None:
        score, choice = fit_and_score(features, tasks, factory, seed, folds, c_grid)
        frames.extend(_rows(tasks, name, kind, layer, score, choice, folds))
        curves.append(_curve(name, kind, layer, choice))

    for name, features, factory in surface:
        fit(name, BASELINE, np.nan, features, factory)
    for layer in sorted(set(residuals) | set(latents)):
        for name, matrices, factory in (("dense_probe", residuals, _scalar_model),
                                        ("sparse_probe", latents, _sparse_model)):
            if layer in matrices:
                fit(name, PROBE, float(layer), _checked(matrices[layer], len(tasks), f"{name} layer {layer}"), factory)
        if layer in latents:
            matrix = _checked(latents[layer], len(tasks), f"latents layer {layer}")
            frames += best_latent_scores(matrix, tasks, layer, chosen_latents, folds)
    return pd.concat(frames, ignore_index=True)[list(SCORE_COLUMNS)], pd.concat(curves, ignore_index=True)


def _surface_and_text_rows(tasks: pd.DataFrame) -> np.ndarray:
    """``object[tasks, 3]``: prompt length and complexity as floats, then the prompt text, the rows
    :func:`_surface_and_text_model` reads."""
    rows = np.empty((len(tasks), 3), dtype=object)
    rows[:, 0] = tasks.prompt_tokens.to_numpy(np.float64)
    rows[:, 1] = tasks.complexity.to_numpy(np.float64)
    rows[:, 2] = tasks.prompt_text.astype(str).to_numpy()
    return rows


def _checked(matrix: np.ndarray, n_tasks: int, what: str) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != n_tasks:
        raise ValueError(f"{what}: need a [{n_tasks} tasks, features] matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():  # a model or SAE that overflowed: no readout of it means anything
        raise ValueError(f"{what}: {int((~np.isfinite(matrix)).any(axis=1).sum())} tasks have non-finite values")
    return matrix
