"""The activation of chosen SAE latents on the Phase 1 samples of a split, one column per latent.

Phase 3 reads latents this way for thresholds (hyperparams split), AUROC/F1 (validation split) and the
difficulty and temperature breakdowns; each layer's residuals are encoded once for all its latents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from pva_dagster.study.analysis.latent_scores import encode_rows

SAMPLE_COLUMNS = ["task_id", "sample", "temperature", "passed"]


def latent_column(layer: int, latent: int) -> str:
    return f"L{layer}_{latent}"


def latent_samples(
    index: pd.DataFrame, latents: Sequence[tuple[int, int]], sae_for_layer: Callable[[int], Any]
) -> pd.DataFrame:
    """Rows = samples (task_id, sample, temperature, passed); one column ``L{layer}_{latent}`` per latent."""
    samples: pd.DataFrame | None = None
    for layer in sorted({layer for layer, _ in latents}):
        rows = index[index.layer == layer].sort_values(SAMPLE_COLUMNS[:3]).reset_index(drop=True)
        if rows.empty:
            raise ValueError(f"no Phase 1 activations of layer {layer} in this split")
        encoded = encode_rows(rows, sae_for_layer(layer))
        columns = {
            latent_column(layer, latent): encoded[:, latent] for lay, latent in latents if lay == layer
        }
        frame = rows[SAMPLE_COLUMNS].assign(**columns)
        samples = frame if samples is None else samples.merge(frame, on=SAMPLE_COLUMNS, validate="one_to_one")
    if samples is None:
        raise ValueError("no latents were asked for")
    return samples
