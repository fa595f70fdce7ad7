"""Findings over re-drawn splits: is the rank-1 latent's validation AUROC a property of the model, or of one draw?

One run is one draw of the 50/10/40 split, and on another machine bfloat16 rounding moves a label or two; the
latents named then change. A *replicate* re-draws the split (stratified by difficulty exactly as
``problem_splits`` does, seed ``seed + r``) and redoes the whole selection on the same Phase 1.0 residuals and
SAE latents: discovery on the replicate's sae split (separation scores, the general-text cut-offs, rank 1 per
direction), then the rank-1 latent's AUROC on the replicate's validation split, beside surface baselines fitted
on the replicate's sae and hyperparams problems (prompt length, complexity, both).

**Null built the same way** (selection-aware): the labels are permuted once per null draw and the same resplits
and selection run on them; the statistic is the median rank-1 validation AUROC over the resplits. Its
p-value, (1 + null draws at or above the observed median) / (1 + draws), accounts for the selection itself (a
latent chosen as the best of thousands looks good on any draw), which a test of one chosen latent on one split
cannot. The probes and the likelihood-ratio tests are not redone per null draw: they are not part of that
statistic. The replicates' ``beyond_p`` are merged into one p-value, twice their median
(:func:`median_merged_p`), valid however the overlapping splits make them depend on each other.

**Stability**: how often each latent is rank 1 (selection frequency) and in the top k, and the mean pairwise
Jaccard overlap of the replicates' top-k sets. Latent *indices* are compared; an SAE trained with another seed
would need matching by decoder direction instead.

Only the greedy Phase 1.0 records enter (one row per task), as in the readouts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TypeVar

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pva_dagster.study.analysis.separation import rank_latents, separation_scores
from pva_dagster.study.domain import DIRECTIONS, SAE_SPLIT, VALIDATION_SPLIT
from pva_dagster.study.evaluation.beyond_difficulty import likelihood_ratio_test
from pva_dagster.study.evaluation.replicate_probes import replicate_probes
from pva_dagster.study.evaluation.validation import positive_class
from pva_dagster.study.problems.splits import split_problems
from pva_dagster.study.statistics import median_merged_p

RESPLITS = 20  # enough for a median and a 5-95 % range of the AUROC
NULL_DRAWS = 49  # the smallest p-value is 1 / (1 + NULL_DRAWS) = 0.02; each draw redoes every resplit
TOP_K = 10
NULL_COLUMNS = ["draw", "direction", "median_auroc"]
T = TypeVar("T")
SURFACE = {"prompt_length": ["prompt_tokens"], "complexity": ["complexity"],
           "length_and_complexity": ["prompt_tokens", "complexity"]}  # fmt: skip
SELECTION_AWARE_TEST = (
    "selection-aware permutation test: the median over resplits of the rank-1 latent's validation AUROC against "
    "the same statistic with labels permuted before discovery (the whole selection redone per draw)"
)


@dataclass(frozen=True)
class ReplicateDesign:
    seed: int
    resplits: int = RESPLITS
    null_draws: int = NULL_DRAWS
    top_n: int = 50  # Phase 2's candidates per direction before the general-text filter
    keep: int = TOP_K  # kept after it: the top-k set whose overlap is measured


@dataclass(frozen=True)
class Discovery:
    """What the selection needs besides labels and splits: each SAE layer's latents (tasks' order) and the
    general-text filter Phase 2 applied."""

    latents: Mapping[int, np.ndarray]  # layer -> float[tasks, d_sae]
    general_freq: Mapping[int, np.ndarray]  # layer -> each latent's general-text frequency
    cutoffs: Mapping[int, float]  # layer -> the cut-off the ranking used


def resplit(tasks: pd.DataFrame, seed: int) -> np.ndarray:
    """Each task's split in a fresh stratified draw (``problem_splits``' rule with another seed), in tasks' order."""
    drawn = split_problems(tasks[["task_id"]].assign(cyclomatic_complexity=tasks.complexity), seed=seed)
    return drawn.set_index("task_id").split.loc[tasks.task_id].to_numpy()


def _top(discovery: Discovery, correct: np.ndarray, rows: np.ndarray, design: ReplicateDesign) -> pd.DataFrame:
    scores = pd.concat(
        [separation_scores(m[rows], correct[rows], layer) for layer, m in sorted(discovery.latents.items())],
        ignore_index=True,
    )
    return rank_latents(scores, discovery.general_freq, design.top_n, dict(discovery.cutoffs), design.keep)


def _auroc(score: np.ndarray, positive: np.ndarray) -> float:
    return float(roc_auc_score(positive, score)) if 0 < positive.sum() < len(positive) else np.nan


def _surface(tasks: pd.DataFrame, correct: np.ndarray, fit: np.ndarray, scored: np.ndarray, seed: int) -> dict:
    """Each surface baseline's validation AUROC, fitted on the non-validation problems (no hyperparameter)."""
    if len(set(correct[fit])) < 2:
        return dict.fromkeys(SURFACE, np.nan)
    aurocs = {}
    for name, columns in SURFACE.items():
        model = make_pipeline(StandardScaler(), LogisticRegression(random_state=seed))
        model.fit(tasks.loc[fit, columns].to_numpy(float), correct[fit])
        aurocs[name] = _auroc(model.decision_function(tasks.loc[scored, columns].to_numpy(float)), correct[scored])
    return aurocs


def one_replicate(
    tasks: pd.DataFrame, correct: np.ndarray, splits: np.ndarray, discovery: Discovery, design: ReplicateDesign
) -> pd.DataFrame:
    """Per direction: the replicate's rank-1 latent, its validation AUROC, and its top-k latents."""
    sae, validation = splits == SAE_SPLIT, splits == VALIDATION_SPLIT
    if len(set(correct[sae])) < 2:
        return pd.DataFrame()
    top = _top(discovery, correct, sae, design)
    rows = []
    for direction in DIRECTIONS:
        mine = top[top.direction == direction]
        if mine.empty:
            continue
        best = mine.iloc[0]
        values = discovery.latents[int(best.layer)][validation, int(best.latent)]
        rows.append({
            "direction": direction, "layer": int(best.layer), "latent": int(best.latent),
            "auroc": _auroc(values, positive_class(correct[validation], direction)),
            "top": [f"L{int(r.layer)}/{int(r.latent)}" for r in mine.itertuples()],
        })
    return pd.DataFrame(rows)


def _beyond(tasks: pd.DataFrame, rows: pd.DataFrame, scored: np.ndarray, discovery: Discovery) -> pd.DataFrame:
    """``rows`` with each rank-1 latent's likelihood-ratio test beyond length and complexity on the ``scored``
    tasks: ``beyond_p`` (NaN where not estimable) and ``beyond_method`` (the fit, or why none)."""
    tests = [
        likelihood_ratio_test(
            positive_class(tasks.correct.to_numpy(bool)[scored], row.direction), tasks.prompt_tokens.to_numpy()[scored],
            tasks.complexity.to_numpy()[scored], discovery.latents[int(row.layer)][scored, int(row.latent)],
        )
        for row in rows.itertuples()
    ]
    return rows.assign(beyond_p=[t["p_lrt"] for t in tests], beyond_method=[t["lrt_method"] for t in tests])


def _replicate_rows(
    tasks: pd.DataFrame, residuals: Mapping[int, np.ndarray], discovery: Discovery, design: ReplicateDesign, r: int
) -> pd.DataFrame:
    """Replicate ``r``'s rows of :func:`replicate_table` (empty when its split selects nothing)."""
    correct = tasks.correct.to_numpy(bool)
    splits = resplit(tasks, design.seed + r)
    scored = splits == VALIDATION_SPLIT
    rows = one_replicate(tasks, correct, splits, discovery, design)
    if rows.empty:
        return rows
    surface = _surface(tasks, correct, ~scored, scored, design.seed)
    probes = replicate_probes(residuals, tasks, scored, design.seed + r)
    return _beyond(tasks, rows, scored, discovery).assign(
        replicate=r, validation_tasks=int(scored.sum()), **surface, **probes
    )


def _in_parallel(work: Callable[..., T], calls: Sequence[tuple], workers: int) -> list[T]:
    """``work(*call)`` for each call, in order, over ``workers`` processes (1: in this one). Each call depends on
    its arguments alone, so the result is the same for any number of workers; the arrays go to the workers as
    memory maps, and each worker's BLAS keeps to its share of the cores."""
    if workers <= 1 or len(calls) <= 1:
        return [work(*call) for call in calls]
    return list(Parallel(n_jobs=min(workers, len(calls)))(delayed(work)(*call) for call in calls))


def replicate_table(
    tasks: pd.DataFrame, residuals: Mapping[int, np.ndarray], discovery: Discovery, design: ReplicateDesign,
    workers: int = 1,
) -> pd.DataFrame:
    """One row per (replicate, direction): the selection and its validation AUROC beside the surface baselines'
    and the replicate's probes' (the same on both directions' rows: a probe has none), and the rank-1 latent's
    test beyond difficulty. ``tasks``: :func:`readout_inputs.readout_tasks`, with ``correct`` the study's label;
    ``residuals[layer]``: ``float[tasks, d_model]`` in ``tasks``' order, the dense probes' input. The replicates
    run over ``workers`` processes (the table is the same for any number)."""
    calls = [(tasks, residuals, discovery, design, r) for r in range(design.resplits)]
    frames = [frame for frame in _in_parallel(_replicate_rows, calls, workers) if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _null_draw(
    tasks: pd.DataFrame, permuted: np.ndarray, splits: list[np.ndarray], discovery: Discovery, design: ReplicateDesign,
    draw: int,
) -> list[dict[str, object]]:
    """One null draw's median rank-1 validation AUROC per direction over the resplits, under ``permuted`` labels."""
    found = pd.concat([one_replicate(tasks, permuted, s, discovery, design) for s in splits], ignore_index=True)
    return [
        {"draw": draw, "direction": direction, "median_auroc": float(group.auroc.median())}
        for direction, group in (found.groupby("direction") if len(found) else [])
    ]


def null_medians(tasks: pd.DataFrame, discovery: Discovery, design: ReplicateDesign, workers: int = 1) -> pd.DataFrame:
    """Per null draw and direction: the median rank-1 validation AUROC over the resplits, labels permuted. The
    permutations are drawn here, in order; the draws run over ``workers`` processes."""
    rng = np.random.default_rng(design.seed)
    splits = [resplit(tasks, design.seed + r) for r in range(design.resplits)]
    calls = [
        (tasks, rng.permutation(tasks.correct.to_numpy(bool)), splits, discovery, design, draw)
        for draw in range(design.null_draws)
    ]
    rows = [row for draw in _in_parallel(_null_draw, calls, workers) for row in draw]
    return pd.DataFrame(rows, columns=NULL_COLUMNS)


def _mean_jaccard(tops: list[list[str]]) -> float:
    pairs = [len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in combinations(tops, 2) if set(a) | set(b)]
    return float(np.mean(pairs)) if pairs else np.nan


def _probe_summary(group: pd.DataFrame) -> dict[str, float]:
    """The probes' validation AUROC over the replicates (median, 5-95 %) and how often the rank-1 latent beats
    the dense probe."""
    spread = {
        f"{probe}_{name}": float(statistic(group[f"{probe}_auroc"]))
        for probe in ("dense_probe", "length_regressed_probe")
        for name, statistic in (("median_auroc", pd.Series.median), ("auroc_p05", lambda s: s.quantile(0.05)),
                                ("auroc_p95", lambda s: s.quantile(0.95)))
    }  # fmt: skip
    both = group.auroc.notna() & group.dense_probe_auroc.notna()  # a replicate without a probe compares nothing
    beats = (group.auroc > group.dense_probe_auroc)[both]
    return {**spread, "beats_dense_probe": float(beats.mean()) if len(beats) else np.nan}


def replicate_summary(replicates: pd.DataFrame, null: pd.DataFrame, design: ReplicateDesign) -> pd.DataFrame:
    """Per direction: the rank-1 AUROC's distribution over replicates, the selection-aware test, how often the
    latent beats each surface baseline and the dense probe, the probes' AUROC over replicates, the merged test
    beyond difficulty, and the stability of the selection."""
    rows = []
    for direction, group in replicates.groupby("direction") if len(replicates) else []:
        median = float(group.auroc.median())
        mine = null[null.direction == direction].median_auroc.to_numpy()
        frequent = group.groupby(["layer", "latent"]).size().sort_values(ascending=False)
        (layer, latent), count = frequent.index[0], int(frequent.iloc[0])
        rows.append({
            "direction": direction, "replicates": len(group), "median_auroc": median,
            "auroc_p05": float(group.auroc.quantile(0.05)), "auroc_p95": float(group.auroc.quantile(0.95)),
            "null_median_p95": float(np.quantile(mine, 0.95)) if len(mine) else np.nan,
            "null_draws": len(mine),
            "p_selection_aware": (1 + int((mine >= median).sum())) / (1 + len(mine)) if len(mine) else np.nan,
            **{f"beats_{name}": float((group.auroc > group[name]).mean()) for name in SURFACE},
            **_probe_summary(group),
            "beyond_p_median": float(group.beyond_p.median()), "beyond_not_estimable": int(group.beyond_p.isna().sum()),
            # a test the data could not estimate counts as p = 1: no evidence, and the merge stays valid
            "p_beyond_merged": median_merged_p(group.beyond_p.fillna(1.0).to_numpy()),
            "most_selected": f"L{layer}/{latent}", "most_selected_share": count / len(group),
            "distinct_rank1": len(frequent), "top_k_jaccard": _mean_jaccard(list(group.top)),
        })
    return pd.DataFrame(rows)


def selection_frequency(replicates: pd.DataFrame) -> pd.DataFrame:
    """Per direction and latent: the share of replicates that rank it first and that hold it in their top k."""
    if replicates.empty:
        return pd.DataFrame(columns=["direction", "latent", "rank1_share", "top_k_share"])
    rows = []
    for direction, group in replicates.groupby("direction"):
        rank1 = (group.layer.map("L{}".format) + "/" + group.latent.astype(str)).value_counts()
        in_top = pd.Series([x for top in group.top for x in top]).value_counts()
        for latent, count in in_top.items():
            rows.append({"direction": direction, "latent": latent, "rank1_share": rank1.get(latent, 0) / len(group),
                         "top_k_share": count / len(group)})  # fmt: skip
    return pd.DataFrame(rows).sort_values(["direction", "rank1_share", "top_k_share"], ascending=[True, False, False],
                                          ignore_index=True)  # fmt: skip
