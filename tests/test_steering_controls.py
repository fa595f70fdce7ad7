"""Controls and random directions match the steered latent: frequency, angle to the mean residual, decoder norm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pva_dagster.study.steering.controls import (
    CONTROL_POOL_FACTOR,
    COSINE_CALIPER,
    FREQUENCY_CALIPER,
    NORM_CALIPER,
    firing_frequency,
    latent_properties,
    matched_controls,
    random_directions,
)

D_MODEL = 16


def _layer_scores(s_correct: list[float], frequency: list[float] | None = None, layer: int = 4) -> pd.DataFrame:
    """Phase 2 scores of one layer: 50 correct and 50 incorrect samples, each latent firing on ``frequency`` of
    them (split by its score)."""
    s = np.asarray(s_correct)
    f = np.asarray(frequency if frequency is not None else [0.5] * len(s))
    return pd.DataFrame({
        "layer": layer, "latent": range(len(s)), "s_correct": s, "n_correct": 50, "n_incorrect": 50,
        "f_correct": f + s / 2, "f_incorrect": f - s / 2,
    })


def _decoder_with(cosines: list[float], norms: list[float], mean: np.ndarray, seed: int = 0) -> np.ndarray:
    """Decoder rows with the given cosine to ``mean`` and the given norms."""
    rng = np.random.default_rng(seed)
    unit_mean = mean / np.linalg.norm(mean)
    rows = []
    for cosine, norm in zip(cosines, norms, strict=True):
        other = rng.standard_normal(len(mean))
        other -= other @ unit_mean * unit_mean
        other /= np.linalg.norm(other)
        rows.append(norm * (cosine * unit_mean + np.sqrt(1 - cosine**2) * other))
    return np.asarray(rows)


def _properties(s_correct, frequency, cosines, norms) -> pd.DataFrame:
    mean = np.linspace(1.0, 2.0, D_MODEL)
    return latent_properties(_layer_scores(s_correct, frequency), _decoder_with(cosines, norms, mean), mean)


def test_properties_are_measured_from_the_scores_decoder_and_mean_residual():
    properties = _properties([0.4, 0.0], [0.3, 0.7], [0.2, -0.5], [1.0, 2.5])
    assert properties.frequency.tolist() == pytest.approx([0.3, 0.7])
    assert properties.mean_cosine.tolist() == pytest.approx([0.2, -0.5])
    assert properties.decoder_norm.tolist() == pytest.approx([1.0, 2.5])


def test_controls_match_the_target_on_all_three_properties_within_their_calipers():
    # Target 0: frequency 0.30, cosine 0.20, norm 1.0. Neutral latents 1-12 each miss one property by twice its
    # caliper, except 5, 8, 11, 12 which sit within every caliper; 13 discriminates (s = 0.3) but matches.
    n = 13
    frequency, cosine, norm = [0.3] * (n + 1), [0.2] * (n + 1), [1.0] * (n + 1)
    for latent in (1, 2, 3):
        frequency[latent] += 2 * FREQUENCY_CALIPER
    for latent in (4, 6, 7):
        cosine[latent] -= 2 * COSINE_CALIPER
    for latent in (9, 10):
        norm[latent] *= 1 + 2 * NORM_CALIPER
    frequency[5] += FREQUENCY_CALIPER / 2
    cosine[8] += COSINE_CALIPER / 2
    norm[11] *= 1 - NORM_CALIPER / 2
    s_correct = [0.4] + [0.0] * (n - 1) + [0.3]
    properties = _properties(s_correct, frequency, cosine, norm)
    drawn = pd.concat([matched_controls(properties, 0, [], 3, seed) for seed in range(30)])
    assert set(drawn.latent) <= {5, 8, 11, 12} and drawn.matched.all()
    assert (drawn.frequency - 0.3).abs().max() <= FREQUENCY_CALIPER
    assert (drawn.mean_cosine - 0.2).abs().max() <= COSINE_CALIPER + 1e-9
    assert (drawn.decoder_norm - 1.0).abs().max() <= NORM_CALIPER
    assert len({tuple(matched_controls(properties, 0, [], 3, seed).latent) for seed in range(30)}) > 1  # seeded
    # Fewer matched latents than asked for: the nearest make up the number, marked unmatched.
    five = matched_controls(properties, 0, [], 5, seed=0)
    assert len(five) == 5 and five.matched.sum() == 4 and not five.matched.all()


def test_a_control_that_matches_frequency_alone_is_not_preferred_to_one_that_matches_the_direction():
    # Latent 1 fires exactly as often as the target but lies along the mean residual (cosine 0.9 vs 0.1);
    # latent 2 is off by half a caliper in frequency and matches the rest.
    properties = _properties([0.5, 0.0, 0.0], [0.4, 0.4, 0.4 + FREQUENCY_CALIPER / 2], [0.1, 0.9, 0.1], [1, 1, 1])
    assert matched_controls(properties, 0, [], 1, seed=0).latent.tolist() == [2]


def test_controls_are_seeded_distinct_and_refused_when_too_few():
    properties = _properties([0.0, 0.3, -0.01, 0.04, -0.4, 0.05], [0.5] * 6, [0.1] * 6, [1.0] * 6)
    first = matched_controls(properties, 1, [3], 2, seed=7)
    assert first.equals(matched_controls(properties, 1, [3], 2, seed=7))
    assert set(first.latent) <= {0, 2, 5} and first.latent.is_unique  # |s| <= 0.05, not the target, not 3
    with pytest.raises(ValueError, match="cannot draw 4 control latents: the layer has 3"):
        matched_controls(properties, 1, [3], 4, seed=0)
    with pytest.raises(ValueError, match="target latent 99"):
        matched_controls(properties, 99, [], 1, seed=0)


def test_the_pool_is_the_nearest_matched_latents():
    frequency = [0.3, *np.linspace(0.3 - FREQUENCY_CALIPER, 0.3 + FREQUENCY_CALIPER, 12)]
    properties = _properties([0.4] + [0.0] * 12, frequency, [0.2] * 13, [1.0] * 13)
    assert firing_frequency(_layer_scores([0.4] + [0.0] * 12, frequency)).tolist() == pytest.approx(frequency)
    nearest = sorted(range(1, 13), key=lambda i: (abs(frequency[i] - 0.3), i))[:CONTROL_POOL_FACTOR]
    drawn = {int(c) for seed in range(50) for c in matched_controls(properties, 0, [], 1, seed).latent}
    assert drawn == set(nearest)


def test_random_directions_have_the_targets_angle_to_the_mean_residual():
    mean = np.linspace(-1.0, 3.0, D_MODEL)
    rows = random_directions(D_MODEL, 19, seed=3, mean_residual=mean, cosine=0.35)
    unit_mean = torch.as_tensor(mean / np.linalg.norm(mean), dtype=torch.float32)
    assert torch.linalg.vector_norm(rows, dim=1).numpy() == pytest.approx(np.ones(19), abs=1e-6)
    assert (rows @ unit_mean).numpy() == pytest.approx(np.full(19, 0.35), abs=1e-6)
    assert torch.linalg.matrix_rank(rows) > 1  # the rest of each direction is random
    isotropic = random_directions(D_MODEL, 19, seed=3)
    assert torch.equal(isotropic, random_directions(D_MODEL, 19, seed=3))
    with pytest.raises(ValueError, match="cosine"):
        random_directions(D_MODEL, 1, seed=0, mean_residual=mean, cosine=1.5)
