"""Phase 3 readouts: is the latent's signal more than difficulty? Every reported latent beside surface baselines
(prompt length, complexity, TF-IDF of the prompt, length and complexity together, the two with TF-IDF), a dense
probe on the residual and a sparse probe on all SAE latents, per stored layer, each with its AUROC difference to
length and complexity together and the signal it adds beyond them.

Regularisation and thresholds chosen by cross-validation over the sae and hyperparams splits together, refitted on
them, scored once on validation; one row per task (the greedy Phase 1.0 label), since a task's samples share its
prompt residual.
"""

import os

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from pva_dagster.assets.loading import claimed_device
from pva_dagster.assets.provenance import data_version
from pva_dagster.assets.reuse import INPUTS_FINGERPRINT, inputs_fingerprint, stored_if_unchanged
from pva_dagster.assets.weights import sae_weights
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_VALIDATION
from pva_dagster.resources import DataStore, DevicePool, SAESource, StudyDesign
from pva_dagster.resources.parquet_io import PartitionFrames
from pva_dagster.study import outputs
from pva_dagster.study.analysis.activation_index import activation_index, phase1_records
from pva_dagster.study.analysis.general_text import frequencies_by_layer
from pva_dagster.study.analysis.sae import encode
from pva_dagster.study.domain import DIRECTIONS, SAE_SPLIT
from pva_dagster.study.evaluation.beyond_difficulty import beyond_difficulty_sentences
from pva_dagster.study.evaluation.confirmatory import PRIMARY_REPLICATE
from pva_dagster.study.evaluation.readout_inputs import readout_tasks, residuals_by_layer, why_not_computable
from pva_dagster.study.evaluation.readout_metrics import BOOTSTRAP_RESAMPLES, PERMUTATIONS
from pva_dagster.study.evaluation.readout_pipeline import ReadoutSettings, readout_tables
from pva_dagster.study.evaluation.replicate_report import replicate_plot
from pva_dagster.study.plots import auroc_by_layer, markdown_table

CODE_VERSION = "4"
ENCODE_BATCH = 256  # residual rows per SAE forward


class ReadoutConfig(dg.Config):
    resamples: int = Field(default=BOOTSTRAP_RESAMPLES, ge=100, description="Bootstrap resamples per interval.")
    permutations: int = Field(default=PERMUTATIONS, ge=99, description="Label permutations per AUROC p-value.")


def readout_inputs(
    phase1_0_solutions: PartitionFrames, problem_splits: pd.DataFrame, difficulty_mapping: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """The greedy Phase 1.0 records, the readouts' tasks (one row per task) and why the readouts cannot be
    computed on them (None when they can)."""
    records = phase1_records(phase1_0_solutions.values())
    tasks = readout_tasks(records, problem_splits, difficulty_mapping)
    return records, tasks, why_not_computable(tasks)


def task_residuals(
    duckdb: DuckDBResource, records: pd.DataFrame, tasks: pd.DataFrame, layers: list[int]
) -> dict[int, np.ndarray]:
    """``layer -> float32[tasks, d_model]`` in ``tasks``' order."""
    with duckdb.get_connection() as conn:
        index = activation_index(conn, records, tasks.task_id.tolist(), layers)
    return residuals_by_layer(index, tasks.task_id)


@dg.asset(group_name=GROUP_VALIDATION, deps=[sae_weights], op_tags=GPU_STEP_TAGS, code_version=CODE_VERSION)
def phase3_readouts(
    context: dg.AssetExecutionContext, config: ReadoutConfig, top_latents: dict[str, pd.DataFrame],
    phase1_0_solutions: PartitionFrames, problem_splits: pd.DataFrame, difficulty_mapping: pd.DataFrame,
    general_text_frequency: pd.DataFrame,
    duckdb: DuckDBResource, sae_source: SAESource, study_design: StudyDesign, data_store: DataStore,
    device_pool: DevicePool,
) -> dg.Output[dict[str, pd.DataFrame]]:
    """Baselines, probes and the best latents per layer, side by side on validation, and beyond difficulty."""
    made_from = inputs_fingerprint(context, config, study_design, sae_source)
    if (unchanged := stored_if_unchanged(context, made_from, data_store.layout)) is not None:
        return unchanged
    records, tasks, reason = readout_inputs(phase1_0_solutions, problem_splits, difficulty_mapping)
    if reason:  # a small run: said in the log, the metadata and the report, never papered over
        context.log.warning(f"readouts not computed: {reason}")
        empty = {name: pd.DataFrame() for name in outputs.READOUT_TABLES}
        empty[outputs.READOUT_TABLE].attrs["not_computed"] = reason
        return dg.Output(empty, data_version=data_version(empty), metadata={"not computed": reason})
    layers = sorted({int(layer) for layer_list in records.layers for layer in layer_list})
    residuals = task_residuals(duckdb, records, tasks, layers)
    context.log.info(f"{len(tasks)} tasks, residuals of {len(residuals)} layers; SAE layers {study_design.sae_layers}")
    with claimed_device(context, device_pool) as device:
        saes = {layer: sae_source.load(layer, data_store.layout, device) for layer in study_design.sae_layers}
        latents = {layer: encode(sae, residuals[layer], ENCODE_BATCH) for layer, sae in saes.items()}
    # One process per core this step may use: the replicates are thousands of small single-threaded fits.
    settings = ReadoutSettings(
        study_design.seed, config.resamples, config.permutations, workers=len(os.sched_getaffinity(0))
    )
    tables, rank1 = readout_tables(
        tasks, residuals, latents, top_latents[SAE_SPLIT], frequencies_by_layer(general_text_frequency), settings,
        context.log.info,
    )
    for direction in sorted(set(DIRECTIONS) - set(rank1)):
        context.log.warning(f"no {direction} latent survived Phase 2's general-text filter: none is confirmatory")
    table, beyond, flips = (tables[name] for name in (outputs.READOUT_TABLE, outputs.BEYOND_DIFFICULTY,
                                                       outputs.LABEL_FLIPS))  # fmt: skip
    reported = beyond[beyond.family == PRIMARY_REPLICATE]
    return dg.Output(tables, data_version=data_version(tables), metadata={
        INPUTS_FINGERPRINT: made_from,
        "rank-1 latents (primary replicate)": {direction: f"L{layer}" for direction, layer in rank1.items()},
        "beyond difficulty": dg.MetadataValue.md("\n\n".join(beyond_difficulty_sentences(reported))),
        **{f"AUROC by layer ({direction})": dg.MetadataValue.md(auroc_by_layer(table, direction))
           for direction in sorted(table.direction.unique())},
        "readouts (validation)": dg.MetadataValue.md(markdown_table(
            table[["readout", "layer", "direction", "auroc", "auroc_ci_low", "auroc_ci_high", "auroc_minus_surface",
                   "auroc_minus_surface_ci_low", "auroc_minus_surface_ci_high", "average_precision", "prevalence",
                   "f1", "majority_f1", "balanced_accuracy", "mcc", "family"]]
        )),
        "replicates (rank-1 over re-drawn splits)": dg.MetadataValue.md(
            markdown_table(tables[outputs.REPLICATE_SUMMARY]) + "\n\n"
            + replicate_plot(tables[outputs.REPLICATES], tables[outputs.REPLICATE_SUMMARY])
        ),
        "regularisation (cross-validated)": dg.MetadataValue.md(markdown_table(
            table[table.direction == "correct"].dropna(subset=["C"])[
                ["readout", "layer", "C", "cv_auroc", "C_fold_agreement", "C_fold_best", "cv_note"]]
        )),
        "tasks": len(tasks),
        "label": study_design.label,
        "base-correct solutions the extended tests reject": dg.MetadataValue.md(markdown_table(flips)),
    })
