"""Phase 3: do the best latents predict correctness on held-out problems (AUROC, F1)? And the report of
Phases 2 and 3 (steering lives in steering.py, the readouts in readouts.py)."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from pva_dagster.assets.loading import claimed_device
from pva_dagster.assets.provenance import data_version
from pva_dagster.assets.reuse import INPUTS_FINGERPRINT, inputs_fingerprint, stored_if_unchanged
from pva_dagster.assets.weights import sae_weights
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_VALIDATION
from pva_dagster.resources import DevicePool, SAESource, StudyDesign
from pva_dagster.resources.data_store import DataStore
from pva_dagster.resources.parquet_io import PartitionFrames
from pva_dagster.study import outputs
from pva_dagster.study.analysis.activation_index import activation_index, phase1_records
from pva_dagster.study.analysis.latent_samples import latent_column, latent_samples
from pva_dagster.study.analysis.sae_quality import quality_table_of
from pva_dagster.study.domain import GREEDY_TEMPERATURE, HYPERPARAMS_SPLIT, SAE_SPLIT, VALIDATION_SPLIT
from pva_dagster.study.evaluation.classification import selected_latents, validate_latents
from pva_dagster.study.evaluation.report import render_report
from pva_dagster.study.evaluation.validation import pr_points, roc_points
from pva_dagster.study.plots import markdown_table, roc_pr_curves
from pva_dagster.study.problems.splits import split_task_ids

# Bump when a change of this module's logic changes what the assets produce (the web UI then marks them stale).
CODE_VERSION = "6"
FITTING = "fitting"  # the sae and hyperparams splits' greedy samples, where thresholds are chosen


class ClassificationConfig(dg.Config):
    per_direction: int = Field(default=20, description="Top latents per direction to validate (best first).")


def _curves_metadata(best: pd.DataFrame, greedy: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    """ROC and precision-recall curves of each direction's best latent on the greedy validation samples."""
    curves = {}
    for row in best.itertuples():
        values, correct = greedy[latent_column(row.layer, row.latent)].to_numpy(), greedy.passed.to_numpy(bool)
        if 0 < correct.sum() < len(correct):
            curves[f"{row.direction} L{row.layer}/{row.latent}"] = (values, correct, row.direction)
    return {
        "ROC": dg.MetadataValue.md(roc_pr_curves({k: roc_points(*v) for k, v in curves.items()}, kind="roc")),
        "precision-recall": dg.MetadataValue.md(
            roc_pr_curves({k: pr_points(*v) for k, v in curves.items()}, kind="pr")
        ),
    }


@dg.asset(group_name=GROUP_VALIDATION, deps=[sae_weights], op_tags=GPU_STEP_TAGS, code_version=CODE_VERSION)
def phase3_classification(
    context: dg.AssetExecutionContext, config: ClassificationConfig, top_latents: dict[str, pd.DataFrame],
    phase1_0_solutions: PartitionFrames, phase1_2_solutions: PartitionFrames,
    problem_splits: pd.DataFrame, difficulty_mapping: pd.DataFrame, duckdb: DuckDBResource, sae_source: SAESource,
    study_design: StudyDesign, data_store: DataStore, device_pool: DevicePool,
) -> dg.Output[dict[str, pd.DataFrame]]:
    """AUROC / F1 of the top Phase 2 latents on the validation split; thresholds cross-fitted on the sae and
    hyperparams splits."""
    made_from = inputs_fingerprint(context, config, study_design, sae_source)
    if (unchanged := stored_if_unchanged(context, made_from, data_store.layout)) is not None:
        return unchanged
    selected = selected_latents(top_latents[SAE_SPLIT], config.per_direction)
    pairs, samples = list(zip(selected.layer, selected.latent, strict=True)), {}
    fitting_ids = {split: split_task_ids(problem_splits, split) for split in (SAE_SPLIT, HYPERPARAMS_SPLIT)}
    with claimed_device(context, device_pool) as device:
        saes = {layer: sae_source.load(layer, data_store.layout, device) for layer in sorted(set(selected.layer))}
        for split, task_ids, sampled in (
            (FITTING, [t for ids in fitting_ids.values() for t in ids], []),
            (VALIDATION_SPLIT, split_task_ids(problem_splits, VALIDATION_SPLIT), phase1_2_solutions.values()),
        ):
            records = phase1_records([*phase1_0_solutions.values(), *sampled])
            with duckdb.get_connection() as conn:
                index = activation_index(conn, records, task_ids, sorted(saes))
            samples[split] = latent_samples(index, pairs, saes.__getitem__)
    split_of = {t: split for split, ids in fitting_ids.items() for t in ids}
    fitting = samples[FITTING].assign(split=samples[FITTING].task_id.map(split_of))
    overall, grouped = validate_latents(
        selected, fitting, samples[VALIDATION_SPLIT], difficulty_mapping, study_design.seed
    )
    validation = samples[VALIDATION_SPLIT]
    greedy, best = validation[validation.temperature == GREEDY_TEMPERATURE], overall.groupby("direction").head(1)
    tables = {outputs.CLASSIFICATION_OVERALL: overall, outputs.CLASSIFICATION_BY_GROUP: grouped}
    return dg.Output(tables, data_version=data_version(tables), metadata={
        INPUTS_FINGERPRINT: made_from,
        "best latents": dg.MetadataValue.md(markdown_table(best)),
        "all validated latents": dg.MetadataValue.md(markdown_table(overall)),
        "by temperature and difficulty": dg.MetadataValue.md(
            markdown_table(grouped.merge(best[["direction", "layer", "latent"]]))
        ),
        **_curves_metadata(best, greedy),
        "validation samples (temperature 0)": len(greedy),
        "thresholds that predict one class (non-validation)": f"{int(overall.threshold_one_class.sum())} of "
                                                              f"{len(overall)}",
        "threshold folds": overall.threshold_note.iloc[0] or f"{overall.threshold_folds.iloc[0]}, label x difficulty",
    })


@dg.asset(group_name=GROUP_VALIDATION, code_version=CODE_VERSION)
def phase3_report(
    top_latents: dict[str, pd.DataFrame], phase3_classification: dict[str, pd.DataFrame],
    phase3_steering_coefficients: dict[str, pd.DataFrame], phase3_steering: dict[str, pd.DataFrame],
    phase3_readouts: dict[str, pd.DataFrame], general_text_cutoffs: pd.DataFrame, phase2: dict[str, pd.DataFrame],
    sae_seed_replicates: dict[str, pd.DataFrame], study_design: StudyDesign,
) -> dg.Output[str]:
    """Every table of Phases 2 and 3 in one markdown page (also written to data/phase3/report.md): the SAE
    quality table first, then the declared confirmatory family."""
    report = render_report(
        top_latents, phase3_classification, phase3_steering_coefficients, phase3_steering, phase3_readouts,
        general_text_cutoffs, study_design.label, quality_table_of(phase2), sae_seed_replicates,
    )
    return dg.Output(report, data_version=data_version(report), metadata={"report": dg.MetadataValue.md(report)})
