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
