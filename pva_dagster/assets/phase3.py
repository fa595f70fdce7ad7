"""Phase 3: do the best latents predict correctness on held-out problems (AUROC, F1), and does steering
along them change the code the model writes, against random latents of the same layer?"""


import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from pva_dagster.assets.loading import model_on_device
from pva_dagster.assets.phase1 import phase1_0_solutions
from pva_dagster.assets.phase2 import phase2
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_VALIDATION
from pva_dagster.resources import DataStore, DevicePool, LanguageModel, SAESource, Sandbox, StudyDesign
from pva_dagster.study import storage
from pva_dagster.study.activation_index import activation_index
from pva_dagster.study.classification import selected_latents, validate_latents
from pva_dagster.study.latent_samples import latent_column, latent_samples
from pva_dagster.study.models import stop_token_ids
from pva_dagster.study.phase1_files import phase1_dataset_files, read_phase1_records
from pva_dagster.study.plots import line_sweep, markdown_table, roc_pr_curves
from pva_dagster.study.report import render_report
from pva_dagster.study.steering_plan import (
    build_units,
    mean_norm_at_layer,
    steering_baseline,
    tasks_from_records,
)
from pva_dagster.study.steering_sweep import compare_with_control, run_unit, sweep_series, unit_effect
from pva_dagster.study.validation import pr_points, roc_points


class ClassificationConfig(dg.Config):
    per_direction: int = Field(default=20, description="Top latents per direction to validate (best first).")


@dg.asset(group_name=GROUP_VALIDATION, deps=[phase2])
def phase3_classification(
    context: dg.AssetExecutionContext,
    config: ClassificationConfig,
    problem_splits: pd.DataFrame,
    difficulty_mapping: pd.DataFrame,
    duckdb: DuckDBResource,
    sae_source: SAESource,
    study_design: StudyDesign,
    data_store: DataStore,
    device_pool: DevicePool,
) -> dg.MaterializeResult:
    """AUROC / F1 of the top Phase 2 latents on the validation split; thresholds from the hyperparams split."""
    layout = data_store.layout
    selected = selected_latents(pd.read_parquet(layout.phase2_dir("sae") / "top_latents.parquet"), config.per_direction)
    pairs = list(zip(selected.layer, selected.latent))
    samples = {}
    with device_pool.claim(context.run.tags, context.log.info) as device:
        saes = {layer: sae_source.load(layer, layout, device) for layer in sorted(set(selected.layer))}
        for split in ("hyperparams", "validation"):
            files = phase1_dataset_files(
                layout, study_design.max_task_id, study_design.task_range_size, study_design.temperatures,
                with_sampled=split == "validation",
            )
            task_ids = problem_splits.task_id[problem_splits.split == split].tolist()
            with duckdb.get_connection() as conn:
                index = activation_index(conn, files, task_ids, sorted(saes))
            samples[split] = latent_samples(index, pairs, saes.__getitem__)
    overall, grouped = validate_latents(selected, samples["hyperparams"], samples["validation"], difficulty_mapping)
    out = layout.phase3_dir()
    storage.write_parquet(out / "classification.parquet", overall)
    storage.write_parquet(out / "classification_by_group.parquet", grouped)
    greedy = samples["validation"][samples["validation"].temperature == 0.0]
    curves = {}
    for row in overall.groupby("direction").head(1).itertuples():
        values, correct = greedy[latent_column(row.layer, row.latent)].to_numpy(), greedy.passed.to_numpy(bool)
        if 0 < correct.sum() < len(correct):
            curves[f"{row.direction} L{row.layer}/{row.latent}"] = (values, correct, row.direction)
    best = overall.groupby("direction").head(1)
    return dg.MaterializeResult(
        metadata={
            "best latents": dg.MetadataValue.md(markdown_table(best)),
            "all validated latents": dg.MetadataValue.md(markdown_table(overall)),
            "by temperature and difficulty": dg.MetadataValue.md(
                markdown_table(grouped.merge(best[["direction", "layer", "latent"]]))
            ),
            "ROC": dg.MetadataValue.md(
                roc_pr_curves({k: roc_points(*v) for k, v in curves.items()}, kind="roc")
            ),
            "precision-recall": dg.MetadataValue.md(
                roc_pr_curves({k: pr_points(*v) for k, v in curves.items()}, kind="pr")
            ),
            "validation samples (temperature 0)": len(greedy),
            "path": dg.MetadataValue.path(str(out / "classification.parquet")),
        }
    )


class SteeringConfig(dg.Config):
    coefficient_mode: str = Field(default="relative", description="'relative' (x mean residual norm) or 'absolute'.")
    coefficients: list[float] | None = Field(
        default=None, description="Override the profile's sweep, e.g. one value per run to spread it over GPUs."
    )


@dg.asset(group_name=GROUP_VALIDATION, deps=[phase2, phase1_0_solutions], op_tags=GPU_STEP_TAGS)
def phase3_steering(
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
) -> dg.MaterializeResult:
    """Steer along the best latent of each direction (and random controls) over the coefficient sweep."""
    layout = data_store.layout
    top = pd.read_parquet(layout.phase2_dir("sae") / "top_latents.parquet")
    best = {d: (int(r.layer), int(r.latent)) for d, r in top[top["rank"] == 1].set_index("direction").iterrows()}
    validation_ids = problem_splits.task_id[problem_splits.split == "validation"].tolist()
    records = read_phase1_records(phase1_dataset_files(
        layout, study_design.max_task_id, study_design.task_range_size, [], with_sampled=False))
    baselines = {
        d: steering_baseline(records, validation_ids, d, study_design.steering_max_tasks, study_design.seed)
        for d in best
    }
    tasks = tasks_from_records(records, mbpp_problems)
    coefficients = config.coefficients or study_design.steering_coefficients
    out = layout.phase3_dir() / "steering"
    effects = []
    with model_on_device(context, device_pool, language_model, data_store) as (device, model, tokenizer):
        saes = {layer: sae_source.load(layer, layout, device) for layer, _ in best.values()}
        validation_records = records[records.task_id.isin(validation_ids)]
        norms = {layer: mean_norm_at_layer(validation_records, layer) for layer in saes}
        units = build_units(
            coefficients, config.coefficient_mode, norms, best, {l: s.cfg.d_sae for l, s in saes.items()},
            study_design.steering_controls, study_design.seed,
        )
        for i, unit in enumerate(units, 1):
            baseline = baselines[unit.direction]
            context.log.info(f"steering unit {i}/{len(units)}: {unit.name} on {len(baseline)} problems")
            steered_records = run_unit(
                unit, [tasks[t] for t in baseline.task_id], saes[unit.layer].W_dec[unit.latent].detach(),
                model=model, tokenizer=tokenizer, settings=language_model.settings(0.0, 1, study_design.seed),
                stop_token_ids=stop_token_ids(model, tokenizer), out_dir=out, limits=sandbox.limits,
                seed=study_design.seed, log=context.log.info,
            )
            effects.append(unit_effect(unit, steered_records, baseline))
    effects_frame = pd.DataFrame(effects)
    tests = compare_with_control(effects_frame)
    storage.write_parquet(layout.phase3_dir() / "steering_effects.parquet", effects_frame)
    storage.write_parquet(layout.phase3_dir() / "steering_tests.parquet", tests)
    return dg.MaterializeResult(
        metadata={
            "mean residual norm per layer": {str(k): float(v) for k, v in norms.items()},
            "target vs control": dg.MetadataValue.md(markdown_table(tests)),
            "sweep": dg.MetadataValue.md(
                line_sweep(
                    sorted(effects_frame.coefficient.unique()),
                    sweep_series(effects_frame),
                    title="Effect rate by steering coefficient (correction / corruption)",
                    xlabel=f"coefficient ({config.coefficient_mode})",
                    ylabel="rate",
                )
            ),
            "units": len(units),
        }
    )


@dg.asset(group_name=GROUP_VALIDATION, deps=[phase3_classification, phase3_steering])
def phase3_report(context: dg.AssetExecutionContext, data_store: DataStore) -> dg.MaterializeResult:
    """Every table of Phases 2 and 3 in one markdown page (also written to data/phase3/report.md)."""
    layout = data_store.layout
    report = render_report(layout)
    path = storage.write_text(layout.phase3_dir() / "report.md", report)
    context.log.info(f"report written to {path}")
    return dg.MaterializeResult(metadata={"report": dg.MetadataValue.md(report), "path": dg.MetadataValue.path(str(path))})
