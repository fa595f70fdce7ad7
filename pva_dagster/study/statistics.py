"""The study's hypothesis tests and intervals, each named in the tables it fills.

- Rates: 95 % Clopper-Pearson (exact binomial) intervals.
- Steering, target vs control on the *same* problems: an exact McNemar test (the one-sided exact sign test on the
  discordant pairs), with Fisher's exact test on the 2x2 counts beside it; Holm's step-down correction over a
  family of tests (statsmodels).
- Classification: percentile-bootstrap intervals of AUROC and F1 (problems resampled with replacement, seeded)
  and a permutation p-value for AUROC (scipy ``permutation_test``, labels permuted, seeded).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest, fisher_exact, permutation_test, rankdata
from statsmodels.stats.multitest import multipletests

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
PERMUTATIONS = 9999
PAIRED_TEST = "exact McNemar (one-sided sign test on discordant pairs), target > control"
FISHER_TEST = "Fisher exact on target vs pooled-control counts, one-sided greater"


def _check_count(successes: int, trials: int) -> None:
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials, got successes={successes}, trials={trials}")


def clopper_pearson(successes: int, trials: int) -> tuple[float, float]:
    """Two-sided 95 % Clopper-Pearson interval of ``successes / trials``; (nan, nan) with no trials."""
    _check_count(successes, trials)
    if trials == 0:
        return float("nan"), float("nan")
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    return float(interval.low), float(interval.high)


def paired_exact_test(target: np.ndarray, control: np.ndarray) -> dict[str, float | int]:
    """Exact McNemar test that the target succeeds on more problems than the control does, pairwise.

    ``target[n]`` / ``control[n]``: did the problem's outcome count as a success (e.g. corrected) under each, on
    the same ``n`` problems. Only the discordant pairs carry information: ``b`` problems where the target
    succeeded and the control did not, ``c`` the reverse. Under the null both are equally likely, so
    p = P(X >= b) for X ~ Binomial(b + c, 1/2); with no discordant pair p = 1.
    """
    target, control = np.asarray(target, dtype=bool), np.asarray(control, dtype=bool)
    if target.shape != control.shape or target.ndim != 1:
        raise ValueError(f"target and control must be 1-D of one length, got {target.shape} and {control.shape}")
    b, c = int((target & ~control).sum()), int((~target & control).sum())
    p = float(binomtest(b, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
    return {"discordant_target": b, "discordant_control": c, "p_paired": p}


def fisher_greater(successes: int, trials: int, control_successes: int, control_trials: int) -> float:
    """One-sided Fisher exact p-value that the target's success rate exceeds the control's (nan if either is empty)."""
    _check_count(successes, trials)
    _check_count(control_successes, control_trials)
    if trials == 0 or control_trials == 0:
        return float("nan")
    table = [[successes, trials - successes], [control_successes, control_trials - control_successes]]
    return float(fisher_exact(table, alternative="greater").pvalue)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values of one family (NaN entries stay NaN and do not count as tests)."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], method="holm")[1]
    return adjusted


def auroc_rows(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``scores[b, n]`` against ``positive[b, n]`` (Mann-Whitney U, ties averaged)."""
    ranks = rankdata(scores, axis=-1)
    n_pos = positive.sum(axis=-1)
    n_neg = positive.shape[-1] - n_pos
    u = (ranks * positive).sum(axis=-1) - n_pos * (n_pos + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _f1_rows(predicted: np.ndarray, positive: np.ndarray) -> np.ndarray:
    true_pos = (predicted & positive).sum(axis=-1)
    denominator = predicted.sum(axis=-1) + positive.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, 2 * true_pos / denominator, 0.0)  # sklearn's zero_division=0


def bootstrap_intervals(
    scores: np.ndarray, positive: np.ndarray, threshold: float, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, float]:
    """95 % percentile-bootstrap intervals of AUROC and of F1 at a fixed ``threshold`` (``scores > threshold``).

    Samples are resampled with replacement ``resamples`` times; a resample with one class only has no AUROC and
    is left out of that interval (``auroc_resamples`` says how many counted).
    """
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    if resamples < 1 or len(scores) == 0:
        raise ValueError(f"need resamples >= 1 and samples, got {resamples} resamples and {len(scores)} samples")
    index = np.random.default_rng(seed).integers(0, len(scores), size=(resamples, len(scores)))
    aurocs = auroc_rows(scores[index], positive[index])
    f1s = _f1_rows(scores[index] > threshold, positive[index])
    tail = (1 - CONFIDENCE) / 2 * 100
    counted = aurocs[np.isfinite(aurocs)]
    auroc_low, auroc_high = np.percentile(counted, [tail, 100 - tail]) if len(counted) else (np.nan, np.nan)
    f1_low, f1_high = np.percentile(f1s, [tail, 100 - tail])
    return {
        "auroc_ci_low": float(auroc_low), "auroc_ci_high": float(auroc_high),
        "f1_ci_low": float(f1_low), "f1_ci_high": float(f1_high), "auroc_resamples": len(counted),
    }


def auroc_permutation_p(
    scores: np.ndarray, positive: np.ndarray, seed: int, permutations: int = PERMUTATIONS
) -> float:
    """One-sided permutation p-value of AUROC > 0.5 (labels shuffled; scipy adds one to both counts)."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float("nan")

    def statistic(labels: np.ndarray, axis: int = -1) -> np.ndarray:
        return auroc_rows(np.broadcast_to(scores, labels.shape), labels.astype(bool))

    result = permutation_test(
        (positive,), statistic, permutation_type="pairings", vectorized=True, n_resamples=permutations,
        alternative="greater", random_state=seed,
    )
    return float(result.pvalue)
