"""Phase 3 steering: sweep the coefficients on the hyperparams split, choose one per direction there, then run
only the chosen ones on the validation split (the reported result), each against random-latent controls.

Each of the two assets is a graph of steps: a plan (which units, on which problems), one step per unit (mapped
from the plan's dynamic output, each on a device of its own, resumable from its own file), and one step that
combines the units' records. On a Dask cluster the unit steps spread over every GPU worker (README "Running on a
cluster"); in-process they run one after the other, as the loop did.
"""

from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, field_validator

from pva_dagster.assets.loading import model_on_device
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_VALIDATION
from pva_dagster.resources import DataStore, DeviceSource, LanguageModel, SAESource, Sandbox, StudyDesign
from pva_dagster.resources.choices import one_of
from pva_dagster.study import storage
from pva_dagster.study.analysis.latent_scores import pooled
from pva_dagster.study.generation.models import stop_token_ids
from pva_dagster.study.generation.phase1_files import phase1_dataset_files, read_phase1_records
from pva_dagster.study.generation.solutions import Task
from pva_dagster.study.plots import line_sweep, markdown_table
from pva_dagster.study.steering.plan import build_units, mean_norm_at_layer, steering_problems, tasks_from_records
from pva_dagster.study.steering.results import (
    COEFFICIENT_RULE,
    choose_coefficients,
    experiment_tests,
    sweep_series,
    unit_summary,
)
from pva_dagster.study.steering.sweep import BASELINE, SteeringUnit, combine_units, noise_floor, run_unit
from pva_dagster.study.steering.vectors import (
    COEFFICIENT_MODES,
    CONTROL_MAX_ABS_SCORE,
    control_latents,
    resolve_coefficients,
)

# Values passed between the steps of a graph are pickled beside the data (every worker sees that folder).
STEP_IO = "step_io_manager"


class SteeringConfig(dg.Config):
    coefficient_mode: str = Field(default="relative", description="'relative' (x mean residual norm) or 'absolute'.")
    coefficients: list[float] | None = Field(
        default=None, description="Override the profile's hyperparams sweep (nonzero values; 0 is the baseline)."
    )

    @field_validator("coefficient_mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        return one_of("coefficient mode", mode, COEFFICIENT_MODES)

    @field_validator("coefficients")
    @classmethod
    def _nonzero(cls, values: list[float] | None) -> list[float] | None:
        if values is not None and (not values or 0.0 in values):
            raise ValueError(f"coefficients must be nonzero and at least one (0 is the baseline), got {values}")
        return values


@dataclass(frozen=True)
class UnitJob:
    """What one unit step needs: the unit and its problems' tasks (Phase 1.0's prompts)."""

    unit: SteeringUnit
    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class SplitPlan:
    """What the combining step needs besides the units' records."""

    split: str
    coefficient_mode: str
    coefficients: list[float]  # the sweep (hyperparams) or every chosen coefficient (validation)
    phase1_labels: pd.DataFrame  # task_id, passed of Phase 1.0: the noise floor's reference
    facts: dict[str, Any]  # for metadata


def step_key(unit: SteeringUnit) -> str:
    """The unit's name as a Dagster mapping key (letters, digits and _ only): ``+0.500`` -> ``p0_500``."""
    return unit.name.replace("+", "p").replace("-", "m").replace(".", "_")


def _plan_split(
    context: dg.OpExecutionContext, split: str, coefficients: dict[str, list[float]] | list[float], mode: str,
    mbpp_problems: pd.DataFrame, problem_splits: pd.DataFrame, study_design: StudyDesign, data_store: DataStore,
) -> tuple[list[UnitJob], SplitPlan]:
    """The units of one split (baselines first) with their tasks; ``coefficients`` per direction or for all."""
    layout, design = data_store.layout, study_design
    top = pd.read_parquet(layout.phase2_dir("sae") / "top_latents.parquet")
    best = {d: (int(r.layer), int(r.latent)) for d, r in top[top["rank"] == 1].set_index("direction").iterrows()}
    scores = pooled(pd.read_parquet(layout.phase2_dir("sae") / "separation_scores.parquet"))
    controls = {
        d: control_latents(scores[scores.layer == layer], top.latent[top.layer == layer].tolist(),
                           design.steering_controls, design.seed)
        for d, (layer, _) in best.items()
    }
    records = read_phase1_records(phase1_dataset_files(layout, design.max_task_id, design.task_range_size, [], False))
    problems = steering_problems(
        records, problem_splits.task_id[problem_splits.split == split].tolist(), design.steering_max_tasks, design.seed
    )
    discovery = records[records.task_id.isin(problem_splits.task_id[problem_splits.split == "sae"])]
    norms = {layer: mean_norm_at_layer(discovery, layer) for layer, _ in best.values()}
    per_direction = {d: list(coefficients[d] if isinstance(coefficients, dict) else coefficients) for d in best}
    scales = {d: resolve_coefficients(mode, per_direction[d], norms[best[d][0]]) for d in best}
    tasks = tasks_from_records(records, mbpp_problems)
    jobs = []
    for unit in build_units(split, per_direction, scales, best, controls):
        unit_tasks = tuple(tasks[int(t)] for t in problems[unit.problems].task_id)
        if unit_tasks:
            jobs.append(UnitJob(unit, unit_tasks))
        else:
            context.log.info(f"steering unit {unit.name} skipped: no {unit.problems} problems in the split")
    context.log.info(f"{len(jobs)} steering units on the {split} split, one step each")
    facts = {
        "mean residual norm per layer (discovery split)": {str(k): float(v) for k, v in norms.items()},
        "controls": (
            f"{design.steering_controls} per direction, seeded ({design.seed}), drawn from the latents of the "
            f"target's layer with |s_correct| <= {CONTROL_MAX_ABS_SCORE} on the discovery split, not in the top "
            f"latents: {controls}"
        ),
        "units": len(jobs),
        "directions": sorted(best),
        "problems per label": {label: len(frame) for label, frame in problems.items()},
    }
    all_coefficients = sorted({c for values in per_direction.values() for c in values})
    return jobs, SplitPlan(split, mode, all_coefficients, records[["task_id", "passed"]].copy(), facts)


def _fan_out(jobs: list[UnitJob], plan: SplitPlan) -> Any:
    for job in jobs:
        yield dg.DynamicOutput(job, output_name="units", mapping_key=step_key(job.unit))
    yield dg.Output(plan, output_name="plan")


PLAN_OUTS = {"units": dg.DynamicOut(io_manager_key=STEP_IO), "plan": dg.Out(io_manager_key=STEP_IO)}


@dg.op(out=PLAN_OUTS, ins={"phase2": dg.In(dg.Nothing), "phase1_0_solutions": dg.In(dg.Nothing)})
def plan_sweep(
    context: dg.OpExecutionContext, config: SteeringConfig, mbpp_problems: pd.DataFrame,
    problem_splits: pd.DataFrame, study_design: StudyDesign, data_store: DataStore,
):
    """The hyperparams sweep's units: every configured coefficient for every direction's best latent."""
    sweep = config.coefficients or study_design.steering_coefficients
    yield from _fan_out(*_plan_split(
        context, "hyperparams", sweep, config.coefficient_mode, mbpp_problems, problem_splits, study_design,
        data_store,
    ))


@dg.op(out=PLAN_OUTS)
def plan_validation(
    context: dg.OpExecutionContext, chosen: pd.DataFrame, mbpp_problems: pd.DataFrame,
    problem_splits: pd.DataFrame, study_design: StudyDesign, data_store: DataStore,
):
    """The validation split's units: the coefficient chosen for each direction, once."""
    by_direction = chosen.set_index("direction")
    coefficients = {d: [float(c)] for d, c in by_direction.coefficient.items()}
    yield from _fan_out(*_plan_split(
        context, "validation", coefficients, str(chosen.coefficient_mode.iloc[0]), mbpp_problems, problem_splits,
        study_design, data_store,
    ))


@dg.op(tags=GPU_STEP_TAGS, out=dg.Out(io_manager_key=STEP_IO))
def steer_unit(
    context: dg.OpExecutionContext, job: UnitJob, language_model: LanguageModel, sae_source: SAESource,
    study_design: StudyDesign, data_store: DataStore, sandbox: Sandbox, device_pool: DeviceSource,
) -> tuple[SteeringUnit, pd.DataFrame]:
    """One unit on one device: its problems generated with the unit's vector added (resumes from its file)."""
    unit, layout = job.unit, data_store.layout
    with model_on_device(context, device_pool, language_model, data_store) as (device, model, tokenizer):
        context.log.info(f"steering unit {unit.name} on {len(job.tasks)} problems, on {device}")
        sae = None if unit.kind == BASELINE else sae_source.load(unit.layer, layout, device)
        row = None if sae is None else sae.W_dec[unit.latent].detach()  # [d_model]
        records = run_unit(
            unit, job.tasks, row, model=model, tokenizer=tokenizer,
            settings=language_model.settings(0.0, 1, study_design.seed),
            stop_token_ids=stop_token_ids(model, tokenizer), out_dir=layout.phase3_dir() / "steering",
            limits=sandbox.limits, seed=study_design.seed, log=context.log.info,
        )
    context.add_output_metadata({"unit": unit.name, "records": len(records)})
    return unit, records


def _combined(plan: SplitPlan, results: list[tuple[SteeringUnit, pd.DataFrame]]):
    outcomes, baselines = combine_units(results)
    facts = {**plan.facts, "controls": dg.MetadataValue.md(plan.facts["controls"])}
    return experiment_tests(outcomes), unit_summary(outcomes), noise_floor(plan.phase1_labels, baselines), facts


@dg.op
def choose_from_sweep(
    plan: SplitPlan, results: list[tuple[SteeringUnit, pd.DataFrame]], data_store: DataStore
) -> dg.Output[pd.DataFrame]:
    """The sweep's tests (exploratory) and the coefficient chosen per direction on the hyperparams split."""
    tests, units, noise, facts = _combined(plan, results)
    chosen = choose_coefficients(tests, plan.facts["directions"], plan.coefficients).assign(
        coefficient_mode=plan.coefficient_mode
    )
    out = data_store.layout.phase3_dir()
    storage.write_parquet(out / "steering_sweep_tests.parquet", tests)
    storage.write_parquet(out / "steering_sweep_units.parquet", units)
    storage.write_parquet(out / "steering_sweep_noise.parquet", noise)
    return dg.Output(chosen, metadata={
        **facts,
        "rule": COEFFICIENT_RULE,
        "chosen": dg.MetadataValue.md(markdown_table(chosen.drop(columns="rule"))),
        "sweep (exploratory, hyperparams split)": dg.MetadataValue.md(markdown_table(tests)),
        "sweep plot": dg.MetadataValue.md(line_sweep(
            sorted(tests.coefficient.unique()), sweep_series(tests), title="Rate by steering coefficient",
            xlabel=f"coefficient ({plan.coefficient_mode})", ylabel="rate",
        )),
        "noise floor (unsteered rerun vs Phase 1.0)": dg.MetadataValue.md(markdown_table(noise)),
    })


@dg.op(out=dg.Out(dg.Nothing))
def report_validation(
    context: dg.OpExecutionContext, plan: SplitPlan, results: list[tuple[SteeringUnit, pd.DataFrame]],
    data_store: DataStore,
) -> None:
    """The reported result: target vs control with the chosen coefficients on the validation split."""
    tests, units, noise, facts = _combined(plan, results)
    out = data_store.layout.phase3_dir()
    storage.write_parquet(out / "steering_tests.parquet", tests)
    storage.write_parquet(out / "steering_effects.parquet", units)
    storage.write_parquet(out / "steering_noise.parquet", noise)
    context.add_output_metadata({
        **facts,
        "target vs control (validation split, chosen coefficients)": dg.MetadataValue.md(markdown_table(tests)),
        "noise floor (unsteered rerun vs Phase 1.0)": dg.MetadataValue.md(markdown_table(noise)),
    })


def _steering_config(config: dict[str, Any]) -> dict[str, Any]:
    """Config given for the asset (``ops: {phase3_steering_coefficients: {config: ...}}``) goes to its plan."""
    return {"plan_sweep": {"config": config}}


@dg.graph_asset(
    group_name=GROUP_VALIDATION,
    ins={
        "phase2": dg.AssetIn(dagster_type=dg.Nothing),
        "phase1_0_solutions": dg.AssetIn(dagster_type=dg.Nothing),
        "mbpp_problems": dg.AssetIn(),
        "problem_splits": dg.AssetIn(),
    },
    config=dg.ConfigMapping(config_fn=_steering_config, config_schema=SteeringConfig.to_config_schema()),
)
def phase3_steering_coefficients(phase2, phase1_0_solutions, mbpp_problems, problem_splits):
    """The coefficient sweep on the hyperparams split (exploratory) and the coefficient chosen per direction."""
    units, plan = plan_sweep(
        phase2=phase2, phase1_0_solutions=phase1_0_solutions, mbpp_problems=mbpp_problems,
        problem_splits=problem_splits,
    )
    return choose_from_sweep(plan, units.map(steer_unit).collect())


@dg.graph_asset(
    group_name=GROUP_VALIDATION,
    ins={"phase3_steering_coefficients": dg.AssetIn(), "mbpp_problems": dg.AssetIn(), "problem_splits": dg.AssetIn()},
)
def phase3_steering(phase3_steering_coefficients, mbpp_problems, problem_splits):
    """The reported steering result: the chosen coefficient per direction on the validation split, once."""
    units, plan = plan_validation(phase3_steering_coefficients, mbpp_problems, problem_splits)
    return report_validation(plan, units.map(steer_unit).collect())
