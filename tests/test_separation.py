"""Separation scores and latent ranking on synthetic SAE activations with known, planted structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pva_dagster.study.analysis.separation import (
    SCORE_COLUMNS,
    best_latents,
    general_frequency,
    rank_latents,
    separation_scores,
)

N, D_SAE = 300, 64
CORRECT_LATENT, INCORRECT_LATENT = 7, 11  # planted in layer 5


def sparse_latents(rng: np.random.Generator, n: int = N, d: int = D_SAE, density: float = 0.1) -> np.ndarray:
    """Non-negative float32 activations, each entry active with probability ``density``."""
    active = rng.random((n, d)) < density
    return np.where(active, rng.exponential(2.0, (n, d)), 0.0).astype(np.float32)


@pytest.fixture
def study() -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Two layers of latents over the same samples; layer 5 has one latent per direction planted."""
    rng = np.random.default_rng(0)
    correct = rng.random(N) < 0.4
    layers = {2: sparse_latents(rng), 5: sparse_latents(rng)}
    planted = layers[5]
    # Fires on 90 % of correct and 5 % of incorrect samples (and the reverse for the other one).
    planted[:, CORRECT_LATENT] = np.where(rng.random(N) < np.where(correct, 0.9, 0.05), 3.0, 0.0)
    planted[:, INCORRECT_LATENT] = np.where(rng.random(N) < np.where(correct, 0.05, 0.9), 3.0, 0.0)
    return layers, correct


def all_scores(layers: dict[int, np.ndarray], correct: np.ndarray) -> pd.DataFrame:
    return pd.concat([separation_scores(x, correct, layer) for layer, x in layers.items()], ignore_index=True)


def quiet_general_freq(layers: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    return {layer: np.zeros(x.shape[1]) for layer, x in layers.items()}


def test_columns_and_scores_are_bounded_and_opposite(study):
    layers, correct = study
    scores = all_scores(layers, correct)
    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert len(scores) == 2 * D_SAE
    assert scores.s_correct.between(-1, 1).all()
    np.testing.assert_array_equal(scores.s_incorrect, -scores.s_correct)
    assert (scores.n_correct == correct.sum()).all() and (scores.n_incorrect == (~correct).sum()).all()


def test_frequencies_and_means_match_a_plain_recount(study):
    layers, correct = study
    x = layers[5]
    scores = separation_scores(x, correct, 5)
    for latent in range(D_SAE):
        column = x[:, latent]
        row = scores.iloc[latent]
        assert row.latent == latent and row.layer == 5
        assert row.f_correct == pytest.approx(np.mean(column[correct] > 0), abs=1e-12)
        assert row.f_incorrect == pytest.approx(np.mean(column[~correct] > 0), abs=1e-12)
        assert row.mean_correct == pytest.approx(float(np.mean(column[correct], dtype=np.float64)), rel=1e-9)
        assert row.mean_incorrect == pytest.approx(float(np.mean(column[~correct], dtype=np.float64)), rel=1e-9)


def test_t_stat_matches_scipy_welch(study):
    layers, correct = study
    x = layers[5]
    scores = separation_scores(x, correct, 5)
    for latent in (0, 3, CORRECT_LATENT, INCORRECT_LATENT, 40):
        expected = stats.ttest_ind(
            x[correct, latent].astype(np.float64), x[~correct, latent].astype(np.float64), equal_var=False
        ).statistic
        assert scores.t_stat[latent] == pytest.approx(expected, rel=1e-9)
    assert scores.t_stat[CORRECT_LATENT] > 10 and scores.t_stat[INCORRECT_LATENT] < -10


def test_zero_variance_rule_for_the_t_stat():
    # Latent 0 never fires (both variances 0, equal means): t = 0. Latent 1 is a constant 2.5 in correct
    # samples and 0 in incorrect ones (both variances 0, different means): t = +inf. Latent 2 the reverse.
    correct = np.array([True, True, True, False, False])
    x = np.zeros((5, 3), dtype=np.float32)
    x[correct, 1] = 2.5
    x[~correct, 2] = 0.1
    scores = separation_scores(x, correct, 0)
    assert scores.t_stat.tolist() == [0.0, np.inf, -np.inf]
    assert scores.mean_correct[1] == 2.5 and scores.mean_incorrect[2] == np.float32(0.1)
    assert scores.s_correct.tolist() == [0.0, 1.0, -1.0]


def test_single_sample_class_gives_nan_t_but_valid_frequencies():
    correct = np.array([True, False, False, False])
    x = np.array([[1.0], [0.0], [2.0], [0.0]], dtype=np.float32)
    scores = separation_scores(x, correct, 0)
    assert np.isnan(scores.t_stat[0])
    assert scores.f_correct[0] == 1.0 and scores.f_incorrect[0] == pytest.approx(1 / 3)


def test_block_processing_matches_one_pass(monkeypatch, study):
    """Scores must not depend on how the rows are split into blocks (the last block is a partial one)."""
    from pva_dagster.study.analysis import separation

    layers, correct = study
    whole = separation_scores(layers[2], correct, 2)
    monkeypatch.setattr(separation, "_BLOCK_BYTES", 8 * D_SAE * 7)  # 7-row blocks
    blocked = separation_scores(layers[2], correct, 2)
    pd.testing.assert_frame_equal(whole, blocked, rtol=1e-12)


@pytest.mark.parametrize("which, name", [(True, "incorrect"), (False, "correct")])
def test_empty_class_is_named(which, name):
    with pytest.raises(ValueError, match=f"layer 4: no {name} samples"):
        separation_scores(np.ones((3, 2), dtype=np.float32), np.full(3, which), 4)


def test_shape_and_dtype_mismatches_raise():
    x = np.ones((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="correct has shape"):
        separation_scores(x, np.array([True, False]), 0)
    with pytest.raises(ValueError, match="latents must be"):
        separation_scores(x[0], np.array([True, False]), 0)
    with pytest.raises(TypeError, match="bool"):
        separation_scores(x, np.array([1, 0, 1]), 0)


def test_planted_latents_rank_first_in_their_direction(study):
    layers, correct = study
    ranked = rank_latents(all_scores(layers, correct), quiet_general_freq(layers), top_n=10, keep=5)
    best = best_latents(ranked)
    assert (best["correct"]["layer"], best["correct"]["latent"]) == (5, CORRECT_LATENT)
    assert (best["incorrect"]["layer"], best["incorrect"]["latent"]) == (5, INCORRECT_LATENT)
    assert best["correct"]["score"] > 0.7
    for direction, group in ranked.groupby("direction"):
        assert group["rank"].tolist() == list(range(1, 6))
        assert group.score.is_monotonic_decreasing and (group.score > 0).all()
        np.testing.assert_array_equal(group.score, group[f"s_{direction}"])


def test_general_text_filter_drops_a_latent_that_fires_everywhere(study):
    layers, correct = study
    general = quiet_general_freq(layers)
    general[5][CORRECT_LATENT] = 0.5  # fires on half of all general text
    ranked = rank_latents(all_scores(layers, correct), general, top_n=10, max_general_freq=0.02, keep=5)
    kept = ranked[ranked.direction == "correct"]
    assert not ((kept.layer == 5) & (kept.latent == CORRECT_LATENT)).any()
    assert kept["rank"].iloc[0] == 1 and kept.candidate_rank.iloc[0] == 2
    # The other direction is untouched by this latent.
    assert best_latents(ranked)["incorrect"]["latent"] == INCORRECT_LATENT


def test_general_text_filter_is_strict_at_the_threshold(study):
    layers, correct = study
    general = quiet_general_freq(layers)
    general[5][CORRECT_LATENT] = 0.02  # active on exactly 2 %: the study keeps only latents below (<) that
    ranked = rank_latents(all_scores(layers, correct), general, top_n=10, max_general_freq=0.02, keep=5)
    assert not ((ranked.layer == 5) & (ranked.latent == CORRECT_LATENT)).any()
    general[5][CORRECT_LATENT] = 0.0199
    ranked = rank_latents(all_scores(layers, correct), general, top_n=10, max_general_freq=0.02, keep=5)
    assert ((ranked.layer == 5) & (ranked.latent == CORRECT_LATENT)).any()


def test_general_frequency_counts_active_fraction():
    x = np.array([[0.0, 1.0, 0.0], [0.5, 2.0, 0.0], [0.0, 3.0, -1.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(general_frequency(x), [0.25, 0.75, 0.0])
    with pytest.raises(ValueError, match="non-empty"):
        general_frequency(np.zeros((0, 3), dtype=np.float32))


def test_ranking_is_deterministic_with_ties_broken_by_layer_then_latent():
    # Every latent of both layers has the same score; the order must be (layer, latent) ascending.
    correct = np.array([True, True, False, False])
    x = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]], dtype=np.float32)
    scores = pd.concat([separation_scores(x, correct, 9), separation_scores(x, correct, 1)], ignore_index=True)
    general = {1: np.zeros(3), 9: np.zeros(3)}
    first = rank_latents(scores, general, top_n=4, keep=4)
    shuffled = rank_latents(scores.sample(frac=1.0, random_state=3), general, top_n=4, keep=4)
    pd.testing.assert_frame_equal(first, shuffled)
    got = first[first.direction == "correct"][["layer", "latent"]].values.tolist()
    assert got == [[1, 0], [1, 1], [1, 2], [9, 0]]
    assert (first.direction == "incorrect").sum() == 0  # no latent points that way: none is invented


def test_ranking_input_errors(study):
    layers, correct = study
    scores = all_scores(layers, correct)
    with pytest.raises(KeyError, match="layer 5"):
        rank_latents(scores, {2: np.zeros(D_SAE)})
    with pytest.raises(ValueError, match="more than once"):
        rank_latents(pd.concat([scores, scores]), quiet_general_freq(layers))
    with pytest.raises(ValueError, match="general-text frequencies"):
        rank_latents(scores, {2: np.zeros(D_SAE), 5: np.zeros(3)})


def test_best_latents_leaves_out_a_direction_with_no_latent():
    correct = np.array([True, True, False, False])
    x = np.array([[1.0], [1.0], [0.0], [0.0]], dtype=np.float32)
    best = best_latents(rank_latents(separation_scores(x, correct, 0), {0: np.zeros(1)}))
    assert list(best) == ["correct"]
    assert best["correct"]["latent"] == 0 and best["correct"]["score"] == 1.0
    assert type(best["correct"]["latent"]) is int  # plain Python values, ready for JSON
