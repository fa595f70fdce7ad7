"""The one declared confirmatory family, Holm-adjusted together; every other p-value is exploratory.

Declared before any validation split is read, per direction with a rank-1 latent, two tests over the re-drawn
splits of :mod:`replicates`: the median rank-1 validation AUROC against its selection-aware permutation null, and
the rank-1 latents' value beyond difficulty (:data:`LRT_TEST` per replicate, merged as twice the median p).
Later experiments (steering correction, corruption) join the same family as extra named p-values, so adding them
re-adjusts all members. The same two tests on the study's own split, *the primary replicate*, are reported beside
the family as exploratory: one draw of the split, whose selection they do not account for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pva_dagster.study.evaluation.beyond_difficulty import LRT_TEST
from pva_dagster.study.evaluation.readouts import BEST_LATENT
from pva_dagster.study.statistics import holm

CONFIRMATORY, EXPLORATORY = "confirmatory", "exploratory"
PRIMARY_REPLICATE = "exploratory: primary replicate"  # the rank-1 latents of the study's own split
FAMILY_COLUMNS: tuple[str, ...] = ("member", "p", "p_holm", "significant", "family")


def replicate_auroc_member(direction: str) -> str:
    return (f"rank-1 {direction} latent over re-drawn splits: median validation AUROC above the selection-aware "
            "permutation null")  # fmt: skip


def replicate_beyond_member(direction: str) -> str:
    return (f"rank-1 {direction} latent over re-drawn splits: beyond length and complexity ({LRT_TEST} per split, "
            "2 x median p)")  # fmt: skip


def primary_auroc_member(direction: str) -> str:
    return f"primary replicate, rank-1 {direction} latent: AUROC > 0.5 (label permutation)"


def primary_beyond_member(direction: str) -> str:
    return f"primary replicate, rank-1 {direction} latent: beyond length and complexity ({LRT_TEST})"


def confirmatory_family(named_p: Mapping[str, float], alpha: float = 0.05) -> pd.DataFrame:
    """FAMILY_COLUMNS, one row per declared member in the given order, Holm-adjusted over exactly these.

    A declared member without a p-value is an error, not a smaller family.
    """
    if not named_p:
        raise ValueError("the confirmatory family is empty")
    p = [float(v) for v in named_p.values()]
    bad = {name: value for name, value in named_p.items() if not 0 <= float(value) <= 1}  # NaN fails too
    if bad:
        raise ValueError(f"declared members without a p-value in [0, 1]: {bad}")
    adjusted = holm(p)
    return pd.DataFrame({
        "member": list(named_p), "p": np.array(p), "p_holm": adjusted, "significant": adjusted < alpha,
        "family": CONFIRMATORY,
    }, columns=list(FAMILY_COLUMNS))


def _rank1_row(table: pd.DataFrame, direction: str, layer: int) -> pd.Series:
    rows = table[(table.readout == BEST_LATENT) & (table.direction == direction) & (table.layer == layer)]
    if len(rows) != 1:
        raise ValueError(f"need one {BEST_LATENT} row for {direction} at layer {layer}, found {len(rows)}")
    return rows.iloc[0]


def declared_p_values(
    summary: pd.DataFrame, directions: Sequence[str], extra: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The family's named p-values: per direction of ``directions`` (those with a rank-1 latent) the
    selection-aware p (``p_selection_aware``) and the merged beyond-difficulty p (``p_beyond_merged``) of
    :func:`replicate_summary`, then ``extra`` (e.g. steering), whose names must not collide with these. A declared
    test that the data could not estimate (no replicate found a latent for the direction, or no null draw) enters
    as p = 1: the family keeps its declared size, and a test without evidence rejects nothing."""
    named: dict[str, float] = {}
    for direction in directions:
        rows = summary[summary.direction == direction] if len(summary) else summary
        for member, column in ((replicate_auroc_member, "p_selection_aware"),
                               (replicate_beyond_member, "p_beyond_merged")):
            named[member(direction)] = float(rows[column].iloc[0]) if len(rows) else np.nan
    named = {name: 1.0 if np.isnan(p) else p for name, p in named.items()}
    clash = sorted(set(named) & set(extra or {}))
    if clash:
        raise ValueError(f"extra members {clash} repeat declared ones")
    return {**named, **(extra or {})}


def primary_replicate_p_values(
    readouts: pd.DataFrame, beyond: pd.DataFrame, rank1_layers: Mapping[str, int]
) -> dict[str, float]:
    """Exploratory, the study's own split: per direction in ``rank1_layers`` (direction -> layer of its rank-1
    latent) the AUROC permutation p from :func:`readout_table` and the LRT p from :func:`beyond_difficulty_table`
    (NaN where the table says it is not estimable)."""
    named: dict[str, float] = {}
    for direction, layer in rank1_layers.items():
        named[primary_auroc_member(direction)] = float(_rank1_row(readouts, direction, layer).auroc_p_permutation)
        named[primary_beyond_member(direction)] = float(_rank1_row(beyond, direction, layer).p_lrt)
    return named


def family_labels(table: pd.DataFrame, rank1_layers: Mapping[str, int]) -> pd.Series:
    """Per row of a readout or beyond-difficulty table: :data:`PRIMARY_REPLICATE` for the rank-1 latents' rows
    (the primary replicate's tests of them), "exploratory" for every other."""
    declared = pd.Series(False, index=table.index)
    for direction, layer in rank1_layers.items():
        declared |= (table.readout == BEST_LATENT) & (table.direction == direction) & (table.layer == layer)
    return declared.map({True: PRIMARY_REPLICATE, False: EXPLORATORY})
