"""Phase 3 steering: sweep the coefficients on the hyperparams split, choose one per direction there, then run
only the chosen ones on the validation split (the reported result), each against random-latent controls."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, field_validator

from pva_dagster.assets.loading import model_on_device
from pva_dagster.assets.provenance import data_version
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_VALIDATION
from pva_dagster.resources import DataStore, DevicePool, LanguageModel, SAESource, Sandbox, StudyDesign
from pva_dagster.resources.parquet_io import PartitionFrames
from pva_dagster.study.analysis.activation_index import phase1_records
from pva_dagster.study.analysis.latent_scores import pooled
from pva_dagster.study.domain import GREEDY_TEMPERATURE, HYPERPARAMS_SPLIT, SAE_SPLIT, VALIDATION_SPLIT
from pva_dagster.study.generation.models import model_fingerprint, stop_token_ids
from pva_dagster.study.plots import line_sweep, markdown_table
from pva_dagster.study.steering.plan import (
    build_units,
    mean_norm_at_layer,
    steering_problems,
    steering_targets,
    tasks_from_records,
)
from pva_dagster.study.steering.results import (
    COEFFICIENT_RULE,
    choose_coefficients,
    experiment_tests,
    sweep_series,
    unit_summary,
)
from pva_dagster.study.steering.sweep import noise_floor, run_plan, run_unit
from pva_dagster.study.steering.vectors import (
    CONTROL_MAX_ABS_SCORE,
    CoefficientMode,
    resolve_coefficients,
)

# Bump when a change of this module's logic changes what the assets produce (the web UI then marks them stale).
CODE_VERSION = "2"


class SteeringConfig(dg.Config):
    coefficient_mode: CoefficientMode = Field(
        default="relative", description="'relative' (x mean residual norm) or 'absolute'; checked at launch."
    )
    coefficients: list[float] | None = Field(
        default=None, description="Override the profile's hyperparams sweep (nonzero values; 0 is the baseline)."
    )

    @field_validator("coefficients")
    @classmethod
    def _nonzero(cls, values: list[float] | None) -> list[float] | None:
        if values is not None and (not values or 0.0 in values):
            raise ValueError(f"coefficients must be nonzero and at least one (0 is the baseline), got {values}")
        return values


@dataclass(frozen=True)
class SteeringInputs:
    """What Phases 0-2 hand to steering (the asset inputs both steering assets take)."""

    top: pd.DataFrame  # Phase 2 top latents, discovery split
    scores: pd.DataFrame  # Phase 2 separation scores, discovery split (all groups)
    records: pd.DataFrame  # Phase 1.0 records, every partition
    problems: pd.DataFrame  # mbpp_problems
    splits: pd.DataFrame  # problem_splits


def _inputs(
    top_latents: dict[str, pd.DataFrame], phase2: dict[str, pd.DataFrame],
    phase1_0_solutions: PartitionFrames, mbpp_problems: pd.DataFrame, problem_splits: pd.DataFrame,
) -> SteeringInputs:
    return SteeringInputs(
        top_latents[SAE_SPLIT], phase2[SAE_SPLIT], phase1_records(phase1_0_solutions.values()), mbpp_problems,
        problem_splits,
    )


def _steer_split(
    context: dg.AssetExecutionContext, split: str, coefficients_for: Callable[[str], Sequence[float]], mode: str,
    inputs: SteeringInputs, language_model: LanguageModel, sae_source: SAESource, design: StudyDesign,
    data_store: DataStore, sandbox: Sandbox, device_pool: DevicePool,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Steer one split's problems: returns (per-problem outcomes, noise floor, run facts for metadata)."""
    layout, records, splits = data_store.layout, inputs.records, inputs.splits
    targets = steering_targets(inputs.top, pooled(inputs.scores), design.steering_controls, design.seed)
    in_split = splits.task_id[splits.split == split].tolist()
    problems = steering_problems(records, in_split, design.steering_max_tasks, design.seed)
    discovery = records[records.task_id.isin(splits.task_id[splits.split == SAE_SPLIT])]
    with model_on_device(context, device_pool, language_model, data_store) as (device, model, tokenizer):
        saes = {layer: sae_source.load(layer, layout, device) for layer, _ in targets.best.values()}
        norms = {layer: mean_norm_at_layer(discovery, layer) for layer in saes}
        coefficients = {d: list(coefficients_for(d)) for d in targets.best}
        scales = {
            d: resolve_coefficients(mode, coefficients[d], norms[layer]) for d, (layer, _) in targets.best.items()
        }
        units = build_units(split, coefficients, scales, targets.best, targets.controls)
        run = partial(
            run_unit, model=model, tokenizer=tokenizer, settings=language_model.settings(design, GREEDY_TEMPERATURE),
            stop_token_ids=stop_token_ids(model, tokenizer), out_dir=layout.steering_units_dir,
            limits=sandbox.limits, seed=design.seed,
            producer={"model": {"weights": language_model.weights(layout), **model_fingerprint(model)}},
        )
        outcomes, baselines = run_plan(
            units, problems, tasks_from_records(records, inputs.problems),
            lambda layer, latent: saes[layer].W_dec[latent].detach(), run, context.log.info,
        )
    facts = {
        "mean residual norm per layer (discovery split)": {str(k): float(v) for k, v in norms.items()},
        "controls": dg.MetadataValue.md(
            f"{design.steering_controls} per direction, seeded ({design.seed}), drawn from the latents of the "
            f"target's layer with |s_correct| <= {CONTROL_MAX_ABS_SCORE} on the discovery split, not in the top "
            f"latents: {targets.controls}"
        ),
        "units": len(units),
        "directions": sorted(targets.best),
        "problems per label": {label: len(frame) for label, frame in problems.items()},
    }
    return outcomes, noise_floor(records, baselines), facts


@dg.asset(group_name=GROUP_VALIDATION, op_tags=GPU_STEP_TAGS, code_version=CODE_VERSION)
def phase3_steering_coefficients(
    context: dg.AssetExecutionContext, config: SteeringConfig, top_latents: dict[str, pd.DataFrame],
    phase2: dict[str, pd.DataFrame], phase1_0_solutions: PartitionFrames, mbpp_problems: pd.DataFrame,
    problem_splits: pd.DataFrame, language_model: LanguageModel, sae_source: SAESource, study_design: StudyDesign,
    data_store: DataStore, sandbox: Sandbox, device_pool: DevicePool,
) -> dg.Output[dict[str, pd.DataFrame]]:
    """The coefficient sweep on the hyperparams split (exploratory) and the coefficient chosen per direction."""
    sweep = config.coefficients or study_design.steering_coefficients
    inputs = _inputs(top_latents, phase2, phase1_0_solutions, mbpp_problems, problem_splits)
    outcomes, noise, facts = _steer_split(
        context, HYPERPARAMS_SPLIT, lambda _direction: sweep, config.coefficient_mode, inputs, language_model,
        sae_source, study_design, data_store, sandbox, device_pool,
    )
    tests = experiment_tests(outcomes)
    chosen = choose_coefficients(tests, facts["directions"], sweep).assign(coefficient_mode=config.coefficient_mode)
    tables = {
        "phase3_steering_coefficients": chosen, "steering_sweep_tests": tests,
        "steering_sweep_units": unit_summary(outcomes), "steering_sweep_noise": noise,
    }
    return dg.Output(tables, data_version=data_version(tables), metadata={
        **facts,
        "rule": COEFFICIENT_RULE,
        "chosen": dg.MetadataValue.md(markdown_table(chosen.drop(columns="rule"))),
        "sweep (exploratory, hyperparams split)": dg.MetadataValue.md(markdown_table(tests)),
        "sweep plot": dg.MetadataValue.md(line_sweep(
            sorted(tests.coefficient.unique()), sweep_series(tests), title="Rate by steering coefficient",
            xlabel=f"coefficient ({config.coefficient_mode})", ylabel="rate",
        )),
        "noise floor (unsteered rerun vs Phase 1.0)": dg.MetadataValue.md(markdown_table(noise)),
    })


@dg.asset(group_name=GROUP_VALIDATION, op_tags=GPU_STEP_TAGS, code_version=CODE_VERSION)
def phase3_steering(
    context: dg.AssetExecutionContext, phase3_steering_coefficients: dict[str, pd.DataFrame],
    top_latents: dict[str, pd.DataFrame], phase2: dict[str, pd.DataFrame],
    phase1_0_solutions: PartitionFrames, mbpp_problems: pd.DataFrame, problem_splits: pd.DataFrame,
    language_model: LanguageModel, sae_source: SAESource, study_design: StudyDesign, data_store: DataStore,
    sandbox: Sandbox, device_pool: DevicePool,
) -> dg.Output[dict[str, pd.DataFrame]]:
    """The reported steering result: the chosen coefficient per direction on the validation split, once."""
    chosen = phase3_steering_coefficients["phase3_steering_coefficients"].set_index("direction")
    inputs = _inputs(top_latents, phase2, phase1_0_solutions, mbpp_problems, problem_splits)
    outcomes, noise, facts = _steer_split(
        context, VALIDATION_SPLIT, lambda direction: [float(chosen.coefficient[direction])],
        str(chosen.coefficient_mode.iloc[0]), inputs, language_model, sae_source, study_design, data_store,
        sandbox, device_pool,
    )
    tests = experiment_tests(outcomes)
    tables = {"steering_tests": tests, "steering_effects": unit_summary(outcomes), "steering_noise": noise}
    return dg.Output(tables, data_version=data_version(tables), metadata={
        **facts,
        "target vs control (validation split, chosen coefficients)": dg.MetadataValue.md(markdown_table(tests)),
        "noise floor (unsteered rerun vs Phase 1.0)": dg.MetadataValue.md(markdown_table(noise)),
    })
