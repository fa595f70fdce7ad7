"""One split's steering, planned before any generation and combined after: which units run on which problems
along which decoder row (:func:`plan_split`), and the tables their records make (:func:`combined_tables`).

The steering assets only wire these: a plan step yields one group of units per problem group (each a step of its
own, on a device of its own), and a combining step turns the groups' records into the asset's tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pva_dagster.study.analysis.latent_scores import pooled
from pva_dagster.study.domain import NON_VALIDATION, NON_VALIDATION_SPLITS, SAE_SPLIT, VALIDATION_SPLIT
from pva_dagster.study.evaluation.cross_fitting import cross_folds
from pva_dagster.study.generation.solutions import Task
from pva_dagster.study.problems.splits import split_task_ids
from pva_dagster.study.steering.controls import MATCHING, random_directions
from pva_dagster.study.steering.plan import (
    build_units,
    layer_geometry,
    rank1_targets,
    steering_problems,
    steering_targets,
    tasks_from_records,
)
from pva_dagster.study.steering.results import control_tests, experiment_tests, unit_summary
from pva_dagster.study.steering.sweep import RANDOM, SteeringUnit, combine_units, noise_floor
from pva_dagster.study.steering.vectors import resolve_coefficients


class SteeringDesign(Protocol):
    """The study design's steering settings, as the plan reads them (read-only)."""

    @property
    def seed(self) -> int: ...
    @property
    def steering_controls(self) -> int: ...
    @property
    def steering_max_tasks(self) -> int | None: ...
    @property
    def steering_sweep_max_tasks(self) -> int | None: ...
    @property
    def steering_random_directions(self) -> int: ...
    @property
    def steering_hook(self) -> str: ...
    @property
    def steering_preservation_margin(self) -> float: ...


@dataclass(frozen=True)
class SteeringInputs:
    """What Phases 0-2 hand to steering (the asset inputs both steering assets take)."""

    top: pd.DataFrame  # Phase 2 top latents, discovery split
    scores: pd.DataFrame  # Phase 2 separation scores, discovery split (all groups)
    records: pd.DataFrame  # Phase 1.0 records, every partition
    problems: pd.DataFrame  # mbpp_problems
    splits: pd.DataFrame  # problem_splits
    extended: pd.DataFrame  # extended_tests: steered code is judged as Phase 1 judged it


@dataclass(frozen=True)
class UnitJob:
    """What one unit needs: the unit, its problems' tasks (Phase 1.0's prompts) and the decoder row added."""

    unit: SteeringUnit
    tasks: tuple[Task, ...]
    decoder_row: Any  # torch.Tensor[d_model] on the CPU, a copy of the SAE's W_dec row; None for a baseline


@dataclass(frozen=True)
class GroupJob:
    """What one step needs: every unit of one problem group (its baseline among them), run in shared batches."""

    problems: str  # the Phase 1.0 label of the problems
    jobs: tuple[UnitJob, ...]


@dataclass(frozen=True)
class SplitPlan:
    """What the combining step needs besides the units' records."""

    coefficient_mode: str
    coefficients: list[float]  # the sweep (non-validation) or every chosen coefficient (validation)
    phase1_labels: pd.DataFrame  # task_id, passed of Phase 1.0: the noise floor's reference
    margin: float  # preservation's non-inferiority margin
    facts: dict[str, Any]  # for metadata
    folds: pd.DataFrame  # task_id, fold of the sweep's problems (cross_fitting's folds); empty for validation


def steered_task_ids(splits: pd.DataFrame, split: str) -> list[int]:
    """The problems a split's steering may run on: the coefficient sweep (:data:`NON_VALIDATION`) covers the sae
    and hyperparams splits together, the reported run the validation split."""
    if split == NON_VALIDATION:
        return sorted(t for name in NON_VALIDATION_SPLITS for t in split_task_ids(splits, name))
    if split != VALIDATION_SPLIT:
        raise ValueError(f"steering runs on {NON_VALIDATION!r} (the sweep) or {VALIDATION_SPLIT!r}, not {split!r}")
    return split_task_ids(splits, split)


def sweep_folds(problems: Mapping[str, pd.DataFrame], splits: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, str]:
    """The sweep's problems (per label, :func:`steering_problems`) cut into cross-fitting's folds, stratified by
    label and difficulty bucket: ``(task_id, fold)`` and the folds' note."""
    steered = pd.concat([frame[["task_id"]].assign(correct=label == "correct") for label, frame in problems.items()])
    steered = steered.merge(splits[["task_id", "cyclomatic_complexity"]], on="task_id", validate="one_to_one")
    folds = cross_folds(
        steered.correct.to_numpy(), steered.cyclomatic_complexity.to_numpy(), np.ones(len(steered), bool), seed
    )
    return pd.DataFrame({"task_id": steered.task_id.to_numpy(), "fold": folds.fold}), folds.note


def plan_split(
    split: str, coefficients: Mapping[str, Sequence[float]] | Sequence[float], mode: str, inputs: SteeringInputs,
    load_sae: Callable[[int], Any], design: SteeringDesign, log: Callable[[str], None],
) -> tuple[list[GroupJob], SplitPlan]:
    """The units of one split (baselines first), grouped by problem group (its units share batches), and the
    plan the combining step reads.

    ``coefficients``: per direction, or one list for every direction; ``load_sae(layer)``: the SAE on the CPU. A
    unit without problems is left out with a log line (a small split may have no incorrect problems)."""
    records, splits = inputs.records, inputs.splits
    cap = design.steering_sweep_max_tasks if split == NON_VALIDATION else design.steering_max_tasks
    problems = steering_problems(records, steered_task_ids(splits, split), cap, design.seed)
    folds, fold_note = (
        sweep_folds(problems, splits, design.seed) if split == NON_VALIDATION else (pd.DataFrame(), "")
    )
    discovery = records[records.task_id.isin(split_task_ids(splits, SAE_SPLIT))]
    # The decoder rows are copied off the SAEs once here (on the CPU), so that a unit step needs no SAE.
    saes = {layer: load_sae(layer) for layer in sorted({layer for layer, _ in rank1_targets(inputs.top).values()})}
    geometry = {
        layer: layer_geometry(discovery, layer, sae.W_dec.detach().float().cpu().numpy()) for layer, sae in saes.items()
    }
    targets = steering_targets(inputs.top, pooled(inputs.scores), geometry, design.steering_controls, design.seed)
    norms = {layer: g.mean_norm for layer, g in geometry.items()}
    per_direction = {
        d: list(coefficients[d] if isinstance(coefficients, Mapping) else coefficients) for d in targets.best
    }
    scales = {d: resolve_coefficients(mode, per_direction[d], norms[layer]) for d, (layer, _) in targets.best.items()}
    # Random directions only on validation: the exploratory rank test of the reported result, not of the sweep.
    # Seeded per layer (two directions steered at one layer are ranked against rotations of the same draws), each
    # given its target's cosine with the mean residual.
    n_random = design.steering_random_directions if split == VALIDATION_SPLIT else 0
    units = build_units(split, per_direction, scales, targets.best, targets.controls, n_random)
    randoms = {
        direction: random_directions(
            geometry[layer].decoder.shape[1], n_random, design.seed + layer, geometry[layer].mean,
            targets.mean_cosine(direction),
        )
        for direction, (layer, _) in targets.best.items()
    }
    tasks = tasks_from_records(records, inputs.problems, inputs.extended)
    jobs = []
    for unit in units:
        unit_tasks = tuple(tasks[int(t)] for t in problems[unit.problems].task_id)
        if not unit_tasks:
            log(f"steering unit {unit.name} skipped: no {unit.problems} problems in the split")
            continue
        row = (  # [d_model]
            None if unit.layer < 0 else randoms[unit.direction][unit.latent] if unit.kind == RANDOM
            else saes[unit.layer].W_dec[unit.latent].detach().clone()
        )
        jobs.append(UnitJob(unit, unit_tasks, row))
    if not jobs:
        raise ValueError(f"no steering unit of the {split} split has problems to run on")
    labels = sorted({job.unit.problems for job in jobs})
    groups = [GroupJob(label, tuple(job for job in jobs if job.unit.problems == label)) for label in labels]
    facts = {
        "mean residual norm per layer (discovery split)": {str(k): float(v) for k, v in norms.items()},
        "controls": f"{design.steering_controls} per direction, seeded ({design.seed}); {MATCHING}",
        "control matching (target first)": {
            direction: frame.round(4).to_dict("records") for direction, frame in targets.matching.items()
        },
        "random directions (exploratory rank test)": n_random,
        "units": len(jobs),
        "steering hook (TransformerLens)": f"blocks.L.hook_{design.steering_hook}",
        "directions": sorted(targets.best),
        "problems per label": {label: len(frame) for label, frame in problems.items()},
        **({"coefficient folds": f"{int(folds.fold.max()) + 1} ({fold_note or 'label x difficulty'})"}
           if len(folds) else {}),
    }
    coefficients_run = sorted({c for values in per_direction.values() for c in values})
    plan = SplitPlan(
        mode, coefficients_run, records[["task_id", "passed"]].copy(), design.steering_preservation_margin, facts,
        folds,
    )
    return groups, plan


def combined_tables(
    plan: SplitPlan, results: Sequence[Sequence[tuple[SteeringUnit, pd.DataFrame]]]
) -> dict[str, pd.DataFrame]:
    """The tables of every unit of a split, by their role: per-problem outcomes, experiment tests, per-control
    tests, per-unit summary, noise floor."""
    outcomes, baselines = combine_units([unit for group in results for unit in group])
    per_control = control_tests(outcomes)
    return {
        "outcomes": outcomes, "tests": experiment_tests(outcomes, per_control, plan.margin), "controls": per_control,
        "units": unit_summary(outcomes), "noise": noise_floor(plan.phase1_labels, baselines),
    }
