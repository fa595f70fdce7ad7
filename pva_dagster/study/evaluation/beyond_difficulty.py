"""Beyond difficulty: what a readout says about correctness once prompt length and complexity are known.

A readout that only tracks "this problem is hard" looks like a correctness detector. Two checks, on the
``validation`` split with the readout frozen (fitted on ``sae``, chosen on ``hyperparams``):

- :data:`LRT_TEST`: a logistic model of the direction's class on standardised prompt length and reference-solution
  cyclomatic complexity, against the same model plus the standardised readout score; ``2 (llf1 - llf0)`` is
  referred to chi-squared with 1 degree of freedom. Beside it the score's odds ratio per standard deviation
  with its 95 % Wald interval. Under separation (a score that splits the classes, likely on a small split) the
  maximum-likelihood estimate does not exist; Firth's penalised likelihood (``firthmodels``) then gives the
  statistic and a profile-likelihood interval: of the methods that exist there it is the one with a likelihood
  ratio test and an interval from the same fit, it reduces to maximum likelihood's answer as samples grow, and
  the table's ``lrt_method`` says which fit each row used.
- :data:`STRATIFIED_AUROC`: AUROC counted over pairs of one positive and one negative task *of the same difficulty
  bucket* (:data:`DIFFICULTY_BUCKETS`), i.e. the per-bucket AUROCs averaged with weights ``n_pos * n_neg``; a
  bucket with one class only has no pairs. Its 95 % percentile-bootstrap interval resamples tasks within
  buckets (seeded).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from firthmodels import FirthLogisticRegression, detect_separation
from scipy.stats import chi2
from sklearn.exceptions import ConvergenceWarning
from statsmodels.tools.sm_exceptions import PerfectSeparationError, PerfectSeparationWarning

from pva_dagster.study.domain import VALIDATION_SPLIT
from pva_dagster.study.evaluation.readout_metrics import READOUT_KEY
from pva_dagster.study.evaluation.readouts import BASELINE
from pva_dagster.study.evaluation.validation import positive_class
from pva_dagster.study.problems.difficulty import difficulty_bucket
from pva_dagster.study.statistics import BOOTSTRAP_RESAMPLES, CONFIDENCE, auroc_rows

LRT_TEST = "likelihood-ratio test, chi2 1 df"  # logistic: length + complexity, against the same + readout score
STRATIFIED_AUROC = "AUROC within difficulty buckets"  # pooled over within-bucket pairs
MAXIMUM_LIKELIHOOD = "maximum likelihood"
FIRTH = "Firth penalised likelihood"  # where separation leaves maximum likelihood without an estimate
NOT_ESTIMABLE = "not estimable"
CONSTANT_SCORE = "none: the score adds no dimension"
BEYOND_COLUMNS: tuple[str, ...] = (
    *READOUT_KEY, "latent", "test", "lr_stat", "lr_df", "p_lrt", "odds_ratio_per_sd", "odds_ratio_ci_low",
    "odds_ratio_ci_high", "lrt_method", "lrt_note", "stratified_auroc", "stratified_auroc_ci_low",
    "stratified_auroc_ci_high", "strata", "n",
)


def _independent(columns: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """The columns centred and scaled, each kept only if it adds a dimension beside the intercept and the columns
    kept before it (a constant column, or complexity that equals length up to scale, can explain nothing the
    model does not already hold), and the indices of those kept. Without an intercept column."""
    n = len(columns[0])
    kept: list[np.ndarray] = []
    indices: list[int] = []
    for index, column in enumerate(np.asarray(c, dtype=np.float64) for c in columns):
        spread = column.std()
        if spread == 0:
            continue
        candidate = (column - column.mean()) / spread
        trial = np.column_stack([np.ones(n), *kept, candidate])
        if np.linalg.matrix_rank(trial) == trial.shape[1]:
            kept.append(candidate)
            indices.append(index)
    return (np.column_stack(kept) if kept else np.empty((n, 0))), indices


def _not_estimable(reason: str) -> dict[str, float | str]:
    return {"lr_stat": np.nan, "lr_df": 1, "p_lrt": np.nan, "odds_ratio_per_sd": np.nan, "odds_ratio_ci_low": np.nan,
            "odds_ratio_ci_high": np.nan, "lrt_method": NOT_ESTIMABLE, "lrt_note": reason}  # fmt: skip


def _why_not_estimable(positive: np.ndarray, covariates: np.ndarray) -> str | None:
    """Why no logistic model of ``positive[n]`` on ``covariates[n, k]`` can be fitted at all, or None."""
    if len(positive) != len(covariates):
        return f"{len(positive)} labels but {len(covariates)} rows of covariates"
    bad = int((~np.isfinite(covariates)).any(axis=1).sum())
    if bad:
        return f"{bad} of {len(positive)} tasks have a non-finite length, complexity or score"
    n_pos = int(positive.sum())
    if n_pos in (0, len(positive)):
        return f"one class only ({n_pos} of {len(positive)} positive)"
    if len(positive) <= covariates.shape[1] + 1:
        return f"{len(positive)} tasks for {covariates.shape[1] + 1} coefficients"
    return None


def _maximum_likelihood(positive: np.ndarray, base: np.ndarray, full: np.ndarray) -> dict[str, float | str]:
    """The ordinary LRT and Wald interval; raises where the maximum-likelihood fit does not exist."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)  # quasi-separation the linear program missed
        null_fit = sm.Logit(positive, sm.add_constant(base, has_constant="add")).fit(disp=0, maxiter=200)
        full_fit = sm.Logit(positive, sm.add_constant(full, has_constant="add")).fit(disp=0, maxiter=200)
    if not (null_fit.mle_retvals["converged"] and full_fit.mle_retvals["converged"]):
        raise np.linalg.LinAlgError("maximum likelihood did not converge")
    lr_stat = max(2.0 * float(full_fit.llf - null_fit.llf), 0.0)
    low, high = np.asarray(full_fit.conf_int(alpha=1 - CONFIDENCE))[-1]
    return {"lr_stat": lr_stat, "coef": float(full_fit.params[-1]), "ci_low": float(low), "ci_high": float(high),
            "lrt_method": MAXIMUM_LIKELIHOOD}  # fmt: skip


def _firth(positive: np.ndarray, full: np.ndarray) -> dict[str, float | str]:
    """Firth's penalised-likelihood ratio test of the last column, with its profile penalised-likelihood
    interval (Heinze & Schemper 2002): finite under separation, where maximum likelihood has no estimate."""
    last = full.shape[1] - 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # non-convergence is read from the fit and the warnings, below
        model = FirthLogisticRegression(max_iter=200).fit(full, positive.astype(int))
        model.lrt(last)
        fit_warnings = len(caught)
        low, high = model.conf_int(alpha=1 - CONFIDENCE, method="pl", features=last)[last]
    # A profile bound whose search did not converge lies further out than where it stopped: the interval is
    # reported open on that side rather than falsely closed.
    unconverged = " ".join(str(w.message) for w in caught[fit_warnings:] if issubclass(w.category, ConvergenceWarning))
    if unconverged:
        low = -np.inf if "upper" not in unconverged or "lower" in unconverged else low
        high = np.inf if "lower" not in unconverged or "upper" in unconverged else high
    p = float(model.lrt_pvalues_[last])
    if not (model.converged_ and np.isfinite(p)):
        raise np.linalg.LinAlgError("Firth's penalised likelihood did not converge")
    return {"lr_stat": float(chi2.isf(p, 1)), "coef": float(model.coef_[last]), "ci_low": float(low),
            "ci_high": float(high), "lrt_method": FIRTH}  # fmt: skip


def likelihood_ratio_test(
    positive: np.ndarray, prompt_tokens: np.ndarray, complexity: np.ndarray, score: np.ndarray
) -> dict[str, float | str]:
    """:data:`LRT_TEST` of ``score[n]`` added to length and complexity, for the class ``positive[n]``.

    Maximum likelihood where its estimate exists. Under complete or quasi-complete separation (detected by
    Konis's linear program) it does not, and Firth's penalised likelihood takes its place: the penalised-likelihood
    ratio statistic is referred to the same chi-squared, and the odds ratio's interval is the profile penalised
    likelihood's. ``lrt_method`` names which; ``lrt_note`` says why. A score constant over the tasks (a latent
    that never fires there) adds no dimension to the model, so there is nothing to test: statistic 0, p = 1.
    Data on which no logistic model can be fitted (one class, non-finite values, fewer tasks than coefficients)
    give NaN and the reason, never an exception."""
    positive = np.asarray(positive, dtype=np.float64)
    columns = [np.asarray(c, dtype=np.float64) for c in (prompt_tokens, complexity, score)]
    if len({len(c) for c in columns}) != 1:
        return _not_estimable(f"covariates of lengths {[len(c) for c in columns]}")
    reason = _why_not_estimable(positive.astype(bool), np.column_stack(columns))
    if reason:
        return _not_estimable(reason)
    full, kept = _independent(columns)
    if kept[-1:] != [2]:  # a score constant over the tasks, or a linear function of length and complexity
        return {"lr_stat": 0.0, "lr_df": 1, "p_lrt": 1.0, "odds_ratio_per_sd": np.nan, "odds_ratio_ci_low": np.nan,
                "odds_ratio_ci_high": np.nan, "lrt_method": CONSTANT_SCORE,
                "lrt_note": "the score is constant or a linear function of length and complexity"}  # fmt: skip
    base = full[:, :-1]
    try:
        separated = bool(detect_separation(full, positive).separation)
    except (np.linalg.LinAlgError, ValueError) as error:  # the linear program could not be set up
        return _not_estimable(f"separation could not be checked: {error}")
    note = "separation: maximum likelihood has no estimate" if separated else ""
    fit: dict[str, float | str] | None = None
    if not separated:
        try:
            fit = _maximum_likelihood(positive, base, full)
        except (np.linalg.LinAlgError, PerfectSeparationWarning, PerfectSeparationError) as error:
            note = f"maximum likelihood failed ({error})"
    try:
        fit = fit or _firth(positive, full)
    except np.linalg.LinAlgError as error:
        return _not_estimable(f"{note}; {error}")
    lr_stat = float(fit["lr_stat"])
    return {
        "lr_stat": lr_stat, "lr_df": 1, "p_lrt": float(chi2.sf(lr_stat, 1)),
        "odds_ratio_per_sd": float(np.exp(fit["coef"])),
        "odds_ratio_ci_low": float(np.exp(fit["ci_low"])), "odds_ratio_ci_high": float(np.exp(fit["ci_high"])),
        "lrt_method": fit["lrt_method"], "lrt_note": note,
    }


def _pooled_auroc(scores: np.ndarray, positive: np.ndarray, strata: list[np.ndarray]) -> np.ndarray:
    """Within-stratum pooled AUROC of each row of ``scores[b, n]`` / ``positive[b, n]``; ``strata``: column
    indices of each stratum. NaN where no stratum has both classes."""
    pairs = np.zeros(scores.shape[0])
    wins = np.zeros(scores.shape[0])
    for columns in strata:
        pos = positive[:, columns]
        weight = pos.sum(axis=1) * (~pos).sum(axis=1)
        area = auroc_rows(scores[:, columns], pos)
        wins += np.where(weight > 0, np.nan_to_num(area) * weight, 0.0)
        pairs += weight
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def stratified_auroc(
    scores: np.ndarray, positive: np.ndarray, strata: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, float | int]:
    """:data:`STRATIFIED_AUROC` of ``scores[n]`` for ``positive[n]`` over the labels ``strata[n]``, with its
    bootstrap interval (tasks resampled with replacement within each stratum)."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    labels = np.asarray(strata)
    if len(scores) == 0 or not np.isfinite(scores).all():
        return {"stratified_auroc": np.nan, "stratified_auroc_ci_low": np.nan, "stratified_auroc_ci_high": np.nan,
                "strata": 0}  # fmt: skip
    groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    positions = [np.arange(len(g)) + sum(len(h) for h in groups[:i]) for i, g in enumerate(groups)]
    point = float(_pooled_auroc(scores[None, :], positive[None, :], groups)[0])
    rng = np.random.default_rng(seed)
    index = np.concatenate([g[rng.integers(0, len(g), size=(resamples, len(g)))] for g in groups], axis=1)
    boot = _pooled_auroc(scores[index], positive[index], positions)
    boot = boot[np.isfinite(boot)]
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail]) if len(boot) else (np.nan, np.nan)
    informative = sum(0 < positive[g].sum() < len(g) for g in groups)
    return {"stratified_auroc": point, "stratified_auroc_ci_low": float(low),
            "stratified_auroc_ci_high": float(high), "strata": int(informative)}


def beyond_difficulty_table(
    scores: pd.DataFrame, tasks: pd.DataFrame, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> pd.DataFrame:
    """BEYOND_COLUMNS for every probe and latent of ``readout_scores_and_curves``' frame, on ``validation``; ``tasks``
    supplies ``prompt_tokens`` and ``complexity`` by ``task_id``."""
    covariates = tasks.set_index("task_id")[["prompt_tokens", "complexity"]]
    readouts = scores[(scores.kind != BASELINE) & (scores.split == VALIDATION_SPLIT)]
    rows = []
    for key, group in readouts.groupby(list(READOUT_KEY), dropna=False, sort=False):
        direction = str(key[3])
        known = covariates.loc[group.task_id]
        positive = positive_class(group.correct.to_numpy(bool), direction)
        score = group.score.to_numpy(np.float64)
        buckets = np.array([difficulty_bucket(int(c)) for c in known.complexity])
        rows.append({
            **dict(zip(READOUT_KEY, key, strict=True)), "latent": int(group.latent.iloc[0]), "test": LRT_TEST,
            **likelihood_ratio_test(positive, known.prompt_tokens.to_numpy(), known.complexity.to_numpy(), score),
            **stratified_auroc(score, positive, buckets, seed, resamples), "n": len(group),
        })
    return pd.DataFrame(rows, columns=list(BEYOND_COLUMNS))


def beyond_difficulty_sentences(reported: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """One sentence per direction for the ``reported`` rows of :func:`beyond_difficulty_table` (one a direction,
    e.g. the rank-1 latents): does the readout add anything beyond length and complexity? A test that does not
    reject says "nothing detectable at this power" beside the estimate and its interval (the odds ratio per SD
    and the within-bucket AUROC), never that the readout adds nothing: the interval says what this split cannot
    rule out."""
    if reported.direction.duplicated().any():
        raise ValueError(f"one reported row per direction, got directions {reported.direction.tolist()}")
    sentences = []
    for row in reported.itertuples():
        where = f"{row.readout}" + ("" if pd.isna(row.layer) else f" at layer {int(row.layer)}") + (
            f" (latent {row.latent})" if row.latent >= 0 else ""
        )
        if row.lrt_method == NOT_ESTIMABLE:
            sentences.append(f"{row.direction}: the {where}: {LRT_TEST} not estimable ({row.lrt_note}).")
            continue
        stratified = (f"{STRATIFIED_AUROC} {row.stratified_auroc:.3f} "
                      f"[{row.stratified_auroc_ci_low:.3f}, {row.stratified_auroc_ci_high:.3f}]")
        if row.lrt_method == CONSTANT_SCORE:
            sentences.append(f"{row.direction}: the {where}: nothing to test beyond prompt length and complexity, "
                             f"{row.lrt_note} ({stratified}).")
            continue
        claim = (f"the {where} adds signal beyond prompt length and complexity" if row.p_lrt < alpha else
                 f"the {where}: nothing detectable beyond prompt length and complexity at this power")
        fitted = f", {row.lrt_method}: {row.lrt_note}" if row.lrt_note else f", {row.lrt_method}"
        sentences.append(
            f"{row.direction}: {claim} "
            f"({LRT_TEST}{fitted}: chi2 = {row.lr_stat:.2f}, p = {row.p_lrt:.3g}; odds ratio per SD "
            f"{row.odds_ratio_per_sd:.2f}, 95 % interval [{row.odds_ratio_ci_low:.2f}, {row.odds_ratio_ci_high:.2f}]; "
            f"{stratified})."
        )
    return sentences
