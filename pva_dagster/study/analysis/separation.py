"""Phase 2 separation scores: how differently each SAE latent fires on correct and on incorrect solutions.

For latent j, ``f_correct[j]`` is the fraction of correct samples on which it is active (> 0), and
``s_correct = f_correct - f_incorrect`` (in [-1, 1]) is the score the study ranks by; ``s_incorrect`` is its
negation. A Welch t statistic on the activation values sits beside it as a second opinion. Everything is
computed for all latents at once, reading the activations in row blocks so that no full-size temporary copy
of a [samples, d_sae] matrix is made.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pva_dagster.study.domain import DIRECTIONS

SCORE_COLUMNS = (
    "layer", "latent", "n_correct", "n_incorrect", "f_correct", "f_incorrect", "s_correct", "s_incorrect",
    "mean_correct", "mean_incorrect", "t_stat",
)
# Float64 working memory per block of rows. Small enough to stay in cache between the passes over a block
# (measured on 10,000 x 16,384: 4 MiB blocks ran 5x faster than 128 MiB ones), large enough to amortise the
# per-block overhead.
_BLOCK_BYTES = 4 * 2**20


def _block_rows(d_sae: int) -> int:
    return max(1, _BLOCK_BYTES // (8 * d_sae))


def _class_stats(latents: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Active count, mean and sample variance (ddof 1) of every latent over ``rows``, accumulated in float64.

    Sums are taken of deviations from the class's first row (the "shifted data" algorithm): this keeps the
    variance free of cancellation, and a latent constant over the class gets a variance of exactly 0 and a mean
    of exactly that constant, which the zero-variance rule of the t statistic relies on.
    """
    d_sae = latents.shape[1]
    shift = latents[rows[0]].astype(np.float64)
    active = np.zeros(d_sae, dtype=np.int64)
    total = np.zeros(d_sae, dtype=np.float64)
    squares = np.zeros(d_sae, dtype=np.float64)
    # Buffers reused for every block: allocating them per block costs more than the arithmetic.
    block_rows = min(_block_rows(d_sae), len(rows))
    is_active = np.empty((block_rows, d_sae), dtype=np.bool_)
    deviation = np.empty((block_rows, d_sae), dtype=np.float64)
    for start in range(0, len(rows), block_rows):
        block = latents[rows[start : start + block_rows]]
        m = len(block)
        active += np.greater(block, 0, out=is_active[:m]).sum(axis=0)
        np.copyto(deviation[:m], block)  # a plain cast; subtracting while casting is several times slower
        deviation[:m] -= shift
        total += deviation[:m].sum(axis=0)  # numpy, not BLAS: no thread pool to oversubscribe
        squares += np.einsum("ij,ij->j", deviation[:m], deviation[:m])
    n = len(rows)
    mean = shift + total / n
    if n < 2:
        variance = np.full(latents.shape[1], np.nan)  # undefined for one sample, as in scipy
    else:
        variance = np.maximum(squares - total * total / n, 0.0) / (n - 1)
    return active, mean, variance


def welch_t(
    mean_a: np.ndarray, var_a: np.ndarray, n_a: int, mean_b: np.ndarray, var_b: np.ndarray, n_b: int
) -> np.ndarray:
    """Welch's t of a minus b, elementwise, as ``scipy.stats.ttest_ind(a, b, equal_var=False)`` computes it.

    Where both variances are 0 the ratio is 0/0 or x/0; defined here as 0 when the means are equal (nothing
    separates the classes) and +-inf when they differ (perfect separation), never NaN. NaN remains only where
    a class has a single sample, whose variance is undefined.
    """
    diff = mean_a - mean_b
    standard_error = np.sqrt(var_a / n_a + var_b / n_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = diff / standard_error
    degenerate = standard_error == 0
    t[degenerate] = np.where(diff[degenerate] == 0, 0.0, np.copysign(np.inf, diff[degenerate]))
    return t


def separation_scores(latents: np.ndarray, correct: np.ndarray, layer: int) -> pd.DataFrame:
    """One row per latent of ``latents[n, d_sae]`` given ``correct[n]`` (bool): the columns of SCORE_COLUMNS."""
    latents = np.asarray(latents)
    correct = np.asarray(correct)
    if latents.ndim != 2:
        raise ValueError(f"latents must be [samples, d_sae], got shape {latents.shape}")
    if correct.shape != (latents.shape[0],):
        raise ValueError(f"correct has shape {correct.shape} but latents has {latents.shape[0]} samples")
    if correct.dtype != np.bool_:
        raise TypeError(f"correct must be a bool array, got {correct.dtype}")
    rows_correct, rows_incorrect = np.flatnonzero(correct), np.flatnonzero(~correct)
    for name, rows in (("correct", rows_correct), ("incorrect", rows_incorrect)):
        if len(rows) == 0:
            raise ValueError(f"layer {layer}: no {name} samples among {len(correct)}; both classes are needed")
    active_c, mean_c, var_c = _class_stats(latents, rows_correct)
    active_i, mean_i, var_i = _class_stats(latents, rows_incorrect)
    n_c, n_i = len(rows_correct), len(rows_incorrect)
    f_correct, f_incorrect = active_c / n_c, active_i / n_i
    d_sae = latents.shape[1]
    return pd.DataFrame(
        {
            "layer": np.full(d_sae, layer, dtype=np.int64),
            "latent": np.arange(d_sae, dtype=np.int64),
            "n_correct": np.full(d_sae, n_c, dtype=np.int64),
            "n_incorrect": np.full(d_sae, n_i, dtype=np.int64),
            "f_correct": f_correct,
            "f_incorrect": f_incorrect,
            "s_correct": f_correct - f_incorrect,
            "s_incorrect": f_incorrect - f_correct,
            "mean_correct": mean_c,
            "mean_incorrect": mean_i,
            "t_stat": welch_t(mean_c, var_c, n_c, mean_i, var_i, n_i),
        },
        columns=list(SCORE_COLUMNS),
    )


def general_frequency(latents_on_general_text: np.ndarray) -> np.ndarray:
    """Fraction of general-text positions on which each latent is active: ``float64[d_sae]``."""
    latents = np.asarray(latents_on_general_text)
    if latents.ndim != 2 or latents.shape[0] == 0:
        raise ValueError(f"general-text latents must be a non-empty [tokens, d_sae] array, got {latents.shape}")
    active = np.zeros(latents.shape[1], dtype=np.int64)
    step = _block_rows(latents.shape[1])
    for start in range(0, len(latents), step):
        active += np.count_nonzero(latents[start : start + step] > 0, axis=0)
    return active / len(latents)


def _general_freq_of(candidates: pd.DataFrame, general_freq: Mapping[int, np.ndarray]) -> np.ndarray:
    """The general-text frequency of each candidate row's (layer, latent), looked up one layer at a time."""
    freq = np.empty(len(candidates), dtype=np.float64)
    for layer, positions in candidates.groupby("layer").indices.items():
        if layer not in general_freq:
            raise KeyError(f"no general-text frequencies for layer {layer}; have layers {sorted(general_freq)}")
        per_latent = np.asarray(general_freq[layer])
        latents = candidates.latent.to_numpy()[positions]
        if latents.max() >= len(per_latent):
            raise ValueError(
                f"layer {layer}: latent {latents.max()} scored but only {len(per_latent)} general-text frequencies"
            )
        freq[positions] = per_latent[latents]
    return freq


# The ranking's defaults (Phase 2's config starts from these): candidates per direction before the
# general-text filter, the general-text frequency a latent must stay under, latents kept per direction.
TOP_N = 100
MAX_GENERAL_FREQ = 0.02
KEEP = 20


def rank_latents(
    scores: pd.DataFrame,
    general_freq: Mapping[int, np.ndarray],
    top_n: int = TOP_N,
    max_general_freq: float | Mapping[int, float] = MAX_GENERAL_FREQ,
    keep: int = KEEP,
) -> pd.DataFrame:
    """The best latents of each direction over all layers, after dropping ones that fire on general text.

    Per direction ("correct" ranks by ``s_correct``, "incorrect" by ``s_incorrect``): only latents with a
    positive score are candidates (a score of 0 or less does not point that way); the ``top_n`` highest, ties
    broken by layer then latent, are kept; those active on ``max_general_freq`` (one fraction, or one per layer)
    or more of general-text positions are dropped (they fire on everything, so say little about correctness);
    the first ``keep`` remain, ranked 1.. ``candidate_rank`` is the rank before the filter. Columns: direction,
    rank, layer, latent, score, general_freq, candidate_rank, then the score columns.
    """
    if top_n < 1 or keep < 1:
        raise ValueError(f"top_n and keep must be at least 1, got top_n={top_n}, keep={keep}")
    missing = [column for column in SCORE_COLUMNS if column not in scores.columns]
    if missing:
        raise ValueError(f"scores lack columns {missing}")
    duplicated = scores.duplicated(["layer", "latent"])
    if duplicated.any():
        first = scores.loc[duplicated, ["layer", "latent"]].iloc[0].tolist()
        raise ValueError(f"scores hold (layer, latent) {first} more than once; rank one group at a time")
    ranked = []
    for direction in DIRECTIONS:
        candidates = scores.assign(score=scores[f"s_{direction}"])
        candidates = candidates[candidates.score > 0]
        candidates = candidates.sort_values(
            ["score", "layer", "latent"], ascending=[False, True, True], kind="mergesort"
        ).head(top_n)
        candidates = candidates.assign(
            direction=direction,
            candidate_rank=np.arange(1, len(candidates) + 1),
            general_freq=_general_freq_of(candidates, general_freq),
        )
        cutoff = (
            candidates.layer.map(max_general_freq).to_numpy(np.float64) if isinstance(max_general_freq, Mapping)
            else max_general_freq
        )
        kept = candidates[candidates.general_freq < cutoff].head(keep)  # the study's strict <
        ranked.append(kept.assign(rank=np.arange(1, len(kept) + 1)))
    front = ["direction", "rank", "layer", "latent", "score", "general_freq", "candidate_rank"]
    result = pd.concat(ranked, ignore_index=True)
    return result[front + [c for c in result.columns if c not in front]]


def best_latents(ranked: pd.DataFrame) -> dict[str, dict[str, object]]:
    """The rank-1 row of each direction as a plain dict.

    A direction with no latent left (none scored above 0, or the general-text filter dropped them all) has no
    entry: that is a finding to report, not an error, and the other direction is still worth steering.
    """
    best = {}
    for direction in DIRECTIONS:
        rows = ranked[(ranked.direction == direction) & (ranked["rank"] == 1)]
        if not rows.empty:
            best[direction] = {
                key: value.item() if isinstance(value, np.generic) else value
                for key, value in rows.iloc[0].to_dict().items()
            }
    return best
