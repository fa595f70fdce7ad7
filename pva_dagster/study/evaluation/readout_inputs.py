"""What the readouts read, from Phase 0-2 outputs: one row per task (its greedy Phase 1.0 solution's label and
prompt, its difficulty, its split), the residuals of every stored layer and the rank-1 latents of Phase 2.

One row a task, not a sample: Phase 1.2's samples of a task share its prompt residual, so counting them as
independent rows would inflate every test (the readouts use the greedy label, as Phase 2's discovery does).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pva_dagster.study.analysis.activation_index import load_residuals
from pva_dagster.study.analysis.separation import separation_scores
from pva_dagster.study.domain import SPLIT_NAMES
from pva_dagster.study.generation.solutions import PASSED_BEFORE_RELABEL, RELABELLED
from pva_dagster.study.problems.labels import LABEL_COLUMNS

RANK1 = 1


def readout_tasks(records: pd.DataFrame, splits: pd.DataFrame, difficulty: pd.DataFrame) -> pd.DataFrame:
    """``task_id, split, correct, prompt_tokens, complexity, prompt_text`` (``correct``: the study's label) and
    both labels (``passed_base``, ``passed_extended``), one row per task, by task_id.

    ``records``: Phase 1.0 records (one greedy sample per task); ``splits``: ``problem_splits``; ``difficulty``:
    ``difficulty_mapping``."""
    duplicated = records.task_id[records.task_id.duplicated()]
    if len(duplicated):
        raise ValueError(f"Phase 1.0 holds tasks {sorted(set(duplicated))[:5]} more than once")
    tasks = records[["task_id", "passed", *LABEL_COLUMNS.values(), "n_prompt_tokens", "prompt"]].merge(
        splits[["task_id", "split"]], on="task_id", validate="one_to_one"
    ).merge(difficulty[["task_id", "cyclomatic_complexity"]], on="task_id", validate="one_to_one")
    return pd.DataFrame({
        "task_id": tasks.task_id.astype(int), "split": tasks.split, "correct": tasks.passed.astype(bool),
        "prompt_tokens": tasks.n_prompt_tokens.astype(int), "complexity": tasks.cyclomatic_complexity.astype(int),
        "prompt_text": tasks.prompt.astype(str), **{c: tasks[c].astype(bool) for c in LABEL_COLUMNS.values()},
        **relabel_columns(records.set_index("task_id").loc[tasks.task_id]),
    }).sort_values("task_id", ignore_index=True)


def relabel_columns(records: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per record: judged again from its stored code by a changed judge, and whether that changed ``passed``."""
    if RELABELLED not in records.columns:
        return {RELABELLED: np.zeros(len(records), bool), "label_changed_by_judge": np.zeros(len(records), bool)}
    again = records[RELABELLED].fillna(False).to_numpy(bool)
    before = records[PASSED_BEFORE_RELABEL].to_numpy(object)
    changed = again & np.array(
        [b is not None and bool(b) != bool(p) for b, p in zip(before, records.passed, strict=True)], dtype=bool
    )
    return {RELABELLED: again, "label_changed_by_judge": changed}


def why_not_computable(tasks: pd.DataFrame) -> str | None:
    """Why the readouts cannot be fitted and scored (a split without one class under either label), or None."""
    missing = [
        f"{split} has {int(tasks[column][tasks.split == split].sum())} of {int((tasks.split == split).sum())} "
        f"{column}"
        for split in SPLIT_NAMES for column in LABEL_COLUMNS.values()
        if not 0 < tasks[column][tasks.split == split].sum() < (tasks.split == split).sum()
    ]
    return "; ".join(missing) + ": every split needs both classes under both labels" if missing else None


def residuals_by_layer(index: pd.DataFrame, task_ids: pd.Series) -> dict[int, np.ndarray]:
    """``layer -> float32[tasks, d_model]``, rows in ``task_ids``' order, from an activation index (one greedy
    row per task and layer: ``activation_index.activation_index``)."""
    order = pd.DataFrame({"task_id": task_ids.to_numpy(), "row": np.arange(len(task_ids))})
    matrices = {}
    for layer, rows in index.groupby("layer", sort=True):
        rows = rows.merge(order, on="task_id", validate="one_to_one").sort_values("row")
        if len(rows) != len(task_ids):
            raise ValueError(f"layer {layer}: residuals of {len(rows)} of {len(task_ids)} tasks")
        matrices[int(layer)] = load_residuals(rows.file.tolist())
    return matrices


def rank1_latents(top: pd.DataFrame) -> tuple[dict[tuple[int, str], int], dict[str, int]]:
    """From Phase 2's top latents (discovery split): per (layer, direction) the best-ranked latent of that layer
    (the per-layer readout), and per direction the layer of its rank-1 latent (the confirmatory one; a direction
    whose every candidate the general-text filter dropped has none)."""
    per_layer = {
        (int(layer), str(direction)): int(rows.sort_values("rank").latent.iloc[0])
        for (layer, direction), rows in top.groupby(["layer", "direction"])
    }
    rank1 = {str(row.direction): int(row.layer) for row in top[top["rank"] == RANK1].itertuples()}
    return per_layer, rank1



def discovery_latents_on(
    top: pd.DataFrame, latents: dict[int, np.ndarray], tasks: pd.DataFrame, split: str
) -> pd.DataFrame:
    """Phase 2's discovery latents (``top``: their direction, rank, layer, latent and discovery score) scored
    again on ``split``, one row per task: the separation-score columns beside the discovery ones."""
    rows = (tasks.split == split).to_numpy()
    correct = tasks.correct.to_numpy(bool)[rows]
    scored = pd.concat(
        [separation_scores(matrix[rows], correct, layer) for layer, matrix in sorted(latents.items())],
        ignore_index=True,
    )
    discovery = top[["direction", "rank", "layer", "latent", "score"]].rename(columns={"score": "discovery_score"})
    return discovery.merge(scored, on=["layer", "latent"], validate="one_to_one").assign(split=split)
