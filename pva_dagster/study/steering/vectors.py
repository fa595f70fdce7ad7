"""Phase 3 steering: the vector added to the residual stream, and the statistics of what it changes.

The vector is a latent's SAE decoder row, unit-normalised and scaled. How the configured coefficient becomes
that scale is a named *coefficient mode* (:data:`COEFFICIENT_MODES`): ``relative`` multiplies by the mean
residual-stream norm at the layer, so one sweep means the same thing at every layer and for every model;
``absolute`` uses the number as the vector's norm directly (the original study used 29 and 287 on
Gemma-2-2B). By default the vector is added at the output of a decoder block, the very hook point Phase 1
reads activations from; ``StudyDesign.steering_hook`` moves it to the block's input or to after attention
(:func:`pva_dagster.study.generation.residual.add_per_row`, one vector per row when units share a batch;
:func:`steered` for one vector).
"""

from __future__ import annotations

import difflib
import io
import math
import tokenize
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch

from pva_dagster.study.generation.residual import add_at

# Add ``vector[d_model]`` at a residual hook point of block ``layer`` (default: its output) at every position
# while the context is open.
# The same hook as the residual module's, re-exported under the name the steering code reads best with.
steered = add_at

# mode -> (configured value, mean residual norm at the layer) -> scale (the norm of the added vector)
COEFFICIENT_MODES: dict[str, Callable[[float, float], float]] = {
    "relative": lambda value, mean_norm: value * mean_norm,
    "absolute": lambda value, _mean_norm: value,
}
# The same names as a type, so that a config field typed with it is checked when a run is launched.
CoefficientMode = Literal["relative", "absolute"]

def resolve_coefficients(mode: str, values: list[float], mean_norm: float) -> list[float]:
    """The scale (vector norm, signed) of each configured coefficient under ``mode``."""
    if mode not in COEFFICIENT_MODES:
        raise ValueError(f"unknown coefficient mode {mode!r}; choose from {sorted(COEFFICIENT_MODES)}")
    if mode == "relative" and not (math.isfinite(mean_norm) and mean_norm > 0):
        raise ValueError(f"relative coefficients need a positive, finite mean residual norm, got {mean_norm}")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"coefficients must be finite, got {bad}")
    return [float(COEFFICIENT_MODES[mode](float(v), float(mean_norm))) for v in values]


def mean_residual_norm(residuals: np.ndarray) -> float:
    """Mean L2 norm of the rows of ``residuals[n, d_model]`` (one row per token position)."""
    residuals = np.asarray(residuals, dtype=np.float64)
    if residuals.ndim != 2 or residuals.shape[0] == 0:
        raise ValueError(f"residuals must be a non-empty [n, d_model] array, got shape {residuals.shape}")
    return float(np.linalg.norm(residuals, axis=1).mean())


def steering_vector(decoder_direction: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale`` times the unit vector along ``decoder_direction[d_model]`` (same dtype and device).

    Normalising makes ``scale`` the exact norm of what is added, so relative mode reads "coefficient x mean
    residual norm". GemmaScope decoder rows are unit norm already, so there this changes nothing; other SAEs
    (and the embedded ones) need not be.
    """
    if decoder_direction.ndim != 1:
        raise ValueError(
            f"decoder_direction must be one [d_model] row, got shape {tuple(decoder_direction.shape)}"
        )
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    direction = decoder_direction.detach().to(torch.float32)
    norm = torch.linalg.vector_norm(direction)
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError(f"cannot steer along a decoder row of norm {float(norm)}")
    return (direction / norm * scale).to(decoder_direction.dtype)


def python_tokens(code: str) -> list[str]:
    """The Python tokens of ``code`` (comments, blank lines and indentation bookkeeping left out).

    Generated code is often cut off mid-statement; tokenizing stops at the first error and keeps the tokens
    read until then, so a truncated completion compares by what it does contain.
    """
    skipped = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    tokens: list[str] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type not in skipped:
                tokens.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # a truncated completion: the tokens before the error are what it contains
    return tokens


def code_similarity(a: str, b: str) -> float:
    """difflib's ratio over the two codes' Python tokens: 1.0 same token sequence, 0.0 nothing in common.

    Tokens, not characters: renaming ``x`` to ``total`` is one change, and re-indenting or a changed comment is
    none.
    """
    tokens_a, tokens_b = python_tokens(a), python_tokens(b)
    if not tokens_a and not tokens_b:
        return 1.0
    return difflib.SequenceMatcher(None, tokens_a, tokens_b, autojunk=False).ratio()


# Controls are latents that do *not* tell correct from incorrect code: |s_correct| on the discovery split at
# most this (the original study drew its random latents from those with a separation score near 0).
CONTROL_MAX_ABS_SCORE = 0.05
# ... and that fire about as often as the target on the same code prompts: a latent that never fires there (or
# fires everywhere) controls for a different intervention. The pool is the CONTROL_POOL_FACTOR x n neutral
# latents nearest the target in firing frequency; the n controls are a seeded draw from it.
CONTROL_POOL_FACTOR = 4


def firing_frequency(layer_scores: pd.DataFrame) -> pd.Series:
    """Per row of Phase 2 scores: the fraction of the split's samples (correct and incorrect) the latent fires on."""
    n_correct, n_incorrect = layer_scores.n_correct, layer_scores.n_incorrect
    fired = n_correct * layer_scores.f_correct + n_incorrect * layer_scores.f_incorrect
    return fired / (n_correct + n_incorrect)


def control_latents(
    layer_scores: pd.DataFrame, target: int, exclude: Sequence[int], n: int, seed: int,
    max_abs_score: float = CONTROL_MAX_ABS_SCORE,
) -> list[int]:
    """``n`` seeded, distinct, non-discriminating latents of one layer matched to ``target`` on firing frequency,
    none in ``exclude`` (sorted).

    ``layer_scores``: that layer's pooled Phase 2 scores on the discovery split (columns ``latent``,
    ``s_correct``, ``n_correct``, ``n_incorrect``, ``f_correct``, ``f_incorrect``). Candidates have
    ``|s_correct| <= max_abs_score``; the draw is from the ``CONTROL_POOL_FACTOR * n`` of them nearest the
    target's firing frequency (ties by latent index).
    """
    if layer_scores.layer.nunique() != 1:
        raise ValueError(f"control latents are drawn from one layer, got layers {sorted(layer_scores.layer.unique())}")
    layer = int(layer_scores.layer.iloc[0])
    frequency = firing_frequency(layer_scores).set_axis(layer_scores.latent.to_numpy(np.int64))
    if target not in frequency.index:
        raise ValueError(f"target latent {target} has no Phase 2 score at layer {layer}")
    neutral = (layer_scores.s_correct.abs() <= max_abs_score).to_numpy()
    candidates = frequency[neutral & ~frequency.index.isin([target, *exclude])]
    if not 0 <= n <= len(candidates):
        raise ValueError(
            f"cannot draw {n} control latents: layer {layer} has {len(candidates)} latents "
            f"with |s_correct| <= {max_abs_score} outside {sorted({target, *exclude})}"
        )
    nearest = pd.DataFrame({"latent": candidates.index, "distance": (candidates - frequency[target]).abs().to_numpy()})
    pool = nearest.sort_values(["distance", "latent"]).latent.head(CONTROL_POOL_FACTOR * n)
    chosen = np.random.default_rng(seed).choice(pool.to_numpy(np.int64), size=n, replace=False)
    return sorted(int(c) for c in chosen)


def random_directions(d_model: int, n: int, seed: int) -> torch.Tensor:
    """``n`` seeded random unit directions ``[n, d_model]`` (float32): isotropic Gaussian rows, normalised.

    The exploratory rank test steers with these at the target's norm (:func:`steering_vector` rescales), so a
    latent's effect is compared with what an arbitrary push of the same size does.
    """
    if n < 0 or d_model < 1:
        raise ValueError(f"need n >= 0 random directions in d_model >= 1, got n={n}, d_model={d_model}")
    rows = torch.randn(n, d_model, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return rows / torch.linalg.vector_norm(rows, dim=1, keepdim=True)


def check_steering_coefficients(values: Sequence[float]) -> list[float]:
    """``values`` as a sweep may hold them: nonzero (0 is the unsteered baseline every run has) and at least one
    positive (the confirmatory coefficient is chosen among the positive ones; negative ones are exploratory)."""
    if not values or 0.0 in values:
        raise ValueError(f"steering coefficients must be nonzero (0 is the baseline every run has), got {list(values)}")
    if not any(v > 0 for v in values):
        raise ValueError(
            "steering coefficients need a positive value: the confirmatory coefficient is chosen among them "
            f"(negative ones are exploratory), got {list(values)}"
        )
    return list(values)
