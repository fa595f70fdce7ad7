"""Across SAE seeds: does the selection find the same direction when the SAE is trained from another seed?

The replicates (``replicates.py``) redraw the split on one SAE; here the SAE is redrawn too. Each seed variant
(``embedded_saes.py``: trained alike from the same residuals, its seed alone differing) encodes the same Phase 1.0
residuals, gets its own general-text filter (its frequencies, cut-offs by the rule the ranking used) and redoes
the selection (:func:`~pva_dagster.study.evaluation.replicates.one_replicate`) on the study's own split and on the
replicate analysis' re-drawn splits (``resplit(tasks, seed + r)``). Its rank-1 latent per direction is matched to
the primary's rank-1 latent on the same split by decoder direction (``sae_variants.match_selection``): an index
means nothing across seeds, a direction does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pva_dagster.study import outputs
from pva_dagster.study.analysis.sae import encode
from pva_dagster.study.analysis.sae_quality import ENCODE_BATCH
from pva_dagster.study.analysis.sae_variants import (
    MATCH_COLUMNS,
    MATCH_COSINE,
    Decoders,
    decoders,
    match_selection,
    variant_summary,
)
from pva_dagster.study.evaluation.replicates import Discovery, ReplicateDesign, one_replicate, resplit
from pva_dagster.study.plots import markdown_table

STUDY_SPLIT = "study"  # the split of problem_splits; re-drawn splits are named "resplit <r>"
SELECTIONS, SUMMARY, QUALITY = outputs.SAE_SEED_TABLES
SELECTION_COLUMNS = (
    "seed", "split", "split_seed", *(c for c in MATCH_COLUMNS if c != "seed"), "auroc", "primary_layer",
    "primary_latent", "primary_auroc",
)
SUMMARY_COLUMNS = (
    "direction", "variants", "selected_in", "recovered_share", "best_is_primary_rank1_share", "median_best_cosine",
    "match_cosine", "resplit_recovered_share", "median_auroc", "primary_median_auroc",
)
CutoffRule = Callable[[Mapping[int, np.ndarray]], Mapping[int, float]]  # general_freq by layer -> cut-off by layer


@dataclass(frozen=True)
class SeedSAE:
    """One seed's SAEs as the selection and the matching see them."""

    seed: int
    discovery: Discovery  # its latents of the tasks, its general-text frequencies and cut-offs
    decoders: Decoders


def seed_sae(
    seed: int, saes: Mapping[int, Any], residuals: Mapping[int, np.ndarray], general_freq: Mapping[int, np.ndarray],
    cutoffs: CutoffRule,
) -> SeedSAE:
    """The SAEs of ``seed`` (layer -> SAELens SAE) over the tasks' residuals (layer -> float[tasks, d_model]),
    filtered by their own general-text frequencies under the ranking's rule."""
    latents = {layer: encode(sae, residuals[layer], ENCODE_BATCH) for layer, sae in sorted(saes.items())}
    return SeedSAE(seed, Discovery(latents, general_freq, dict(cutoffs(general_freq))), decoders(saes))


def empty_tables(note: str) -> dict[str, pd.DataFrame]:
    """The tables with no row, each saying why in ``attrs["note"]``."""
    tables = {
        SELECTIONS: pd.DataFrame(columns=list(SELECTION_COLUMNS)), SUMMARY: pd.DataFrame(columns=list(SUMMARY_COLUMNS)),
        QUALITY: pd.DataFrame(columns=["seed", "layer"]),
    }
    for table in tables.values():
        table.attrs["note"] = note
    return tables


def without_variants(why: str) -> dict[str, pd.DataFrame]:
    """The empty tables of a run without seed variants, saying ``why`` there are none."""
    return empty_tables(f"no SAE seed variants: {why}")


def _draws(tasks: pd.DataFrame, design: ReplicateDesign) -> list[tuple[str, int | None, np.ndarray]]:
    """The study's own split (its seed is problem_splits', not recorded here), then the replicates' re-draws."""
    study = (STUDY_SPLIT, None, tasks.split.to_numpy())
    redrawn = [(f"resplit {r}", design.seed + r, resplit(tasks, design.seed + r)) for r in range(design.resplits)]
    return [study, *redrawn]


def _selections(
    tasks: pd.DataFrame, primary: SeedSAE, variants: Sequence[SeedSAE], design: ReplicateDesign
) -> pd.DataFrame:
    correct = tasks.correct.to_numpy(bool)
    frames = []
    for name, split_seed, splits in _draws(tasks, design):
        mine = one_replicate(tasks, correct, splits, primary.discovery, design)
        theirs = (
            mine[["direction", "layer", "latent", "auroc"]].set_axis(
                ["direction", "primary_layer", "primary_latent", "primary_auroc"], axis=1)
            if len(mine) else pd.DataFrame(columns=["direction", "primary_layer", "primary_latent", "primary_auroc"])
        )  # fmt: skip
        for variant in variants:
            chosen = one_replicate(tasks, correct, splits, variant.discovery, design)
            if chosen.empty:
                continue
            matches = match_selection(primary.decoders, variant.decoders, mine, chosen, variant.seed)
            rows = matches.merge(chosen[["direction", "auroc"]], on="direction")
            rows = rows.merge(theirs, on="direction", how="left")
            frames.append(rows.assign(split=name, split_seed=split_seed))
    if not frames:
        return pd.DataFrame(columns=list(SELECTION_COLUMNS))
    table = pd.concat(frames, ignore_index=True)[list(SELECTION_COLUMNS)]
    return table.astype({"split_seed": "Int64", "primary_layer": "Int64", "primary_latent": "Int64"})


def _summary(selections: pd.DataFrame, variants: int, quality: pd.DataFrame | None) -> pd.DataFrame:
    """variant_summary of the study's split, beside each direction's figures over variants x re-drawn splits."""
    study = selections[selections.split == STUDY_SPLIT]
    summary = variant_summary(study, variants, quality)
    resplits = selections[selections.split != STUDY_SPLIT]
    draws = variants * resplits.split.nunique() if len(resplits) else 0
    over = pd.DataFrame([
        {"direction": direction, "resplit_recovered_share": float(group.recovers_primary.sum()) / draws,
         "median_auroc": float(group.auroc.median()), "primary_median_auroc": float(
             group.drop_duplicates("split").primary_auroc.median())}
        for direction, group in resplits.groupby("direction")
    ], columns=["direction", "resplit_recovered_share", "median_auroc", "primary_median_auroc"])  # fmt: skip
    return summary.merge(over, on="direction", how="outer")


def seed_replicate_tables(
    tasks: pd.DataFrame, primary: SeedSAE, variants: Sequence[SeedSAE], design: ReplicateDesign,
    quality: pd.DataFrame, no_variants: str, labels: Mapping[int, str] | None = None,
) -> dict[str, pd.DataFrame]:
    """``outputs.SAE_SEED_TABLES``: per (variant, split, direction) the variant's rank-1 latent with its validation
    AUROC and its match to the primary's (``SELECTION_COLUMNS``); per direction the summary (``SUMMARY_COLUMNS``);
    and ``quality`` (``sae_variants.variant_quality`` of the variants, per seed and layer).

    ``tasks``: ``readout_tasks`` (its ``split``: the study's own); ``no_variants``: why there are none, the note of
    the empty tables when ``variants`` is empty (never a silent empty table); ``labels``: each variant's name (seed
    -> label; default "seed <seed>"), the quality table's ``variant`` column."""
    if not variants:
        return without_variants(no_variants)
    selections = _selections(tasks, primary, variants, design)
    named = quality.assign(variant=[(labels or {}).get(seed, f"seed {seed}") for seed in quality.seed])
    return {SELECTIONS: selections, SUMMARY: _summary(selections, len(variants), quality), QUALITY: named}


def seed_section(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """The report's section: the summary table, or the note that says why there is none."""
    summary = tables[SUMMARY]
    title = "## Across SAE seeds"
    if summary.empty:
        return [title, f"Not computed: {summary.attrs.get('note', 'no seed variant selected a latent')}."]
    return [
        title,
        (f"Each of {int(summary.variants.max())} other SAEs per layer (trained alike but from another seed, or a "
         "release's other widths and L0 levels: the quality table's `variant`) redoes the selection on the same "
         "residuals (its own general-text filter) on the study's split and on the replicates' "
         "re-drawn splits. `recovered_share`: the share of variants whose rank-1 latent's decoder row is within "
         f"|cosine| {MATCH_COSINE} of the primary's rank-1 latent on the study's split "
         "(`resplit_recovered_share`: over variants x re-drawn splits); `median_auroc`: the variants' rank-1 "
         "validation AUROC over variants x re-drawn splits, beside the primary's (`primary_median_auroc`)."),
        markdown_table(summary),
    ]
