"""Which problems and latents a Phase 3 steering run covers, decided before any generation runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pva_dagster.study.analysis.activation_index import load_residuals
from pva_dagster.study.domain import label_of
from pva_dagster.study.generation.solutions import Task, tasks_from_problems
from pva_dagster.study.steering.controls import latent_properties, matched_controls
from pva_dagster.study.steering.sweep import (
    CONTROL,
    EXPERIMENTS,
    RANDOM,
    TARGET,
    SteeringUnit,
    baseline_unit,
    problem_groups,
    superiority_experiment,
)
from pva_dagster.study.steering.vectors import mean_residual_norm


def steering_problems(
    records: pd.DataFrame, task_ids: Sequence[int], max_tasks: int | None, seed: int
) -> dict[str, pd.DataFrame]:
    """Phase 1.0 records of a split's problems per label, in task order (a seeded subsample if capped)."""
    groups = {}
    for label in ("correct", "incorrect"):
        rows = records[records.task_id.isin(task_ids) & (records.passed.map(label_of) == label)].sort_values("task_id")
        if max_tasks is not None and len(rows) > max_tasks:
            rows = rows.sample(n=max_tasks, random_state=np.random.RandomState(seed)).sort_values("task_id")
        groups[label] = rows.reset_index(drop=True)
    return groups


def build_units(
    split: str,
    coefficients: Mapping[str, Sequence[float]],
    scales: Mapping[str, Sequence[float]],
    best: Mapping[str, tuple[int, int]],
    controls: Mapping[str, Sequence[int]],
    random_directions: int = 0,
) -> list[SteeringUnit]:
    """The baselines, then per direction, coefficient and problem group: the target and its controls, and on the
    problems of the direction's superiority experiment ``random_directions`` random directions (latent = index).

    ``coefficients[direction]`` and ``scales[direction]`` (the norm each coefficient resolves to) are parallel;
    ``best[direction] = (layer, latent)``; ``controls[direction]`` are latents of that layer.
    """
    units = [baseline_unit(split, label) for label in ("correct", "incorrect")]
    for direction, (layer, latent) in sorted(best.items()):
        ranked_on = EXPERIMENTS[superiority_experiment(direction)].problems
        for coefficient, scale in zip(coefficients[direction], scales[direction], strict=True):
            for problems in problem_groups(direction):
                kinds = [(TARGET, latent), *((CONTROL, c) for c in controls[direction])]
                if problems == ranked_on:
                    kinds += [(RANDOM, i) for i in range(random_directions)]
                units += [
                    SteeringUnit(split, coefficient, scale, direction, kind, layer, index, problems)
                    for kind, index in kinds
                ]
    return units


def tasks_from_records(
    records: pd.DataFrame, problems: pd.DataFrame, extended: pd.DataFrame | None = None
) -> dict[int, Task]:
    """The Phase 1.0 prompt of each task (exactly as generated then) with its asserts and extended tests (judged
    as Phase 1 judged them), keyed by task_id."""
    rows = problems[problems.task_id.isin(records.task_id)]
    prompts = {int(task_id): prompt for task_id, prompt in zip(records.task_id, records.prompt, strict=True)}
    return {task.task_id: task for task in tasks_from_problems(rows, prompts, extended)}


@dataclass(frozen=True)
class Targets:
    """Per direction: the latent steered (rank 1 on the discovery split) and its matched controls."""

    best: dict[str, tuple[int, int]]  # direction -> (layer, latent)
    controls: dict[str, list[int]]  # direction -> latents of that layer
    # direction -> the target's properties (first row) and its controls' (controls.latent_properties), with
    # each control's mismatch in calipers and whether it is matched
    matching: dict[str, pd.DataFrame]

    def mean_cosine(self, direction: str) -> float:
        """The target's decoder-row cosine with the mean residual (random directions are given the same)."""
        return float(self.matching[direction].mean_cosine.iloc[0])


def rank1_targets(top: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per direction, the (layer, latent) ranked first on the discovery split: the latent steered."""
    return {d: (int(r.layer), int(r.latent)) for d, r in top[top["rank"] == 1].set_index("direction").iterrows()}


def steering_targets(
    top: pd.DataFrame, pooled_scores: pd.DataFrame, layer_geometry: Mapping[int, LayerGeometry], n_controls: int,
    seed: int,
) -> Targets:
    """From the discovery split's top latents and pooled scores (Phase 2) and each steered layer's decoder and
    mean residual: the targets and their seeded, matched controls."""
    best, controls, matching = rank1_targets(top), {}, {}
    for direction, (layer, latent) in best.items():
        geometry = layer_geometry[layer]
        properties = latent_properties(pooled_scores[pooled_scores.layer == layer], geometry.decoder, geometry.mean)
        chosen = matched_controls(properties, latent, top.latent[top.layer == layer].tolist(), n_controls, seed)
        controls[direction] = chosen.latent.astype(int).tolist()
        target = properties[properties.latent == latent].assign(mismatch=0.0, matched=True)
        matching[direction] = pd.concat([target, chosen], ignore_index=True)
    return Targets(best, controls, matching)


@dataclass(frozen=True)
class LayerGeometry:
    """What matching a control needs of a layer besides Phase 2's scores."""

    decoder: np.ndarray  # the SAE's W_dec, float[d_sae, d_model]
    mean: np.ndarray  # the discovery split's mean residual, float[d_model]
    mean_norm: float  # the mean of the discovery residuals' norms (relative coefficients multiply it)


def layer_geometry(records: pd.DataFrame, layer: int, decoder: np.ndarray) -> LayerGeometry:
    """``layer``'s decoder with the mean residual and mean residual norm over the records' prompts (their Phase 1
    NPZ files)."""
    files = [
        list(files)[list(layers).index(layer)]
        for files, layers in zip(records.activation_files, records.layers, strict=True)
    ]
    residuals = load_residuals(files)
    mean = residuals.astype(np.float64).mean(axis=0)
    return LayerGeometry(np.asarray(decoder, dtype=np.float32), mean, mean_residual_norm(residuals))
