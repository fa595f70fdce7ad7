"""How much Phase 2's top latents depend on the general-text filter's cut-off.

Phase 2 drops latents active on ``MAX_GENERAL_FREQ`` (2 %) or more of general-text positions. An absolute cut-off
means different things for SAEs of different density, so :func:`relative_density_cutoff` states one as a multiple
of the SAE's mean density, and :func:`cutoff_sensitivity` shows how the top latents move between cut-offs, against
the rule the ranking used (:func:`ranking_rule`), which it names in the table's ``attrs["reference"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pva_dagster.study.analysis.separation import KEEP, MAX_GENERAL_FREQ, TOP_N, rank_latents
from pva_dagster.study.domain import DIRECTIONS

SENSITIVITY_CUTOFFS: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05)
SENSITIVITY_COLUMNS: tuple[str, ...] = (
    "cutoff", "rule", "direction", "kept", "rank1", "top", "shared_with_reference", "entered", "left",
)


def mean_density(general_freq: np.ndarray) -> float:
    """The SAE's mean density: the fraction of general-text positions its average latent is active on."""
    freq = np.asarray(general_freq, dtype=np.float64)
    if freq.ndim != 1 or len(freq) == 0 or not ((freq >= 0) & (freq <= 1)).all():
        raise ValueError(f"general_freq must be a non-empty 1-D array of fractions, got shape {freq.shape}")
    return float(freq.mean())


def relative_density_cutoff(mean_density: float, multiple: float) -> float:
    """The general-text frequency cut-off ``multiple`` times an SAE's ``mean_density`` (capped at 1)."""
    if not 0 <= mean_density <= 1 or multiple <= 0:
        raise ValueError(f"need 0 <= mean_density <= 1 and multiple > 0, got {mean_density} and {multiple}")
    return min(mean_density * multiple, 1.0)


def layer_cutoffs(
    general_freq: Mapping[int, np.ndarray], absolute: float, density_multiple: float | None
) -> dict[int, float]:
    """Per layer, the general-text cut-off of the design: ``absolute``, or when ``density_multiple`` is set,
    that multiple of the layer's SAE's mean density (a latent is dropped when it fires on general text that many
    times as often as the SAE's average latent)."""
    if density_multiple is None:
        return {layer: absolute for layer in general_freq}
    return {
        layer: relative_density_cutoff(mean_density(freq), density_multiple) for layer, freq in general_freq.items()
    }


def ranking_rule(
    general_freq: Mapping[int, np.ndarray], override: float | None, absolute: float, density_multiple: float | None
) -> tuple[str, dict[int, float]]:
    """The rule Phase 2's ranking filters with, by name, and its per-layer cut-offs: ``override`` (a run's
    ``max_general_freq``) if set, else the design's (:func:`layer_cutoffs` of ``absolute`` and
    ``density_multiple``)."""
    if override is not None:
        return f"run config: absolute {override:.1%}", {layer: override for layer in general_freq}
    name = f"design: {density_multiple:g}x mean density" if density_multiple else f"design: absolute {absolute:.1%}"
    return name, layer_cutoffs(general_freq, absolute, density_multiple)


def _names(ranked: pd.DataFrame, direction: str) -> list[str]:
    rows = ranked[ranked.direction == direction].sort_values("rank")
    return [f"L{layer}/{latent}" for layer, latent in zip(rows.layer, rows.latent, strict=True)]


def cutoff_sensitivity(
    scores: pd.DataFrame,
    general_freq: Mapping[int, np.ndarray],
    cutoffs: Sequence[float] = SENSITIVITY_CUTOFFS,
    reference: float = MAX_GENERAL_FREQ,
    top_n: int = TOP_N,
    keep: int = KEEP,
    design: tuple[str, Mapping[int, float]] | None = None,
) -> pd.DataFrame:
    """SENSITIVITY_COLUMNS, one row per (cut-off, direction), from :func:`rank_latents` at each cut-off.

    ``scores``: :func:`separation_scores` rows of every layer; ``general_freq``: ``layer -> float[d_sae]``;
    ``design``: a named per-layer cut-off (the rule the ranking used, :func:`ranking_rule`) ranked beside the
    absolute ones (its ``cutoff`` is the mean over layers) and then the reference; without it the reference is
    the absolute ``reference``. ``top`` lists the kept latents in rank order as ``L{layer}/{latent}``;
    ``shared_with_reference`` counts those also kept at the reference; ``entered`` / ``left`` list those kept
    here but not there, and the reverse. ``attrs["reference"]`` names the reference's rule.
    """
    reference_rule: tuple[str, float | Mapping[int, float]] = (
        design if design is not None else (f"absolute {reference:.1%}", reference)
    )
    baseline = rank_latents(scores, general_freq, top_n=top_n, max_general_freq=reference_rule[1], keep=keep)
    rules: list[tuple[str, float, float | Mapping[int, float]]] = [
        (f"absolute {cutoff:.1%}", float(cutoff), float(cutoff)) for cutoff in cutoffs
    ]
    if design is not None:
        rules.append((design[0], float(np.mean(list(design[1].values()))), design[1]))
    rows = []
    for rule, cutoff, per_layer in rules:
        ranked = rank_latents(scores, general_freq, top_n=top_n, max_general_freq=per_layer, keep=keep)
        for direction in DIRECTIONS:
            here, there = _names(ranked, direction), _names(baseline, direction)
            rows.append({
                "cutoff": cutoff, "rule": rule, "direction": direction, "kept": len(here),
                "rank1": here[0] if here else "", "top": ", ".join(here),
                "shared_with_reference": len(set(here) & set(there)),
                "entered": ", ".join(n for n in here if n not in there),
                "left": ", ".join(n for n in there if n not in here),
            })
    table = pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))
    table.attrs["reference"] = reference_rule[0]
    return table
