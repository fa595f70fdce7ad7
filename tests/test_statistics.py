"""The study's tests and intervals against their definitions and the cases a referee would try."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta, mannwhitneyu
from sklearn.metrics import f1_score, roc_auc_score

from pva_dagster.study.statistics import (
    auroc_permutation_p,
    auroc_rows,
    bootstrap_intervals,
    clopper_pearson,
    fisher_greater,
    holm,
    paired_exact_test,
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
