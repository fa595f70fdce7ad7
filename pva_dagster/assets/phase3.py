"""Phase 3: do the best latents predict correctness on held-out problems (AUROC, F1)? And the report of
Phases 2 and 3 (steering lives in phase3_steering.py)."""


import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from pva_dagster.assets.phase2 import phase2
from pva_dagster.assets.phase3_steering import phase3_steering
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_VALIDATION
from pva_dagster.resources import DataStore, DevicePool, SAESource, StudyDesign
from pva_dagster.study import storage
from pva_dagster.study.analysis.activation_index import activation_index
from pva_dagster.study.analysis.latent_samples import latent_column, latent_samples
from pva_dagster.study.evaluation.classification import selected_latents, validate_latents
from pva_dagster.study.evaluation.report import render_report
from pva_dagster.study.evaluation.validation import pr_points, roc_points
from pva_dagster.study.generation.phase1_files import phase1_dataset_files
from pva_dagster.study.plots import markdown_table, roc_pr_curves


class ClassificationConfig(dg.Config):
    per_direction: int = Field(default=20, description="Top latents per direction to validate (best first).")


@dg.asset(group_name=GROUP_VALIDATION, deps=[phase2], op_tags=GPU_STEP_TAGS)
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
    overall, grouped = validate_latents(
        selected, samples["hyperparams"], samples["validation"], difficulty_mapping, study_design.seed
    )
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


@dg.asset(group_name=GROUP_VALIDATION, deps=[phase3_classification, phase3_steering])
def phase3_report(context: dg.AssetExecutionContext, data_store: DataStore) -> dg.MaterializeResult:
    """Every table of Phases 2 and 3 in one markdown page (also written to data/phase3/report.md)."""
    layout = data_store.layout
    report = render_report(layout)
    path = storage.write_text(layout.phase3_dir() / "report.md", report)
    context.log.info(f"report written to {path}")
    return dg.MaterializeResult(metadata={"report": dg.MetadataValue.md(report), "path": dg.MetadataValue.path(str(path))})
