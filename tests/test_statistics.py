"""The study's tests and intervals against their definitions and the cases a referee would try."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import beta, binom, mannwhitneyu, multinomial, norm
from sklearn.metrics import f1_score, roc_auc_score

from pva_dagster.study.statistics import (
    CONFIDENCE,
    auroc_permutation_p,
    auroc_rows,
    bootstrap_intervals,
    clopper_pearson,
    fisher_greater,
    holm,
    minimum_detectable_rate,
    paired_difference_interval,
    paired_exact_test,
    paired_test_power,
    rank_p_value,
)


def test_one_success_against_none_in_300_is_not_significant():
    target = np.zeros(300, dtype=bool)
    target[17] = True
    control = np.zeros(300, dtype=bool)
    paired = paired_exact_test(target, control)
    assert (paired["discordant_target"], paired["discordant_control"]) == (1, 0)
    assert paired["p_paired"] == pytest.approx(0.5)
    assert fisher_greater(1, 300, 0, 300) == pytest.approx(0.5)


def test_a_planted_large_effect_is_significant_and_the_reverse_is_not():
    rng = np.random.default_rng(0)
    control = rng.random(100) < 0.05
    target = control | (rng.random(100) < 0.4)
    assert paired_exact_test(target, control)["p_paired"] < 1e-6
    assert fisher_greater(int(target.sum()), 100, int(control.sum()), 100) < 1e-6
    assert paired_exact_test(control, target)["p_paired"] > 0.99


def test_paired_test_reads_only_discordant_pairs():
    # 5 discordant for the target, none against: p = 0.5 ** 5, whatever the concordant pairs are.
    target = np.array([True] * 5 + [True] * 20 + [False] * 20)
    control = np.array([False] * 5 + [True] * 20 + [False] * 20)
    assert paired_exact_test(target, control)["p_paired"] == pytest.approx(0.5**5)
    assert paired_exact_test(np.ones(3, bool), np.ones(3, bool))["p_paired"] == 1.0
    with pytest.raises(ValueError, match="one length"):
        paired_exact_test(np.ones(3, bool), np.ones(4, bool))


def test_holm_is_monotone_at_least_raw_and_skips_nan():
    raw = np.array([0.01, 0.04, np.nan, 0.03, 0.2, 0.001])
    adjusted = holm(raw)
    finite = np.isfinite(raw)
    assert np.isnan(adjusted[2]) and np.isfinite(adjusted[finite]).all()
    assert (adjusted[finite] >= raw[finite]).all() and (adjusted[finite] <= 1).all()
    order = np.argsort(raw[finite])
    assert np.all(np.diff(adjusted[finite][order]) >= 0)
    # By hand, 5 tests: sorted 0.001, 0.01, 0.03, 0.04, 0.2 -> x5, x4, x3, x2, x1 with running max.
    assert adjusted[finite].tolist() == pytest.approx([0.04, 0.09, 0.09, 0.2, 0.005])


@pytest.mark.parametrize(("successes", "trials"), [(7, 20), (0, 12), (12, 12), (1, 300)])
def test_clopper_pearson_matches_its_beta_definition(successes, trials):
    low = beta.ppf(0.025, successes, trials - successes + 1) if successes else 0.0
    high = beta.ppf(0.975, successes + 1, trials - successes) if successes < trials else 1.0
    assert clopper_pearson(successes, trials) == pytest.approx((low, high), rel=1e-6)
    assert all(np.isnan(clopper_pearson(0, 0)))
    with pytest.raises(ValueError, match="successes"):
        clopper_pearson(5, 4)


def test_vectorised_auroc_equals_sklearn_with_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(5, 30)).astype(float)  # many ties, as SAE activations at 0 have
    positive = rng.random((5, 30)) < 0.4
    expected = [roc_auc_score(p, s) for s, p in zip(scores, positive, strict=True)]
    assert auroc_rows(scores, positive) == pytest.approx(expected)


def test_bootstrap_intervals_are_seeded_and_cover_the_estimate():
    rng = np.random.default_rng(2)
    positive = rng.random(60) < 0.5
    scores = rng.normal(size=60) + positive
    first = bootstrap_intervals(scores, positive, threshold=0.5, seed=7)
    assert first == bootstrap_intervals(scores, positive, threshold=0.5, seed=7)
    assert first != bootstrap_intervals(scores, positive, threshold=0.5, seed=8)
    assert first["auroc_ci_low"] < roc_auc_score(positive, scores) < first["auroc_ci_high"]
    assert first["f1_ci_low"] < f1_score(positive, scores > 0.5) < first["f1_ci_high"]
    assert first["auroc_resamples"] == 1000


def test_permutation_p_of_auroc_agrees_with_mann_whitney():
    rng = np.random.default_rng(3)
    positive = np.array([True] * 12 + [False] * 12)
    scores = rng.normal(size=24) + 0.8 * positive
    exact = mannwhitneyu(scores[positive], scores[~positive], alternative="greater", method="exact").pvalue
    assert auroc_permutation_p(scores, positive, seed=0) == pytest.approx(exact, abs=0.01)
    assert auroc_permutation_p(scores, positive, seed=0) == auroc_permutation_p(scores, positive, seed=0)
    assert np.isnan(auroc_permutation_p(scores, np.ones(24, bool), seed=0))


def _paired(both, target_only, control_only, neither):
    """Outcome arrays of a paired 2x2 table (problems in table order; the functions read only the counts)."""
    target = np.repeat([True, True, False, False], [both, target_only, control_only, neither])
    control = np.repeat([True, False, True, False], [both, target_only, control_only, neither])
    return target, control


def _wilson(successes, n, z):
    centre, spread = 2 * successes + z**2, z * math.sqrt(z**2 + 4 * successes * (n - successes) / n)
    return (centre - spread) / (2 * (n + z**2)), (centre + spread) / (2 * (n + z**2))


def _newcombe_by_hand(both, target_only, control_only, neither):
    # Method 10 written out from the closed forms, independently of statsmodels.
    n = both + target_only + control_only + neither
    z = norm.ppf(1 - (1 - CONFIDENCE) / 2)
    p1, p2 = (both + target_only) / n, (both + control_only) / n
    (l1, u1), (l2, u2) = _wilson(both + target_only, n, z), _wilson(both + control_only, n, z)
    product = (both + target_only) * (control_only + neither) * (both + control_only) * (target_only + neither)
    excess = both * neither - target_only * control_only
    corrected = max(excess - n / 2, 0) if excess > 0 else excess
    phi = corrected / math.sqrt(product) if product else 0.0
    low = p1 - p2 - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = p1 - p2 + math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    return low, high


@pytest.mark.parametrize(
    "table", [(59, 6, 16, 80), (12, 5, 1, 2), (0, 3, 0, 7), (4, 0, 0, 6), (0, 0, 0, 9), (10, 0, 0, 0), (2, 9, 1, 0)]
)
def test_paired_difference_interval_is_newcombes_method_10(table):
    assert paired_difference_interval(*_paired(*table)) == pytest.approx(_newcombe_by_hand(*table), abs=1e-12)


def test_paired_difference_interval_matches_contingencytables():
    # The R package contingencytables (companion to Fagerland, Lydersen & Laake 2017, ch. 8) asserts these in its
    # own tests, to four decimals: Cavo et al. (2012) table [[59, 6], [16, 80]], and [[1, 0], [0, 1]].
    assert paired_difference_interval(*_paired(59, 6, 16, 80)) == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    assert paired_difference_interval(*_paired(1, 0, 0, 1)) == pytest.approx((-0.5734, 0.5734), abs=5e-5)


def test_paired_difference_interval_covers_at_about_95_percent():
    # Correlated outcomes: P(both) = 0.35, target only 0.2, control only 0.1, neither 0.35; true difference 0.1.
    rng = np.random.default_rng(11)
    cells = np.array([0.35, 0.2, 0.1, 0.35])
    tables = rng.multinomial(30, cells, size=2000)
    true_difference = cells[1] - cells[2]
    intervals = [paired_difference_interval(*_paired(*table)) for table in tables]
    covered = [low <= true_difference <= high for low, high in intervals]
    assert 0.93 <= np.mean(covered) <= 0.985


def test_paired_difference_interval_holds_the_estimate_within_bounds_and_narrows_with_n():
    rng = np.random.default_rng(12)
    for table in rng.multinomial(25, [0.3, 0.3, 0.1, 0.3], size=200).tolist() + [[0, 25, 0, 0], [0, 0, 25, 0]]:
        low, high = paired_difference_interval(*_paired(*table))
        estimate = (table[1] - table[2]) / 25
        assert -1 <= low <= estimate <= high <= 1
    small = paired_difference_interval(*_paired(6, 4, 2, 8))
    large = paired_difference_interval(*_paired(60, 40, 20, 80))
    assert large[1] - large[0] < small[1] - small[0]
    assert all(np.isnan(paired_difference_interval(np.zeros(0, bool), np.zeros(0, bool))))
    with pytest.raises(ValueError, match="one length"):
        paired_difference_interval(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="one length"):
        paired_difference_interval(np.ones((2, 2), bool), np.ones((2, 2), bool))


def test_power_is_the_exact_sum_over_tables_of_paired_exact_test():
    # Every (b, c) of 12 problems, weighted by its multinomial probability, rejected or not by the test itself.
    n, target_rate, control_rate = 12, 0.6, 0.3
    pb, pc = target_rate * (1 - control_rate), control_rate * (1 - target_rate)
    expected = 0.0
    for b in range(n + 1):
        for c in range(n + 1 - b):
            target, control = _paired(0, b, c, n - b - c)
            if paired_exact_test(target, control)["p_paired"] <= 0.05:
                expected += multinomial.pmf([b, c, n - b - c], n, [pb, pc, 1 - pb - pc])
    assert paired_test_power(n, target_rate, control_rate) == pytest.approx(expected, rel=1e-9)


def test_power_agrees_with_a_simulation_of_the_paired_test():
    rng = np.random.default_rng(13)
    n, target_rate, control_rate, runs = 40, 0.5, 0.25, 4000
    targets, controls = rng.random((runs, n)) < target_rate, rng.random((runs, n)) < control_rate
    rejected = np.mean([paired_exact_test(t, c)["p_paired"] <= 0.05 for t, c in zip(targets, controls, strict=True)])
    power = paired_test_power(n, target_rate, control_rate)
    assert abs(rejected - power) < 4 * math.sqrt(power * (1 - power) / runs)


def test_power_rises_with_n_and_target_rate_and_stays_below_alpha_under_the_null():
    assert np.all(np.diff([paired_test_power(n, 0.4, 0.2) for n in (10, 30, 100, 300)]) > 0)
    for control_rate in (0.1, 0.5, 0.8):
        rates = np.linspace(control_rate, 1, 15)
        assert np.all(np.diff([paired_test_power(50, t, control_rate) for t in rates]) >= -1e-12)
    for rate in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert paired_test_power(30, rate, rate) <= 0.05
    assert paired_test_power(0, 0.9, 0.1) == 0.0
    with pytest.raises(ValueError, match="target_rate"):
        paired_test_power(10, 1.5, 0.1)


@pytest.mark.parametrize("n", [10, 30, 100])
def test_minimum_detectable_rate_with_a_silent_control_is_the_binomial_tail(n):
    # With control rate 0 every target success is a discordant pair for the target and none is against it,
    # so p = 0.5 ** b and the test rejects from b = ceil(log2(1 / alpha)) successes on.
    needed = math.ceil(math.log2(1 / 0.05))
    expected = brentq(lambda t: binom.sf(needed - 1, n, t) - 0.8, 1e-9, 1 - 1e-9, xtol=1e-12)
    assert minimum_detectable_rate(n, 0.0) == pytest.approx(expected, abs=1e-8)


def test_minimum_detectable_rate_is_where_power_is_reached_and_shrinks_with_n():
    rates = [minimum_detectable_rate(n, 0.2) for n in (20, 50, 200)]
    assert np.all(np.diff(rates) < 0) and all(0.2 < rate < 1 for rate in rates)
    assert paired_test_power(50, rates[1], 0.2) == pytest.approx(0.8, abs=1e-6)
    assert paired_test_power(50, rates[1] - 1e-3, 0.2) < 0.8
    assert np.isnan(minimum_detectable_rate(4, 0.0))  # at most 4 successes: p >= 1/16 > 0.05
    assert np.isnan(minimum_detectable_rate(0, 0.2))
    assert np.isnan(minimum_detectable_rate(10, 0.9))  # the target can beat the control on ~1 problem


def test_rank_p_value_counts_the_observed_as_a_draw_and_ties_against_it():
    assert rank_p_value(5.0, np.arange(19.0) / 10) == pytest.approx(1 / 20)
    assert rank_p_value(1.0, np.ones(19)) == 1.0
    assert rank_p_value(2.0, [1.0, 2.0, 3.0]) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="draws"):
        rank_p_value(1.0, [])


@pytest.mark.parametrize("discrete", [False, True])
def test_rank_p_value_is_valid_under_exchangeability(discrete):
    # Observed and 19 draws from one distribution: P(p <= 0.05) is 0.05 for continuous values, less with ties.
    rng = np.random.default_rng(14)
    runs = 20000
    values = rng.integers(0, 3, size=(runs, 20)).astype(float) if discrete else rng.normal(size=(runs, 20))
    rejected = np.mean([rank_p_value(row[0], row[1:]) <= 0.05 for row in values])
    assert rejected <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)
    if not discrete:
        assert rejected >= 0.05 - 3 * math.sqrt(0.05 * 0.95 / runs)
