"""Phase 3 steering: sweep the coefficients on the hyperparams split, choose one per direction there, then run
only the chosen ones on the validation split (the reported result), each against random-latent controls."""

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, field_validator

from pva_dagster.assets.loading import model_on_device
from pva_dagster.assets.phase1 import phase1_0_solutions
from pva_dagster.assets.phase2 import phase2
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_VALIDATION
from pva_dagster.resources import DataStore, DevicePool, LanguageModel, SAESource, Sandbox, StudyDesign
from pva_dagster.study import storage
from pva_dagster.study.analysis.latent_scores import pooled
from pva_dagster.study.domain import GREEDY_TEMPERATURE, SAE_SPLIT
from pva_dagster.study.generation.models import stop_token_ids
from pva_dagster.study.generation.phase1_files import phase1_dataset_files, read_phase1_records
from pva_dagster.study.plots import line_sweep, markdown_table
from pva_dagster.study.steering.plan import (
    build_units,
    mean_norm_at_layer,
    steering_problems,
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
    control_latents,
    resolve_coefficients,
)


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


def _steer_split(
    context: dg.AssetExecutionContext,
    split: str,
    coefficients_for: Callable[[str], Sequence[float]],
    mode: str,
    *,
    mbpp_problems: pd.DataFrame,
    problem_splits: pd.DataFrame,
    language_model: LanguageModel,
    sae_source: SAESource,
    study_design: StudyDesign,
    data_store: DataStore,
    sandbox: Sandbox,
    device_pool: DevicePool,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Steer one split's problems: returns (per-problem outcomes, noise floor, run facts for metadata)."""
    layout, design = data_store.layout, study_design
    top = pd.read_parquet(layout.phase2_table(SAE_SPLIT, "top_latents"))
    best = {d: (int(r.layer), int(r.latent)) for d, r in top[top["rank"] == 1].set_index("direction").iterrows()}
    scores = pooled(pd.read_parquet(layout.phase2_table(SAE_SPLIT, "separation_scores")))
    controls = {
        d: control_latents(scores[scores.layer == layer], top.latent[top.layer == layer].tolist(),
                           design.steering_controls, design.seed)
        for d, (layer, _) in best.items()
    }
    records = read_phase1_records(phase1_dataset_files(layout, design.max_task_id, design.task_range_size, [], False))
    in_split = problem_splits.task_id[problem_splits.split == split].tolist()
    problems = steering_problems(records, in_split, design.steering_max_tasks, design.seed)
    discovery = records[records.task_id.isin(problem_splits.task_id[problem_splits.split == "sae"])]
    with model_on_device(context, device_pool, language_model, data_store) as (device, model, tokenizer):
        saes = {layer: sae_source.load(layer, layout, device) for layer, _ in best.values()}
        norms = {layer: mean_norm_at_layer(discovery, layer) for layer in saes}
        coefficients = {d: list(coefficients_for(d)) for d in best}
        scales = {d: resolve_coefficients(mode, coefficients[d], norms[best[d][0]]) for d in best}
        units = build_units(split, coefficients, scales, best, controls)
        run = partial(
            run_unit, model=model, tokenizer=tokenizer, settings=language_model.settings(design, GREEDY_TEMPERATURE),
            stop_token_ids=stop_token_ids(model, tokenizer), out_dir=layout.steering_units_dir,
            limits=sandbox.limits, seed=design.seed,
        )
        outcomes, baselines = run_plan(
            units, problems, tasks_from_records(records, mbpp_problems),
            lambda layer, latent: saes[layer].W_dec[latent].detach(), run, context.log.info,
        )
    facts = {
        "mean residual norm per layer (discovery split)": {str(k): float(v) for k, v in norms.items()},
        "controls": dg.MetadataValue.md(
            f"{design.steering_controls} per direction, seeded ({design.seed}), drawn from the latents of the "
            f"target's layer with |s_correct| <= {CONTROL_MAX_ABS_SCORE} on the discovery split, not in the top "
            f"latents: {controls}"
        ),
        "units": len(units),
        "directions": sorted(best),
        "problems per label": {label: len(frame) for label, frame in problems.items()},
    }
    return outcomes, noise_floor(records, baselines), facts


@dg.asset(group_name=GROUP_VALIDATION, deps=[phase2, phase1_0_solutions], op_tags=GPU_STEP_TAGS)
def phase3_steering_coefficients(
    context: dg.AssetExecutionContext,
    config: SteeringConfig,
    mbpp_problems: pd.DataFrame,
    problem_splits: pd.DataFrame,
    language_model: LanguageModel,
    sae_source: SAESource,
    study_design: StudyDesign,
    data_store: DataStore,
    sandbox: Sandbox,
    device_pool: DevicePool,
) -> dg.Output[pd.DataFrame]:
    """The coefficient sweep on the hyperparams split (exploratory) and the coefficient chosen per direction."""
    sweep = config.coefficients or study_design.steering_coefficients
    outcomes, noise, facts = _steer_split(
        context, "hyperparams", lambda _direction: sweep, config.coefficient_mode, mbpp_problems=mbpp_problems,
        problem_splits=problem_splits, language_model=language_model, sae_source=sae_source,
        study_design=study_design, data_store=data_store, sandbox=sandbox, device_pool=device_pool,
    )
    tests = experiment_tests(outcomes)
    chosen = choose_coefficients(tests, facts["directions"], sweep).assign(coefficient_mode=config.coefficient_mode)
    layout = data_store.layout
    storage.write_parquet(layout.phase3_table("steering_sweep_tests"), tests)
    storage.write_parquet(layout.phase3_table("steering_sweep_units"), unit_summary(outcomes))
    storage.write_parquet(layout.phase3_table("steering_sweep_noise"), noise)
    return dg.Output(chosen, metadata={
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


@dg.asset(group_name=GROUP_VALIDATION, deps=[phase2, phase1_0_solutions], op_tags=GPU_STEP_TAGS)
def phase3_steering(
    context: dg.AssetExecutionContext,
    phase3_steering_coefficients: pd.DataFrame,
    mbpp_problems: pd.DataFrame,
    problem_splits: pd.DataFrame,
    language_model: LanguageModel,
    sae_source: SAESource,
    study_design: StudyDesign,
    data_store: DataStore,
    sandbox: Sandbox,
    device_pool: DevicePool,
) -> dg.MaterializeResult:
    """The reported steering result: the chosen coefficient per direction on the validation split, once."""
    chosen = phase3_steering_coefficients.set_index("direction")
    outcomes, noise, facts = _steer_split(
        context, "validation", lambda direction: [float(chosen.coefficient[direction])],
        str(chosen.coefficient_mode.iloc[0]), mbpp_problems=mbpp_problems, problem_splits=problem_splits,
        language_model=language_model, sae_source=sae_source, study_design=study_design, data_store=data_store,
        sandbox=sandbox, device_pool=device_pool,
    )
    tests = experiment_tests(outcomes)
    layout = data_store.layout
    storage.write_parquet(layout.phase3_table("steering_tests"), tests)
    storage.write_parquet(layout.phase3_table("steering_effects"), unit_summary(outcomes))
    storage.write_parquet(layout.phase3_table("steering_noise"), noise)
    return dg.MaterializeResult(metadata={
        **facts,
        "target vs control (validation split, chosen coefficients)": dg.MetadataValue.md(markdown_table(tests)),
        "noise floor (unsteered rerun vs Phase 1.0)": dg.MetadataValue.md(markdown_table(noise)),
    })
