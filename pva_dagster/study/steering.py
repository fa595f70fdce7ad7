"""Phase 3 steering: the vector added to the residual stream, and the statistics of what it changes.

The vector is a latent's SAE decoder row, unit-normalised and scaled. How the configured coefficient becomes
that scale is a named *coefficient mode* (:data:`COEFFICIENT_MODES`): ``relative`` multiplies by the mean
residual-stream norm at the layer, so one sweep means the same thing at every layer and for every model;
``absolute`` uses the number as the vector's norm directly (the original study used 29 and 287 on
Gemma-2-2B). The vector is added at the output of a decoder block by :func:`steered`, the very hook Phase 1
reads activations from (:func:`pva_dagster.study.residual.add_to_block_output`).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.stats import binomtest

from pva_dagster.study.residual import add_to_block_output

# Add ``vector[d_model]`` to the output of block ``layer`` at every position while the context is open.
# The same hook as the residual module's, re-exported under the name the steering code reads best with.
steered = add_to_block_output

# mode -> (configured value, mean residual norm at the layer) -> scale (the norm of the added vector)
COEFFICIENT_MODES: dict[str, Callable[[float, float], float]] = {
    "relative": lambda value, mean_norm: value * mean_norm,
    "absolute": lambda value, _mean_norm: value,
}

# Relative sweep from -1 to +1 times the mean residual norm, 0 (the unsteered control) included.
DEFAULT_RELATIVE_GRID: np.ndarray = np.linspace(-1.0, 1.0, 9)


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


def _bool_vector(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or (values.dtype != bool and not np.isin(values, (0, 1)).all()):
        raise ValueError(f"{name} must be a 1-D boolean array, got shape {values.shape} dtype {values.dtype}")
    return values.astype(bool)


def _rate(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def transition_rates(before_correct: np.ndarray, after_correct: np.ndarray) -> dict[str, float | int]:
    """How steering moved each problem between incorrect and correct (rates are NaN with no problems)."""
    before = _bool_vector(before_correct, "before_correct")
    after = _bool_vector(after_correct, "after_correct")
    if len(before) != len(after):
        raise ValueError(f"before_correct has {len(before)} problems but after_correct has {len(after)}")
    n_incorrect, n_correct = int((~before).sum()), int(before.sum())
    n_corrected, n_corrupted = int((~before & after).sum()), int((before & ~after).sum())
    return {
        "correction_rate": _rate(n_corrected, n_incorrect),
        "corruption_rate": _rate(n_corrupted, n_correct),
        "preservation_rate": _rate(int((before & after).sum()), n_correct),
        "n_incorrect": n_incorrect,
        "n_correct": n_correct,
        "n_corrected": n_corrected,
        "n_corrupted": n_corrupted,
    }


def code_similarity(a: str, b: str) -> float:
    """difflib's ratio of two code strings: 1.0 identical, 0.0 nothing in common."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def random_control_latents(d_sae: int, exclude: Sequence[int], n: int, seed: int) -> list[int]:
    """``n`` distinct latents of an SAE of width ``d_sae``, none in ``exclude``, seeded and sorted."""
    bad = [e for e in exclude if not 0 <= int(e) < d_sae]
    if bad:
        raise ValueError(f"excluded latents {bad} are outside 0..{d_sae - 1}")
    candidates = np.setdiff1d(np.arange(d_sae), np.asarray(exclude, dtype=np.int64))
    if not 0 <= n <= len(candidates):
        raise ValueError(f"cannot draw {n} control latents from {len(candidates)} candidates (d_sae={d_sae})")
    chosen = np.random.default_rng(seed).choice(candidates, size=n, replace=False)
    return sorted(int(c) for c in chosen)


def binomial_vs_control(successes: int, trials: int, control_rate: float) -> dict[str, float]:
    """Is the target's effect rate above the control's? One-sided exact binomial test, with a 95 % CI.

    ``p_value``: P(X >= successes) for X ~ Binomial(trials, control_rate) (scipy ``binomtest``,
    alternative="greater"). The control rate is treated as known, so the degenerate rates are exact rather
    than special-cased: with ``control_rate`` 0 any success gives p = 0 and none gives p = 1; with 1, p = 1.
    Read such results alongside the number of control trials behind the rate.
    ``ci_low`` / ``ci_high``: two-sided 95 % Clopper-Pearson interval of the target's own rate.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in 0..{trials}, got {successes}")
    if not (math.isfinite(control_rate) and 0.0 <= control_rate <= 1.0):
        raise ValueError(f"control_rate must be a probability in [0, 1], got {control_rate}")
    test = binomtest(int(successes), int(trials), float(control_rate), alternative="greater")
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=0.95, method="exact")
    return {
        "p_value": float(test.pvalue),
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "rate": successes / trials,
    }
