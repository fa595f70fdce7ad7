"""Whether a selected latent recurs across SAEs that differ only in their seed, judged by decoder direction.

Two SAEs trained alike from different seeds share only part of their latents, and a latent's index means nothing
across them. What can be compared is the direction a latent writes into the residual stream, its decoder row: a
variant's latent *matches* the primary's latent at the same layer whose decoder row has the largest absolute
cosine with its own (the sign is ignored because it says nothing about the direction's role).

A variant's selection (its rank-1 latent per direction, found on its own latents by the study's separation and
ranking, e.g. :func:`~pva_dagster.study.evaluation.replicates.one_replicate`) *recovers* the primary's when its
decoder row is within ``MATCH_COSINE`` of the primary's rank-1 latent's at the same layer. The threshold is this
study's choice, made to lie far above chance: in ``d_model`` = 576 dimensions two random directions have |cosine|
about 0.04 and the best of 2,048 about 0.17, so a match at 0.7 or more is one no random dictionary of this size
gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pva_dagster.study.analysis.sae_quality import layer_quality

MATCH_COSINE = 0.7
MATCH_COLUMNS = (
    "seed", "direction", "layer", "latent", "matched_latent", "best_cosine", "best_is_primary_rank1",
    "cosine_to_primary_rank1", "recovers_primary",
)  # fmt: skip
Decoders = Mapping[int, np.ndarray]  # layer -> float[d_sae, d_model], one decoder row per latent


def decoders(saes: Mapping[int, Any]) -> dict[int, np.ndarray]:
    """Each layer's SAE (layer -> SAELens SAE) as its decoder rows float[d_sae, d_model]."""
    return {layer: sae.W_dec.detach().float().cpu().numpy() for layer, sae in saes.items()}


def _unit_rows(decoder: np.ndarray) -> np.ndarray:
    rows = np.asarray(decoder, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"a decoder must be [d_sae, d_model], got shape {rows.shape}")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)  # a zero row matches nothing


def _abs_cosines(primary: np.ndarray, row: np.ndarray) -> np.ndarray:
    """|cosine| of ``row`` (float[d_model]) with each decoder row of ``primary`` (float[d_sae, d_model])."""
    return np.abs(_unit_rows(primary) @ _unit_rows(np.asarray(row)[None])[0])


def best_match(primary: np.ndarray, row: np.ndarray) -> tuple[int, float]:
    """The latent of ``primary`` (float[d_sae, d_model]) whose decoder row has the largest |cosine| with ``row``
    (float[d_model]), and that |cosine|; ties go to the lower index."""
    cosines = _abs_cosines(primary, row)
    best = int(np.argmax(cosines))
    return best, float(cosines[best])


def match_selection(
    primary: Decoders, variant: Decoders, primary_selected: pd.DataFrame, variant_selected: pd.DataFrame, seed: int
) -> pd.DataFrame:
    """Per direction the variant selected a latent for: its best-matching primary latent at the same layer, and
    how it relates to the primary's rank-1 latent of that direction (NaN cosine when that one is at another layer
    or the primary selected none).

    ``*_selected``: one row per direction with columns direction, layer, latent (``one_replicate``'s output)."""
    primary_rank1 = {row.direction: (int(row.layer), int(row.latent)) for row in primary_selected.itertuples()}
    rows = []
    for chosen in variant_selected.itertuples():
        layer, latent = int(chosen.layer), int(chosen.latent)
        if layer not in primary or layer not in variant:
            raise ValueError(f"no decoder of layer {layer} for the primary or the seed {seed} variant")
        cosines = _abs_cosines(primary[layer], variant[layer][latent])
        matched = int(np.argmax(cosines))
        target = primary_rank1.get(chosen.direction)
        to_rank1 = float(cosines[target[1]]) if target is not None and target[0] == layer else np.nan
        rows.append({
            "seed": seed, "direction": chosen.direction, "layer": layer, "latent": latent, "matched_latent": matched,
            "best_cosine": float(cosines[matched]), "best_is_primary_rank1": target == (layer, matched),
            "cosine_to_primary_rank1": to_rank1, "recovers_primary": bool(to_rank1 >= MATCH_COSINE),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=list(MATCH_COLUMNS))


def variant_quality(residuals: Mapping[int, np.ndarray], saes: Mapping[int, Mapping[int, Any]]) -> pd.DataFrame:
    """:func:`~pva_dagster.study.analysis.sae_quality.layer_quality` of each SAE (seed -> layer -> SAE) on the
    study's residuals (layer -> float[tasks, d_model]), one row per seed and layer."""
    rows = [
        {"seed": seed, **layer_quality(residuals[layer], sae, layer)}
        for seed, by_layer in sorted(saes.items())
        for layer, sae in sorted(by_layer.items())
    ]
    return pd.DataFrame(rows)


QUALITY_COLUMNS = ("fvu", "fvu_between_tasks", "mean_l0", "dead_on_study_prompts")


def variant_summary(matches: pd.DataFrame, variants: int, quality: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per direction, over ``variants`` seed variants (``match_selection`` rows of all of them): the share whose
    rank-1 latent recovers the primary's (a variant that selected nothing counts as not recovering it), the share
    whose best match is the primary's rank-1 latent itself, the median best |cosine|, and where ``quality``
    (``variant_quality``) is given, the median quality of the variants' SAEs at the layers they selected from."""
    if variants < 1:
        raise ValueError(f"variants must be at least 1, got {variants}")
    columns = ["direction", "variants", "selected_in", "recovered_share", "best_is_primary_rank1_share",
               "median_best_cosine", "match_cosine"]  # fmt: skip
    if quality is not None:
        matches = matches.merge(quality[["seed", "layer", *QUALITY_COLUMNS]], on=["seed", "layer"], how="left")
        columns += [f"median_variant_{name}" for name in QUALITY_COLUMNS]
    rows = []
    for direction, group in matches.groupby("direction") if len(matches) else []:
        row = {
            "direction": direction, "variants": variants, "selected_in": len(group),
            "recovered_share": float(group.recovers_primary.sum()) / variants,
            "best_is_primary_rank1_share": float(group.best_is_primary_rank1.sum()) / variants,
            "median_best_cosine": float(group.best_cosine.median()), "match_cosine": MATCH_COSINE,
        }  # fmt: skip
        if quality is not None:
            row |= {f"median_variant_{name}": float(group[name].median()) for name in QUALITY_COLUMNS}
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)
