"""What a steered latent is compared with: control latents and random directions that match it.

A control answers "is it *this* feature, or would any push like it do the same?". It must therefore not tell
correct from incorrect code itself (``|s_correct|`` near 0 on the discovery split) and must resemble the target
in everything else that could make an intervention more or less disruptive:

- **firing frequency** on the discovery split's code prompts: a latent that never fires there (or always does)
  stands for another kind of intervention;
- **cosine with the mean residual** at the layer: a direction along the mean residual mostly rescales the
  residual stream, a direction orthogonal to it moves it somewhere new, and the two break code differently;
- **decoder-row norm**: how much the SAE itself writes along that direction when the latent fires. The steering
  vector is unit-normalised before it is scaled (``vectors.steering_vector``), so the norm does not change the
  push; it is matched as a property of the latent, so that a control is a latent of the same kind.

Each property has a caliper; a control within all three is *matched*. Where fewer than the requested number of
neutral latents are matched, the nearest ones (by the largest caliper-scaled difference) are used and each row
says ``matched`` False, so the report can say so instead of the run failing on a small SAE.

Random directions (the exploratory rank test) are matched on the cosine with the mean residual exactly: a
random unit vector orthogonal to the mean residual, rotated towards it until the cosine is the target's.
Isotropic random vectors in d_model dimensions are all but orthogonal to the mean residual, so without this a
target along the mean would be compared with pushes of another kind.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

# Controls do not tell correct from incorrect code: |s_correct| on the discovery split at most this (the
# original study drew its random latents from those with a separation score near 0).
CONTROL_MAX_ABS_SCORE = 0.05
# Calipers, each the largest difference from the target a matched control may have:
FREQUENCY_CALIPER = 0.05  # firing frequency (share of the discovery split's samples): 5 points
COSINE_CALIPER = 0.05  # cosine with the mean residual at the layer
NORM_CALIPER = 0.10  # decoder-row norm, relative to the target's: 10 %
# The draw is from the CONTROL_POOL_FACTOR x n candidates nearest the target, so that a seed changes which
# near-identical latents serve without reaching for worse-matched ones.
CONTROL_POOL_FACTOR = 4
MATCHING = (
    f"controls have |s_correct| <= {CONTROL_MAX_ABS_SCORE} on the discovery split and are matched to the target "
    f"within calipers on firing frequency ({FREQUENCY_CALIPER}), cosine with the mean residual ({COSINE_CALIPER}) "
    f"and decoder-row norm ({NORM_CALIPER:.0%} relative); a seeded draw from the {CONTROL_POOL_FACTOR} x n nearest "
    "(largest caliper-scaled difference); where fewer are matched, the nearest are used and marked unmatched"
)


def firing_frequency(layer_scores: pd.DataFrame) -> pd.Series:
    """Per row of Phase 2 scores: the fraction of the split's samples (correct and incorrect) the latent fires on."""
    n_correct, n_incorrect = layer_scores.n_correct, layer_scores.n_incorrect
    fired = n_correct * layer_scores.f_correct + n_incorrect * layer_scores.f_incorrect
    return fired / (n_correct + n_incorrect)


def latent_properties(layer_scores: pd.DataFrame, decoder: np.ndarray, mean_residual: np.ndarray) -> pd.DataFrame:
    """One row per latent of one layer's Phase 2 scores: ``latent``, ``s_correct``, ``frequency``,
    ``decoder_norm`` and ``mean_cosine`` (its decoder row's cosine with ``mean_residual[d_model]``).

    ``decoder``: the SAE's ``W_dec`` as ``float[d_sae, d_model]``."""
    if layer_scores.layer.nunique() != 1:
        raise ValueError(f"latent properties are of one layer, got layers {sorted(layer_scores.layer.unique())}")
    decoder, mean_residual = np.asarray(decoder, dtype=np.float64), np.asarray(mean_residual, dtype=np.float64)
    if decoder.ndim != 2 or mean_residual.shape != (decoder.shape[1],):
        raise ValueError(f"decoder [d_sae, d_model] and mean residual [d_model] disagree: {decoder.shape}, "
                         f"{mean_residual.shape}")  # fmt: skip
    mean_norm = np.linalg.norm(mean_residual)
    if not np.isfinite(mean_norm) or mean_norm == 0:
        raise ValueError(f"the mean residual has norm {mean_norm}: no cosine with it is defined")
    latents = layer_scores.latent.to_numpy(np.int64)
    rows = decoder[latents]
    norms = np.linalg.norm(rows, axis=1)
    cosine = rows @ mean_residual / np.where(norms > 0, norms, np.nan) / mean_norm
    return pd.DataFrame({
        "latent": latents, "s_correct": layer_scores.s_correct.to_numpy(float),
        "frequency": firing_frequency(layer_scores).to_numpy(float), "decoder_norm": norms, "mean_cosine": cosine,
    })


def mismatch(properties: pd.DataFrame, target: pd.Series) -> pd.Series:
    """Each latent's largest difference from ``target`` on the three properties, in calipers (<= 1: matched)."""
    return pd.concat([
        (properties.frequency - target.frequency).abs() / FREQUENCY_CALIPER,
        (properties.mean_cosine - target.mean_cosine).abs() / COSINE_CALIPER,
        (properties.decoder_norm / target.decoder_norm - 1).abs() / NORM_CALIPER,
    ], axis=1).max(axis=1)


def matched_controls(
    properties: pd.DataFrame, target: int, exclude: Sequence[int], n: int, seed: int,
    max_abs_score: float = CONTROL_MAX_ABS_SCORE,
) -> pd.DataFrame:
    """``n`` seeded, distinct, non-discriminating latents matched to ``target``, none in ``exclude``: their
    properties (:func:`latent_properties`) with ``mismatch`` (in calipers) and ``matched`` (within all three),
    sorted by latent."""
    by_latent = properties.set_axis(properties.latent.to_numpy(np.int64))
    if target not in by_latent.index:
        raise ValueError(f"target latent {target} has no Phase 2 score at this layer")
    neutral = by_latent.s_correct.abs() <= max_abs_score
    candidates = by_latent[neutral & ~by_latent.index.isin([target, *exclude]) & by_latent.mean_cosine.notna()]
    if not 0 <= n <= len(candidates):
        raise ValueError(
            f"cannot draw {n} control latents: the layer has {len(candidates)} latents with |s_correct| <= "
            f"{max_abs_score} outside {sorted({target, *exclude})}"
        )
    ranked = candidates.assign(mismatch=mismatch(candidates, by_latent.loc[target])).sort_values(["mismatch", "latent"])
    matched = ranked[ranked.mismatch <= 1]
    # Among matched latents the draw is seeded; short of n matched ones, the nearest make up the number.
    pool = matched.head(CONTROL_POOL_FACTOR * n) if len(matched) >= n else ranked.head(n)
    chosen = np.random.default_rng(seed).choice(pool.latent.to_numpy(np.int64), size=n, replace=False)
    return ranked.loc[sorted(int(c) for c in chosen)].assign(matched=lambda f: f.mismatch <= 1).reset_index(drop=True)


def random_directions(d_model: int, n: int, seed: int, mean_residual: np.ndarray | None = None,
                      cosine: float = 0.0) -> torch.Tensor:  # fmt: skip
    """``n`` seeded random unit directions ``[n, d_model]`` (float32).

    Without ``mean_residual``: isotropic Gaussian rows, normalised. With it: each row has exactly ``cosine``
    with ``mean_residual`` (the target's), its remaining part a random direction orthogonal to it. The rank test
    steers with these at the target's norm (``vectors.steering_vector`` rescales), so a latent's effect is
    compared with what an arbitrary push of the same size and the same angle to the mean residual does.
    """
    if n < 0 or d_model < 1:
        raise ValueError(f"need n >= 0 random directions in d_model >= 1, got n={n}, d_model={d_model}")
    rows = torch.randn(n, d_model, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    if mean_residual is None:
        return rows / torch.linalg.vector_norm(rows, dim=1, keepdim=True)
    if not -1.0 <= cosine <= 1.0:
        raise ValueError(f"a cosine lies in [-1, 1], got {cosine}")
    mean = torch.as_tensor(np.asarray(mean_residual, dtype=np.float64))
    mean = mean / torch.linalg.vector_norm(mean)
    orthogonal = rows.double() - (rows.double() @ mean)[:, None] * mean[None, :]
    orthogonal = orthogonal / torch.linalg.vector_norm(orthogonal, dim=1, keepdim=True)
    return (cosine * mean[None, :] + float(np.sqrt(1.0 - cosine**2)) * orthogonal).to(torch.float32)
