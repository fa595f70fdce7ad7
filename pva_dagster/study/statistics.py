"""The study's hypothesis tests and intervals, each named in the tables it fills.

- Rates: 95 % Clopper-Pearson (exact binomial) intervals.
- Steering, target vs control on the *same* problems: an exact McNemar test (the one-sided exact sign test on the
  discordant pairs), with Fisher's exact test on the 2x2 counts beside it; Holm's step-down correction over a
  family of tests (statsmodels); a 95 % interval of the paired difference in rates by Newcombe's (1998) hybrid
  score method 10 (Wilson intervals of the two margins, combined with a correction for their correlation).
- Power: the exact power of that paired test, and the smallest target rate it detects with a given power, when
  target and control outcomes are independent per problem (binomial sums, scipy).
- Classification: percentile-bootstrap intervals of AUROC and F1 (problems resampled with replacement, seeded)
  and a permutation p-value for AUROC (scipy ``permutation_test``, labels permuted, seeded).
- Readout against readout: the AUROC difference of two scores of the same samples, with a paired percentile
  bootstrap interval (samples resampled once, both AUROCs computed on each resample) and DeLong's test.
- Random directions: a Monte-Carlo rank test p-value of an observed statistic against its draws under the null,
  (1 + draws at or above it) / (1 + draws).
- Replicates: p-values of one test repeated on overlapping re-drawn splits merged into one, twice their median,
  valid however they depend on each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.stats import binom, binomtest, fisher_exact, norm, permutation_test, rankdata
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
PERMUTATIONS = 9999
PAIRED_TEST = "exact McNemar (one-sided sign test on discordant pairs), target > control"
FISHER_TEST = "Fisher exact on target vs one control's counts, one-sided greater (unpaired: descriptive only)"
PAIRED_DIFFERENCE_INTERVAL = "Newcombe (1998) hybrid score interval for a paired difference (method 10)"
POWER_ASSUMPTION = (
    "exact power of the paired test at one-sided alpha 0.05 against the control with the highest rate (the claim"
    " must beat every control), target and control outcomes independent per problem; before the family's Holm"
    " adjustment, so the effect the family detects is somewhat larger"
)
PAIRED_AUROC_DIFFERENCE = (
    "AUROC difference on the same tasks: 95 % paired percentile bootstrap (tasks resampled once, both AUROCs on"
    " each resample) and DeLong's two-sided test"
)
RANK_TEST = (
    "Monte-Carlo rank test of the target against random directions of the same norm, one-sided, ties against the"
    " target"
)


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


def _paired_counts(target: np.ndarray, control: np.ndarray) -> tuple[int, int, int, int]:
    target, control = np.asarray(target, dtype=bool), np.asarray(control, dtype=bool)
    if target.shape != control.shape or target.ndim != 1:
        raise ValueError(f"target and control must be 1-D of one length, got {target.shape} and {control.shape}")
    both, neither = int((target & control).sum()), int((~target & ~control).sum())
    return both, int((target & ~control).sum()), int((~target & control).sum()), neither


def paired_exact_test(target: np.ndarray, control: np.ndarray) -> dict[str, float | int]:
    """Exact McNemar test that the target succeeds on more problems than the control does, pairwise.

    ``target[n]`` / ``control[n]``: did the problem's outcome count as a success (e.g. corrected) under each, on
    the same ``n`` problems. Only the discordant pairs carry information: ``b`` problems where the target
    succeeded and the control did not, ``c`` the reverse. Under the null both are equally likely, so
    p = P(X >= b) for X ~ Binomial(b + c, 1/2); with no discordant pair p = 1.
    """
    _, b, c, _ = _paired_counts(target, control)
    p = float(binomtest(b, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
    return {"discordant_target": b, "discordant_control": c, "p_paired": p}


def _margin_correlation(both: int, target_only: int, control_only: int, neither: int) -> float:
    """The phi correlation of the 2x2 table as method 10 corrects it for continuity: ad - bc shrunk by n/2 when
    positive (to 0 when it is at most n/2), kept as is when negative; 0 when a margin is empty (their product is 0).
    The R packages contingencytables (Fagerland, Lydersen & Laake 2017) and biostatUZH compute it so."""
    margins = (both + target_only) * (control_only + neither) * (both + control_only) * (target_only + neither)
    if margins == 0:
        return 0.0
    excess = both * neither - target_only * control_only
    n = both + target_only + control_only + neither
    corrected = excess - n / 2 if excess > n / 2 else min(excess, 0)
    return float(corrected / np.sqrt(float(margins)))


def paired_difference_interval(target: np.ndarray, control: np.ndarray) -> tuple[float, float]:
    """95 % interval of ``mean(target) - mean(control)`` on the same ``n`` problems: Newcombe's (1998) method 10.

    Why this one: the Wald interval of a paired difference leaves [-1, 1] and collapses to a point with no
    discordant pair; Newcombe's hybrid score interval does neither, is closed-form, and keeps coverage near 95 %
    at the small ``n`` the study runs (Newcombe 1998, Stat Med 17:2635). Each margin's rate gets its Wilson
    interval (l1, u1 for the target, l2, u2 for the control), and the distances from the estimates are combined
    as the sum of squares less twice their product times the (continuity-corrected) phi correlation of the table:
    ``D - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)`` and the mirror image for the upper limit.
    (nan, nan) with no problems.
    """
    table = _paired_counts(target, control)
    n = sum(table)
    if n == 0:
        return float("nan"), float("nan")
    both, target_only, control_only, _ = table
    p1, p2 = (both + target_only) / n, (both + control_only) / n
    (l1, l2), (u1, u2) = proportion_confint(
        np.array([both + target_only, both + control_only]), n, alpha=1 - CONFIDENCE, method="wilson"
    )
    phi = _margin_correlation(*table)
    low = p1 - p2 - np.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = p1 - p2 + np.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    return max(float(low), -1.0), min(float(high), 1.0)  # within [-1, 1] by construction, but for rounding


def _smallest_rejecting_b(n: int, alpha: float) -> np.ndarray:
    """Per number of discordant pairs d = 0..n, the smallest ``b`` at which :func:`paired_exact_test` rejects
    (``binom.sf(b - 1, d, 1/2) <= alpha``, as ``binomtest`` computes it); d + 1 where no ``b`` does."""
    d = np.arange(n + 1)
    b = np.minimum(binom.isf(alpha, d, 0.5) + 1, d + 1)  # a first guess, corrected by one where rounding misled it
    b = np.where((b >= 1) & (binom.sf(b - 2, d, 0.5) <= alpha), b - 1, b)
    b = np.where((b <= d) & (binom.sf(b - 1, d, 0.5) > alpha), b + 1, b)
    return np.where(d == 0, 1, b).astype(np.int64)  # no discordant pair: p = 1, no rejection


def _check_rate(name: str, rate: float) -> None:
    if not 0 <= rate <= 1:
        raise ValueError(f"{name} must lie in [0, 1], got {rate}")


def paired_test_power(n: int, target_rate: float, control_rate: float, alpha: float = 0.05) -> float:
    """Exact power of :func:`paired_exact_test` (reject when its one-sided p <= ``alpha``) on ``n`` problems.

    Why exact: with tens of problems the normal approximation of McNemar's power is poor, and the exact sum is
    cheap. Assumed: each problem's target and control outcomes are independent Bernoulli(``target_rate``) and
    Bernoulli(``control_rate``), so a problem is discordant for the target with pb = t (1 - c) and for the control
    with pc = c (1 - t). The discordant count D ~ Binomial(n, pb + pc) and, given D = d, b ~ Binomial(d, pb /
    (pb + pc)); the power is the sum over d of P(D = d) P(b >= smallest rejecting b given d).
    """
    _check_rate("target_rate", target_rate)
    _check_rate("control_rate", control_rate)
    if n < 0 or not 0 < alpha < 1:
        raise ValueError(f"need n >= 0 and 0 < alpha < 1, got n={n}, alpha={alpha}")
    return _power(_smallest_rejecting_b(n, alpha), target_rate, control_rate)


def _power(smallest_b: np.ndarray, target_rate: float, control_rate: float) -> float:
    n = len(smallest_b) - 1
    pb, pc = target_rate * (1 - control_rate), control_rate * (1 - target_rate)
    if pb + pc == 0:
        return 0.0  # never a discordant pair
    d = np.arange(n + 1)
    rejecting = binom.sf(smallest_b - 1, d, pb / (pb + pc))
    return float(np.sum(binom.pmf(d, n, pb + pc) * rejecting))


def minimum_detectable_rate(n: int, control_rate: float, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest target rate >= ``control_rate`` at which :func:`paired_test_power` reaches ``power``.

    Why it is well defined: the test rejects more as b grows and as c shrinks, and raising the target rate only
    turns a problem's target failure into a success (a concordant failure becomes a target-only problem, a
    control-only problem becomes concordant), so power does not fall as the target rate rises; the root of the
    (continuous) power minus ``power`` is found by Brent's method. nan where even a target rate of 1 falls short
    (always with n = 0). The assumption is :data:`POWER_ASSUMPTION`'s.
    """
    _check_rate("control_rate", control_rate)
    if n < 0 or not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"need n >= 0 and alpha, power in (0, 1), got n={n}, alpha={alpha}, power={power}")
    smallest_b = _smallest_rejecting_b(n, alpha)

    def shortfall(rate: float) -> float:
        return _power(smallest_b, rate, control_rate) - power

    if shortfall(1.0) < 0:
        return float("nan")
    if shortfall(control_rate) >= 0:
        return float(control_rate)
    return float(brentq(shortfall, control_rate, 1.0, xtol=1e-10))


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


def median_merged_p(p_values: Sequence[float]) -> float:
    """min(1, 2 x the median) of ``p_values``: one p-value from several of the same hypothesis, valid under any
    dependence between them.

    For K p-values and their k-th smallest p_(k), (K / k) p_(k) is a valid p-value under arbitrary dependence
    (Rüschendorf 1982; Vovk & Wang 2020, "Combining p-values via averaging", the quantile merging functions); with
    k = ceil(K / 2) the factor K / k is at most 2 and p_(k) is at most the median, so twice the median is at least
    that bound and valid too. The price is power: where every p-value is independent evidence, twice the median
    is far above what Fisher's combination would give."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0 or not ((p >= 0) & (p <= 1)).all():  # NaN fails the comparison
        raise ValueError(f"need p-values in [0, 1], got {p.tolist()}")
    return float(min(1.0, 2.0 * np.median(p)))


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


def bootstrap_index(n: int, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """``int[resamples, n]``: each row one bootstrap resample of ``n`` samples, drawn with replacement (seeded).

    Every bootstrap of validation samples draws its resamples here, so two statistics of the same samples under
    the same seed are computed on the same resamples (a paired bootstrap, and each readout's own interval)."""
    if resamples < 1 or n == 0:
        raise ValueError(f"need resamples >= 1 and samples, got {resamples} resamples and {n} samples")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_intervals(
    scores: np.ndarray, positive: np.ndarray, threshold: float, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, float]:
    """95 % percentile-bootstrap intervals of AUROC and of F1 at a fixed ``threshold`` (``scores > threshold``).

    Samples are resampled with replacement ``resamples`` times; a resample with one class only has no AUROC and
    is left out of that interval (``auroc_resamples`` says how many counted).
    """
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    index = bootstrap_index(len(scores), seed, resamples)
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


def delong_difference_p(scores: np.ndarray, reference: np.ndarray, positive: np.ndarray) -> float:
    """Two-sided p-value of DeLong, DeLong & Clarke-Pearson's (1988) test that ``scores[n]`` and ``reference[n]``
    have one AUROC for ``positive[n]``, on the same samples.

    Each score's AUROC is the mean of its structural components (per positive sample, the share of negatives it
    outranks, ties counted half; per negative, the share of positives that outrank it); the variance of the
    difference comes from their covariances across the two scores, so the correlation of two readouts of the same
    tasks is accounted for. nan with fewer than two samples of a class; 1 where the two scores' components agree
    exactly (no difference, no variance); nan where the difference has no variance but is not zero.
    """
    scores, reference = np.asarray(scores, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos < 2 or n_neg < 2 or not (np.isfinite(scores).all() and np.isfinite(reference).all()):
        return float("nan")
    both = np.stack([scores, reference])
    above, below = both[:, positive][:, :, None], both[:, ~positive][:, None, :]  # [2, n_pos, 1], [2, 1, n_neg]
    wins = (above > below) + 0.5 * (above == below)  # [2, n_pos, n_neg]
    per_positive, per_negative = wins.mean(axis=2), wins.mean(axis=1)
    covariance = np.cov(per_positive) / n_pos + np.cov(per_negative) / n_neg
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    difference = float(per_positive[0].mean() - per_positive[1].mean())
    if variance <= 1e-12:  # far below any real AUROC variance (about 1e-4 at a thousand samples)
        return 1.0 if abs(difference) <= 1e-12 else float("nan")
    return float(2 * norm.sf(abs(difference) / np.sqrt(variance)))


def paired_auroc_difference(
    scores: np.ndarray, reference: np.ndarray, positive: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, float | int | str]:
    """AUROC of ``scores[n]`` minus AUROC of ``reference[n]`` for ``positive[n]`` on the same samples:
    :data:`PAIRED_AUROC_DIFFERENCE`.

    The resamples are :func:`bootstrap_index`'s, so under one seed they are the ones each AUROC's own interval
    used; a resample with one class has neither AUROC and is left out (``resamples`` says how many counted).
    Where the difference is not defined (non-finite scores, one class) every number is nan and ``note`` says why.
    """
    scores, reference = np.asarray(scores, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if not scores.shape == reference.shape == positive.shape or scores.ndim != 1:
        raise ValueError(f"need 1-D arrays of one length, got {scores.shape}, {reference.shape}, {positive.shape}")
    undefined = {"difference": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_delong": np.nan, "resamples": 0}
    bad = int((~np.isfinite(scores) | ~np.isfinite(reference)).sum())
    if bad:
        return {**undefined, "note": f"{bad} of {len(scores)} tasks have a non-finite score"}
    if not 0 < positive.sum() < len(positive):
        return {**undefined, "note": f"{int(positive.sum())} of {len(positive)} positive: need both classes"}
    index = bootstrap_index(len(scores), seed, resamples)
    boot = auroc_rows(scores[index], positive[index]) - auroc_rows(reference[index], positive[index])
    boot = boot[np.isfinite(boot)]
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail]) if len(boot) else (np.nan, np.nan)
    point = auroc_rows(np.stack([scores, reference]), np.stack([positive, positive]))
    p = delong_difference_p(scores, reference, positive)
    note = "" if np.isfinite(p) else "no DeLong p: a class has one task, or the difference has no variance"
    return {"difference": float(point[0] - point[1]), "ci_low": float(low), "ci_high": float(high), "p_delong": p,
            "resamples": len(boot), "note": note}  # fmt: skip


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


def rank_p_value(observed: float, null_draws: Sequence[float]) -> float:
    """Monte-Carlo rank test p-value of ``observed`` against draws of its statistic under the null.

    p = (1 + #draws >= observed) / (1 + #draws): the observed value counts as one more draw, so under
    exchangeability P(p <= k / (1 + #draws)) <= k / (1 + #draws) exactly (Davison & Hinkley 1997, ch. 4), and a
    tie counts against the observed value, which keeps the test valid when the statistic is discrete.
    """
    draws = np.asarray(null_draws, dtype=np.float64)
    if draws.ndim != 1 or len(draws) == 0 or not np.isfinite(draws).all() or not np.isfinite(observed):
        raise ValueError(f"need finite draws (got {draws.size}) and a finite observed value (got {observed})")
    return float((1 + np.count_nonzero(draws >= observed)) / (1 + len(draws)))
