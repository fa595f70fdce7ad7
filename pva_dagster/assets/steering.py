"""Phase 3 steering: sweep the coefficients over the non-validation problems, choose one per direction there (with
the choice's stability over cross-fitting folds), then run only the chosen ones on the validation split (the
reported result), each against matched control latents.

Each of the two assets is a graph of steps: a plan (which units, on which problems, along which decoder row),
one step per problem group (mapped from the plan's dynamic output, each on a device of its own: its units' rows
share batches, one steering vector per row, and each unit resumes from its own fingerprinted file), and one step
that combines the units' records into the asset's tables. On a Dask cluster the group steps spread over the GPU
workers (README "Running on a cluster"); in-process they run one after the other, reusing the model the process
loaded once (resources/model_cache.py).
"""

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, field_validator

from pva_dagster.assets.loading import GenerationResources, generator_on_device
from pva_dagster.assets.provenance import data_version
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_VALIDATION
from pva_dagster.resources import DataStore, DeviceSource, LanguageModel, SAESource, Sandbox, StudyDesign
from pva_dagster.resources.parquet_io import PartitionFrames
from pva_dagster.study import outputs
from pva_dagster.study.analysis.activation_index import phase1_records
from pva_dagster.study.domain import NON_VALIDATION, SAE_SPLIT, VALIDATION_SPLIT
from pva_dagster.study.plots import markdown_table
from pva_dagster.study.steering.coefficient_folds import fold_choices, with_fold_agreement
from pva_dagster.study.steering.results import COEFFICIENT_RULE, choose_coefficients, dose_response_plot
from pva_dagster.study.steering.split_plan import (
    GroupJob,
    SplitPlan,
    SteeringInputs,
    combined_tables,
    plan_split,
)
from pva_dagster.study.steering.sweep import SteeringUnit, run_units
from pva_dagster.study.steering.vectors import CoefficientMode, check_steering_coefficients

# Bump when a change of this module's logic changes what the assets produce (the web UI then marks them stale).
CODE_VERSION = "6"
# Values passed between the steps of a graph are pickled beside the data (every worker sees that folder).
STEP_IO = "step_io_manager"


class SteeringConfig(dg.Config):
    coefficient_mode: CoefficientMode = Field(
        default="relative", description="'relative' (x mean residual norm) or 'absolute'; checked at launch."
    )
    coefficients: list[float] | None = Field(
        default=None, description="Override the profile's coefficient sweep (nonzero values; 0 is the baseline)."
    )

    @field_validator("coefficients")
    @classmethod
    def _as_a_sweep(cls, values: list[float] | None) -> list[float] | None:
        return None if values is None else check_steering_coefficients(values)


def _inputs(
    top_latents: dict[str, pd.DataFrame], phase2: dict[str, pd.DataFrame],
    phase1_0_solutions: PartitionFrames, mbpp_problems: pd.DataFrame, problem_splits: pd.DataFrame,
    extended_tests: pd.DataFrame,
) -> SteeringInputs:
    return SteeringInputs(
        top_latents[SAE_SPLIT], phase2[SAE_SPLIT], phase1_records(phase1_0_solutions.values()), mbpp_problems,
        problem_splits, extended_tests,
    )


def step_key(split: str, problems: str) -> str:
    """A problem group's step as a Dagster mapping key (letters, digits and underscores), e.g.
    ``non_validation_on_incorrect``."""
    return f"{split}_on_{problems}".replace("-", "_")


def _cpu_saes(sae_source: SAESource, data_store: DataStore) -> Callable[[int], Any]:
    return lambda layer: sae_source.load(layer, data_store.layout, "cpu")


def _planned(
    context: dg.OpExecutionContext, split: str, coefficients: dict[str, list[float]] | list[float], mode: str,
    inputs: SteeringInputs, load_sae: Callable[[int], Any], design: StudyDesign,
) -> Iterator[dg.DynamicOutput | dg.Output]:
    """One dynamic output per problem group of :func:`plan_split`, then the plan the combining step reads."""
    groups, plan = plan_split(split, coefficients, mode, inputs, load_sae, design, context.log.info)
    context.log.info(
        f"{sum(len(g.jobs) for g in groups)} steering units on the {split} split, one step per problem group: "
        f"{[g.problems for g in groups]}"
    )
    for group in groups:
        yield dg.DynamicOutput(group, output_name="units", mapping_key=step_key(split, group.problems))
    yield dg.Output(plan, "plan")


PLAN_OUTS = {"units": dg.DynamicOut(io_manager_key=STEP_IO), "plan": dg.Out(io_manager_key=STEP_IO)}


@dg.op(out=PLAN_OUTS)
def plan_sweep(
    context: dg.OpExecutionContext, config: SteeringConfig, top_latents: dict[str, pd.DataFrame],
    phase2: dict[str, pd.DataFrame], phase1_0_solutions: PartitionFrames, mbpp_problems: pd.DataFrame,
    problem_splits: pd.DataFrame, extended_tests: pd.DataFrame, sae_source: SAESource, study_design: StudyDesign,
    data_store: DataStore,
) -> Iterator[dg.DynamicOutput | dg.Output]:
    """The sweep's units: every configured coefficient for every direction's best latent, on the non-validation
    problems."""
    sweep = config.coefficients or study_design.steering_coefficients
    inputs = _inputs(top_latents, phase2, phase1_0_solutions, mbpp_problems, problem_splits, extended_tests)
    yield from _planned(
        context, NON_VALIDATION, list(sweep), config.coefficient_mode, inputs, _cpu_saes(sae_source, data_store),
        study_design,
    )


@dg.op(out=PLAN_OUTS)
def plan_validation(
    context: dg.OpExecutionContext, phase3_steering_coefficients: dict[str, pd.DataFrame],
    top_latents: dict[str, pd.DataFrame], phase2: dict[str, pd.DataFrame], phase1_0_solutions: PartitionFrames,
    mbpp_problems: pd.DataFrame, problem_splits: pd.DataFrame, extended_tests: pd.DataFrame,
    sae_source: SAESource, study_design: StudyDesign, data_store: DataStore,
) -> Iterator[dg.DynamicOutput | dg.Output]:
    """The validation split's units: the coefficient chosen for each direction, once."""
    chosen = phase3_steering_coefficients[outputs.CHOSEN_COEFFICIENTS]
    coefficients = {d: [float(c)] for d, c in chosen.set_index("direction").coefficient.items()}
    inputs = _inputs(top_latents, phase2, phase1_0_solutions, mbpp_problems, problem_splits, extended_tests)
    yield from _planned(
        context, VALIDATION_SPLIT, coefficients, str(chosen.coefficient_mode.iloc[0]), inputs,
        _cpu_saes(sae_source, data_store), study_design,
    )


@dg.op(tags=GPU_STEP_TAGS, out=dg.Out(io_manager_key=STEP_IO))
def steer_units(
    context: dg.OpExecutionContext, group: GroupJob, language_model: LanguageModel, study_design: StudyDesign,
    data_store: DataStore, sandbox: Sandbox, device_pool: DeviceSource,
) -> list[tuple[SteeringUnit, pd.DataFrame]]:
    """One problem group's units on one device, their rows in shared batches (each resumes from its file)."""
    resources = GenerationResources(language_model, study_design, data_store, sandbox, device_pool)
    with generator_on_device(context, resources) as (device, generator):
        context.log.info(f"{len(group.jobs)} steering units on the {group.problems} problems, on {device}")
        jobs = [
            (job.unit, job.tasks, None if job.decoder_row is None else job.decoder_row.to(device))
            for job in group.jobs
        ]
        results = run_units(
            jobs, generator, out_dir=data_store.layout.steering_units_dir, seed=study_design.seed,
            point=study_design.steering_hook, log=context.log.info,
        )
    context.add_output_metadata({"units": len(results), "records": sum(len(records) for _, records in results)})
    return results


def _combined(
    plan: SplitPlan, results: list[list[tuple[SteeringUnit, pd.DataFrame]]]
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The split's tables (:func:`combined_tables`) and the metadata facts."""
    return combined_tables(plan, results), {**plan.facts, "controls": dg.MetadataValue.md(plan.facts["controls"])}


@dg.op
def choose_from_sweep(
    plan: SplitPlan, results: list[list[tuple[SteeringUnit, pd.DataFrame]]]
) -> dg.Output[dict[str, pd.DataFrame]]:
    """The sweep's tests (exploratory) and the coefficient chosen per direction over the non-validation problems,
    with each cross-fitting fold's own choice."""
    made, facts = _combined(plan, results)
    per_fold = fold_choices(made["outcomes"], plan.folds, facts["directions"], plan.coefficients, plan.margin)
    chosen = with_fold_agreement(
        choose_coefficients(made["tests"], facts["directions"], plan.coefficients), per_fold
    ).assign(coefficient_mode=plan.coefficient_mode)
    tables = {
        outputs.CHOSEN_COEFFICIENTS: chosen,
        outputs.SWEEP_TESTS: made["tests"], outputs.SWEEP_CONTROLS: made["controls"],
        outputs.SWEEP_UNITS: made["units"], outputs.SWEEP_NOISE: made["noise"], outputs.SWEEP_FOLDS: per_fold,
    }
    return dg.Output(tables, data_version=data_version(tables), metadata={
        **facts,
        "rule": COEFFICIENT_RULE,
        "chosen": dg.MetadataValue.md(markdown_table(chosen.drop(columns="rule"))),
        "sweep (exploratory, non-validation problems)": dg.MetadataValue.md(markdown_table(made["tests"])),
        "dose-response": dg.MetadataValue.md(dose_response_plot(made["tests"], plan.coefficient_mode)),
        "noise floor (unsteered rerun vs Phase 1.0)": dg.MetadataValue.md(markdown_table(made["noise"])),
    })


@dg.op
def report_validation(
    plan: SplitPlan, results: list[list[tuple[SteeringUnit, pd.DataFrame]]]
) -> dg.Output[dict[str, pd.DataFrame]]:
    """The reported result: target vs control with the chosen coefficients on the validation split."""
    made, facts = _combined(plan, results)
    tables = {
        outputs.STEERING_TESTS: made["tests"], outputs.STEERING_CONTROLS: made["controls"],
        outputs.STEERING_EFFECTS: made["units"], outputs.STEERING_NOISE: made["noise"],
    }
    return dg.Output(tables, data_version=data_version(tables), metadata={
        **facts,
        "target vs control (validation split, chosen coefficients)": dg.MetadataValue.md(markdown_table(made["tests"])),
        "per control (validation split)": dg.MetadataValue.md(markdown_table(made["controls"])),
        "noise floor (unsteered rerun vs Phase 1.0)": dg.MetadataValue.md(markdown_table(made["noise"])),
    })


def _steering_config(config: dict[str, Any]) -> dict[str, Any]:
    """Config given for the asset (``ops: {phase3_steering_coefficients: {config: ...}}``) goes to its plan."""
    return {"plan_sweep": {"config": config}}


@dg.graph_asset(
    group_name=GROUP_VALIDATION, code_version=CODE_VERSION,
    config=dg.ConfigMapping(config_fn=_steering_config, config_schema=SteeringConfig.to_config_schema()),
)
def phase3_steering_coefficients(
    top_latents, phase2, phase1_0_solutions, mbpp_problems, problem_splits, extended_tests
):
    """The coefficient sweep over the non-validation problems (exploratory) and the coefficient chosen per
    direction, with its stability over cross-fitting folds."""
    units, plan = plan_sweep(top_latents, phase2, phase1_0_solutions, mbpp_problems, problem_splits, extended_tests)
    return choose_from_sweep(plan, units.map(steer_units).collect())


@dg.graph_asset(group_name=GROUP_VALIDATION, code_version=CODE_VERSION)
def phase3_steering(
    phase3_steering_coefficients, top_latents, phase2, phase1_0_solutions, mbpp_problems, problem_splits,
    extended_tests,
):
    """The reported steering result: the chosen coefficient per direction on the validation split, once."""
    units, plan = plan_validation(
        phase3_steering_coefficients, top_latents, phase2, phase1_0_solutions, mbpp_problems, problem_splits,
        extended_tests,
    )
    return report_validation(plan, units.map(steer_units).collect())
