"""Phase 3 causal validation: steer generation along a latent's decoder direction and record what changes.

A unit is one (split, coefficient, latent, problem group); its records go to their own resumable file. The
units of one problem group run together, their rows sharing batches with a vector per row, as one step
(assets/steering.py), so a sweep fills its batches, spreads over devices and resumes after a crash.
Every problem group of a split also gets a *baseline* unit: the same problems generated unsteered, each in the
same batch as its steered rows, so that padding or batching noise never counts as an effect. Which latent
runs on which problems is set by the experiments (:data:`EXPERIMENTS`):

- correction: the correct-preferring latent on problems the model got wrong; success = now correct;
- preservation: the correct-preferring latent on problems it got right; success = still correct;
- corruption: the incorrect-preferring latent on problems it got right; success = now incorrect.

Control latents of the same layer (ones that do not discriminate, matched to the target on firing frequency) run
on the same problems at the same coefficient; on the validation split, random directions of the same norm join
them for an exploratory rank test. :mod:`~pva_dagster.study.steering.results` compares them problem by problem.
Correction and corruption ask a *superiority* question (does the target succeed more often than a control?);
preservation asks *non-inferiority* (does the target break correct code no more than a control does, within a
declared margin?).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pva_dagster.study.domain import GREEDY_TEMPERATURE, label_of
from pva_dagster.study.generation.residual import RESID_POST, HookPoint, check_point
from pva_dagster.study.generation.solutions import GenerationRun, Generator, SolutionGroup, Task, run_groups
from pva_dagster.study.steering.vectors import code_similarity, steering_vector

BASELINE, TARGET, CONTROL, RANDOM = "baseline", "target", "control", "random"
SUPERIORITY, NON_INFERIORITY = "superiority", "non-inferiority"


@dataclass(frozen=True)
class Experiment:
    latent_direction: str  # the preference ("correct" / "incorrect") of the latent that is added
    problems: str  # the unsteered label of the problems it is added on
    success: str  # the label after steering that counts as a success
    question: str  # SUPERIORITY (target > control) or NON_INFERIORITY (target no worse, within a margin)


EXPERIMENTS: dict[str, Experiment] = {
    "correction": Experiment("correct", problems="incorrect", success="correct", question=SUPERIORITY),
    "preservation": Experiment("correct", problems="correct", success="correct", question=NON_INFERIORITY),
    "corruption": Experiment("incorrect", problems="correct", success="incorrect", question=SUPERIORITY),
}


def superiority_experiment(direction: str) -> str:
    """The experiment a latent of ``direction`` is expected to win (correction / corruption): the one its
    coefficient is chosen by and that is confirmatory."""
    (name,) = [n for n, e in EXPERIMENTS.items() if e.latent_direction == direction and e.question == SUPERIORITY]
    return name


def problem_groups(direction: str) -> list[str]:
    """The problem labels a latent of ``direction`` is run on (one per experiment that uses it)."""
    return sorted({e.problems for e in EXPERIMENTS.values() if e.latent_direction == direction})


@dataclass(frozen=True)
class SteeringUnit:
    split: str  # the problems': NON_VALIDATION (the sweep) or "validation" (the reported run)
    coefficient: float  # as configured (relative: a multiple of the mean residual norm)
    scale: float  # the vector's norm actually added (0 for the baseline)
    direction: str  # the latent's preference, "correct" / "incorrect" ("none" for the baseline)
    kind: str  # target, control, random or baseline
    layer: int  # -1 for the baseline
    latent: int  # the SAE latent; for a random direction its index among them; -1 for the baseline
    problems: str  # the Phase 1.0 label of the problems it runs on

    @property
    def name(self) -> str:
        if self.kind == BASELINE:
            return f"{self.split}_baseline_on_{self.problems}"
        return (
            f"{self.split}_coef_{self.coefficient:+.3f}_{self.direction}_{self.kind}_L{self.layer}_{self.latent}"
            f"_on_{self.problems}"
        )


def vector_digest(decoder_direction: Any) -> str:
    """A hash of a decoder row's values (torch tensor), so a retrained SAE never reuses old steered records."""
    values = decoder_direction.detach().float().cpu().numpy()
    return hashlib.sha256(values.tobytes()).hexdigest()[:20]


def baseline_unit(split: str, problems: str) -> SteeringUnit:
    return SteeringUnit(split, 0.0, 0.0, "none", BASELINE, -1, -1, problems)


def run_units(
    jobs: Sequence[tuple[SteeringUnit, Sequence[Task], Any]],
    generator: Generator,
    *,
    out_dir: Path,
    seed: int,
    point: HookPoint = RESID_POST,
    log: Callable[[str], None] = print,
) -> list[tuple[SteeringUnit, pd.DataFrame]]:
    """Generate and label each unit's tasks greedily with its vector added at its layer's residual hook
    ``point`` (TransformerLens's ``blocks.L.hook_{point}``), all units' rows sharing batches (a problem's rows
    of every unit in one batch); each unit resumable from its own file.

    ``jobs``: (unit, tasks, decoder row: ``torch.Tensor[d_model]``, None for a baseline). Each stored record is
    keyed by a fingerprint of its task (the Phase 1.0 prompt it starts from), the unit, the decoder row added,
    the hook point (steered units) and the generator (the model, the sandbox limits): a record made from other
    inputs is generated again.
    """
    point = check_point(point)
    groups = [
        SolutionGroup(
            out_dir / f"{unit.name}.parquet", tasks,
            producer={
                "unit": asdict(unit), "decoder_row": None if row is None else vector_digest(row),
                # A baseline adds nothing, so it does not depend on the point.
                **({"steering_hook": point} if unit.kind != BASELINE else {}),
            },
            extra_columns={"unit": unit.name},
            steering=None if unit.kind == BASELINE else (unit.layer, steering_vector(row, unit.scale)),
        )
        for unit, tasks, row in jobs
    ]
    prompts = [task.prompt for _, tasks, _ in jobs for task in tasks]
    settings = generator.settings(GREEDY_TEMPERATURE, 1, prompts)
    log(f"{len(jobs)} steering units, {len(prompts)} rows, batches of {settings.batch_size}, steering at {point}")
    frames = run_groups(groups, generator, GenerationRun(settings, seed, steering_point=point, log=log))
    return [(unit, frame) for (unit, _, _), frame in zip(jobs, frames, strict=True)]


def unit_outcomes(unit: SteeringUnit, steered_records: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """One row per problem of a unit: its label unsteered (same batches) and steered, and how much the code moved."""
    merged = baseline.merge(steered_records, on="task_id", suffixes=("_before", "_after"), validate="one_to_one")
    if len(merged) != len(baseline):
        raise ValueError(f"unit {unit.name} has {len(merged)} of the baseline's {len(baseline)} problems")
    return pd.DataFrame({
        "split": unit.split, "coefficient": unit.coefficient, "scale": unit.scale, "direction": unit.direction,
        "kind": unit.kind, "layer": unit.layer, "latent": unit.latent, "problems": unit.problems,
        "task_id": merged.task_id.to_numpy(),
        "before": [label_of(p) for p in merged.passed_before],
        "after": [label_of(p) for p in merged.passed_after],
        "similarity": [
            code_similarity(a, b)
            for a, b in zip(merged.generated_code_before, merged.generated_code_after, strict=True)
        ],
        "identical": (merged.completion_before == merged.completion_after).to_numpy(),
    })


def noise_floor(phase1_records: pd.DataFrame, baselines: dict[SteeringUnit, pd.DataFrame]) -> pd.DataFrame:
    """Per baseline unit: how many problems changed label between Phase 1.0 and the unsteered rerun.

    The rerun uses other batches than Phase 1.0 did; any change is padding/batching noise, which is why
    effects are measured against the rerun, never against Phase 1.0.
    """
    rows = []
    for unit, records in baselines.items():
        merged = records.merge(phase1_records[["task_id", "passed"]], on="task_id", suffixes=("", "_phase1"))
        rows.append({
            "split": unit.split, "problems": unit.problems, "n": len(merged),
            "label_changed": int((merged.passed != merged.passed_phase1).sum()),
        })
    return pd.DataFrame(rows)


def combine_units(
    results: Sequence[tuple[SteeringUnit, pd.DataFrame]],
) -> tuple[pd.DataFrame, dict[SteeringUnit, pd.DataFrame]]:
    """Per-problem outcomes of every steered unit against its problem group's baseline, and the baselines.

    ``results``: each unit that ran with its records (:func:`run_units`), in any order: groups of units run as
    separate steps, on whichever device is free.
    """
    baselines = {unit: records for unit, records in results if unit.kind == BASELINE}
    by_group = {unit.problems: records for unit, records in baselines.items()}
    outcomes = []
    for unit, records in results:
        if unit.kind == BASELINE:
            continue
        if unit.problems not in by_group:
            raise ValueError(f"unit {unit.name} ran without the baseline of its {unit.problems} problems")
        outcomes.append(unit_outcomes(unit, records, by_group[unit.problems]))
    if not outcomes:
        raise ValueError("no steering unit had problems to run on")
    return pd.concat(outcomes, ignore_index=True), baselines
