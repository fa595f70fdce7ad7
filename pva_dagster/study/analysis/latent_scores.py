"""Phase 2 for one split: encode each layer's Phase 1 residuals with its SAE and score every latent.

Scores are computed per temperature group and pooled over all of them; the ranking reads the pooled group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pva_dagster.study.analysis.activation_index import load_residuals
from pva_dagster.study.analysis.sae import encode
from pva_dagster.study.analysis.separation import separation_scores
from pva_dagster.study.domain import temperature_tag

POOLED = "pooled"


def encode_rows(rows: pd.DataFrame, sae: Any, batch_size: int = 256) -> np.ndarray:
    """SAE latents [n, d_sae] of the residual files named by ``rows.file`` (one layer's rows)."""
    return encode(sae, load_residuals(rows.file.tolist()), batch_size)


def temperature_groups(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row masks: one per temperature present, plus ``pooled`` over all rows (when there are several)."""
    temperatures = rows.temperature.to_numpy()
    groups = {temperature_tag(t): temperatures == t for t in sorted(set(temperatures))}
    if len(groups) > 1:
        groups[POOLED] = np.ones(len(rows), dtype=bool)
    else:
        groups = {POOLED: next(iter(groups.values()))}
    return groups


def score_split(
    index: pd.DataFrame,
    layers: Sequence[int],
    sae_for_layer: Callable[[int], Any],
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Separation scores of every latent of every layer, with a ``group`` column (temperature or pooled)."""
    frames = []
    for layer in layers:
        rows = index[index.layer == layer].reset_index(drop=True)
        if rows.empty:
            raise ValueError(f"no Phase 1 activations of layer {layer} for this split")
        latents = encode_rows(rows, sae_for_layer(layer))
        correct = rows.passed.to_numpy(dtype=bool)
        for group, mask in temperature_groups(rows).items():
            if group != POOLED and correct[mask].all() == correct[mask].any():
                # A single temperature may yield one class only (e.g. nothing correct at 1.2): it has no
                # scores, and says so; the pooled group (what the ranking reads) must have both classes.
                log(f"layer {layer}, temperature {group}: only {'correct' if correct[mask].all() else 'incorrect'} "
                    f"samples ({int(mask.sum())}), no separation scores for this temperature")
                continue
            frames.append(separation_scores(latents[mask], correct[mask], layer).assign(group=group))
        log(f"layer {layer}: {len(rows)} samples ({correct.sum()} correct) x {latents.shape[1]} latents scored")
    return pd.concat(frames, ignore_index=True)


def pooled(scores: pd.DataFrame) -> pd.DataFrame:
    return scores[scores.group == POOLED].drop(columns="group").reset_index(drop=True)


def counts_by_group(index: pd.DataFrame) -> Mapping[str, dict[str, int]]:
    first_layer = index[index.layer == index.layer.min()]
    return {
        group: {"correct": int(first_layer.passed[mask].sum()), "incorrect": int((~first_layer.passed[mask]).sum())}
        for group, mask in temperature_groups(first_layer).items()
    }
