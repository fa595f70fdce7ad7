"""What the stronger label changes: how many base-correct solutions the extended tests reject, and the discovery
latents and their validation AUROC under each label, side by side (exploratory).

Both labels are recorded for every Phase 1 solution (``passed_base``: MBPP's three asserts, shown in the prompt;
``passed_extended``: those and the extended tests made from the reference). The study reads the design's label;
this module reruns discovery (separation scores on the sae split, the same general-text cut-offs) and the
rank-1 latents' validation AUROC under each, from the same residuals and SAE latents.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pva_dagster.study.analysis.separation import rank_latents, separation_scores
from pva_dagster.study.domain import SAE_SPLIT, VALIDATION_SPLIT
from pva_dagster.study.evaluation.validation import auroc, positive_class
from pva_dagster.study.problems.difficulty import difficulty_bucket
from pva_dagster.study.problems.labels import LABEL_COLUMNS, LABEL_RULES
from pva_dagster.study.statistics import bootstrap_intervals


def _count(group: pd.DataFrame, column: str) -> int:
    return int(group[column].sum()) if column in group.columns else 0


def label_flips(tasks: pd.DataFrame) -> pd.DataFrame:
    """Per split and difficulty bucket (and in all): tasks, base-correct, extended-correct, and the base-correct
    solutions the extended tests reject (``flipped``, with its share of the base-correct)."""
    frame = tasks.assign(difficulty=[difficulty_bucket(int(c)) for c in tasks.complexity])
    rows = []
    for (split, difficulty), group in [*frame.groupby(["split", "difficulty"]), (("all", "all"), frame)]:
        base, extended = group.passed_base.to_numpy(bool), group.passed_extended.to_numpy(bool)
        flipped = int((base & ~extended).sum())
        rows.append({
            "split": split, "difficulty": difficulty, "tasks": len(group), "base_correct": int(base.sum()),
            "extended_correct": int(extended.sum()), "flipped": flipped,
            "flipped_share": flipped / base.sum() if base.sum() else np.nan,
            # Labels a changed judge recomputed from the stored code (and how many it changed)
            "judged_again": _count(group, "relabelled"),
            "changed_when_judged_again": _count(group, "label_changed_by_judge"),
        })
    return pd.DataFrame(rows)


def top_latents_by_label(
    tasks: pd.DataFrame, latents: Mapping[int, np.ndarray], general_freq: Mapping[int, np.ndarray],
    cutoffs: Mapping[int, float], top_n: int, keep: int,
) -> pd.DataFrame:
    """Phase 2's ranking of the sae split's latents redone under each label: ``rank_latents``' columns and
    ``label``."""
    sae = (tasks.split == SAE_SPLIT).to_numpy()
    ranked = []
    for rule in LABEL_RULES:
        correct = tasks[LABEL_COLUMNS[rule]].to_numpy(bool)[sae]
        scores = pd.concat(
            [separation_scores(matrix[sae], correct, layer) for layer, matrix in sorted(latents.items())],
            ignore_index=True,
        )
        ranked.append(rank_latents(scores, general_freq, top_n, cutoffs, keep).assign(label=rule))
    return pd.concat(ranked, ignore_index=True)


def rank1_auroc_by_label(
    tasks: pd.DataFrame, latents: Mapping[int, np.ndarray], ranked: pd.DataFrame, seed: int, resamples: int
) -> pd.DataFrame:
    """Each label's rank-1 latent per direction, its validation AUROC (bootstrap interval) under either label:
    one row per (discovered under, direction, scored under)."""
    validation = (tasks.split == VALIDATION_SPLIT).to_numpy()
    rows = []
    for row in ranked[ranked["rank"] == 1].itertuples():
        values = latents[int(row.layer)][validation, int(row.latent)]
        for rule in LABEL_RULES:
            correct = tasks[LABEL_COLUMNS[rule]].to_numpy(bool)[validation]
            positive = positive_class(correct, row.direction)
            interval = bootstrap_intervals(values, positive, float(np.max(values)), seed, resamples)
            rows.append({
                "discovered_under": row.label, "direction": row.direction, "layer": int(row.layer),
                "latent": int(row.latent), "scored_under": rule, "auroc": auroc(values, correct, row.direction),
                "auroc_ci_low": interval["auroc_ci_low"], "auroc_ci_high": interval["auroc_ci_high"],
                "n": int(validation.sum()), "n_correct": int(correct.sum()),
            })
    return pd.DataFrame(rows)
