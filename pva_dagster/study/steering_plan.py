"""Which problems and latents a Phase 3 steering sweep covers, decided before any generation runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pva_dagster.study.activation_index import load_residuals
from pva_dagster.study.solutions import Task
from pva_dagster.study.steering import mean_residual_norm, random_control_latents, resolve_coefficients
from pva_dagster.study.steering_sweep import TARGET_LABEL, SteeringUnit


def steering_baseline(records: pd.DataFrame, task_ids: Sequence[int], direction: str,
                      max_tasks: int | None, seed: int) -> pd.DataFrame:
    """Phase 1.0 records of the tasks a direction's latent is applied to (seeded subsample if capped)."""
    rows = records[records.task_id.isin(task_ids) & (records.passed == TARGET_LABEL[direction])]
    rows = rows.sort_values("task_id")
    if max_tasks is not None and len(rows) > max_tasks:
        rows = rows.sample(n=max_tasks, random_state=np.random.RandomState(seed)).sort_values("task_id")
    return rows.reset_index(drop=True)


def build_units(
    coefficients: Sequence[float],
    mode: str,
    mean_norms: Mapping[int, float],
    best: Mapping[str, tuple[int, int]],
    d_sae: Mapping[int, int],
    n_controls: int,
    seed: int,
) -> list[SteeringUnit]:
    """One unit per (coefficient, direction, target-or-control latent), controls from the target's layer."""
    units = []
    for direction, (layer, latent) in sorted(best.items()):
        scales = resolve_coefficients(mode, list(coefficients), mean_norms[layer])
        controls = random_control_latents(d_sae[layer], exclude=[latent], n=n_controls, seed=seed)
        for coefficient, scale in zip(coefficients, scales):
            units.append(SteeringUnit(coefficient, scale, direction, "target", layer, latent))
            units += [SteeringUnit(coefficient, scale, direction, "control", layer, c) for c in controls]
    return units


def tasks_from_records(records: pd.DataFrame, problems: pd.DataFrame) -> dict[int, Task]:
    """The Phase 1.0 prompt of each task (exactly as generated then) with its asserts, keyed by task_id."""
    by_id = problems.set_index("task_id")
    return {
        int(r.task_id): Task(
            task_id=int(r.task_id), prompt=r.prompt, test_list=tuple(by_id.test_list[r.task_id]),
            setup_code=by_id.test_setup_code[r.task_id] or "",
        )
        for r in records.itertuples()
    }


def mean_norm_at_layer(records: pd.DataFrame, layer: int) -> float:
    """Mean residual-stream norm at ``layer`` over the records' prompts (their Phase 1 NPZ files)."""
    files = [
        list(files)[list(layers).index(layer)] for files, layers in zip(records.activation_files, records.layers)
    ]
    return mean_residual_norm(load_residuals(files))
