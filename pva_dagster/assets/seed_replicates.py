"""Phase 3 across SAE seeds: the readouts' selection redone on each seed variant of the SAEs, its rank-1 latents
matched to the primary's by decoder direction (science: ``study/evaluation/sae_seed_replicates.py``)."""

from collections.abc import Mapping

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from pva_dagster.assets.loading import claimed_device
from pva_dagster.assets.provenance import data_version
from pva_dagster.assets.readouts import readout_inputs, task_residuals
from pva_dagster.assets.reuse import INPUTS_FINGERPRINT, inputs_fingerprint, stored_if_unchanged
from pva_dagster.assets.weights import sae_weights
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_VALIDATION
from pva_dagster.resources import DataStore, DevicePool, SAESource, StudyDesign
from pva_dagster.resources.parquet_io import PartitionFrames
from pva_dagster.study.analysis.general_text import frequencies_by_layer
from pva_dagster.study.analysis.general_text_cutoff import ranking_rule
from pva_dagster.study.analysis.sae_variants import variant_quality
from pva_dagster.study.domain import SAE_SPLIT
from pva_dagster.study.evaluation.replicates import ReplicateDesign
from pva_dagster.study.evaluation.sae_seed_replicates import (
    QUALITY,
    SELECTIONS,
    SUMMARY,
    empty_tables,
    seed_replicate_tables,
    seed_sae,
    without_variants,
)
from pva_dagster.study.plots import markdown_table

CODE_VERSION = "1"


@dg.asset(group_name=GROUP_VALIDATION, deps=[sae_weights], op_tags=GPU_STEP_TAGS, code_version=CODE_VERSION)
def sae_seed_replicates(
    context: dg.AssetExecutionContext, top_latents: dict[str, pd.DataFrame], phase1_0_solutions: PartitionFrames,
    problem_splits: pd.DataFrame, difficulty_mapping: pd.DataFrame, general_text_frequency: pd.DataFrame,
    duckdb: DuckDBResource, sae_source: SAESource, study_design: StudyDesign, data_store: DataStore,
    device_pool: DevicePool,
) -> dg.Output[dict[str, pd.DataFrame]]:
    """The rank-1 latents of each SAE seed variant on the study's split and the replicates' re-drawn splits, with
    their validation AUROC and their decoder match to the primary's; a summary per direction; each variant's
    quality on the study's residuals."""
    made_from = inputs_fingerprint(context, study_design, sae_source)
    if (unchanged := stored_if_unchanged(context, made_from, data_store.layout)) is not None:
        return unchanged
    layout, seeds = data_store.layout, sae_source.variant_seeds(data_store.layout)
    found = {
        "SAE variants": sae_source.variant_labels(layout) or sae_source.no_variants(),
        "SAE source": sae_source.describe(),
        INPUTS_FINGERPRINT: made_from,
    }
    records, tasks, reason = readout_inputs(phase1_0_solutions, problem_splits, difficulty_mapping)
    if reason or not seeds:  # said in the log, the metadata and the report, never papered over
        empty = empty_tables(f"readouts not computed: {reason}") if reason else without_variants(
            sae_source.no_variants())
        note = empty[SUMMARY].attrs["note"]
        context.log.warning(note)
        return dg.Output(empty, data_version=data_version(empty), metadata={"not computed": note, **found})
    # The ranking's own settings and rule (its override, else the design's), applied to each SAE's frequencies.
    config, layers = top_latents[SAE_SPLIT].attrs["config"], study_design.sae_layers
    design = ReplicateDesign(study_design.seed, top_n=config["top_n"], keep=config["keep"])

    def cutoffs(general_freq: Mapping[int, np.ndarray]) -> dict[int, float]:
        return ranking_rule(general_freq, config["max_general_freq"], study_design.general_text_cutoff,
                            study_design.general_text_density_multiple)[1]  # fmt: skip

    residuals = task_residuals(duckdb, records, tasks, layers)
    with claimed_device(context, device_pool) as device:
        primary = seed_sae(study_design.seed, {layer: sae_source.load(layer, layout, device) for layer in layers},
                           residuals, frequencies_by_layer(general_text_frequency), cutoffs)  # fmt: skip
        saes = {s: {layer: sae_source.load_variant(layer, s, layout, device) for layer in layers} for s in seeds}
        variants = [seed_sae(s, saes[s], residuals, frequencies_by_layer(general_text_frequency, s), cutoffs)
                    for s in seeds]  # fmt: skip
        quality = variant_quality(residuals, saes)
    tables = seed_replicate_tables(
        tasks, primary, variants, design, quality, sae_source.no_variants(), sae_source.variant_labels(layout)
    )
    context.log.info(f"{len(seeds)} seed variants, {len(tables[SELECTIONS])} selections")
    return dg.Output(tables, data_version=data_version(tables), metadata={
        **found,
        "across SAE seeds (summary)": dg.MetadataValue.md(markdown_table(tables[SUMMARY])),
        "variant quality (study's residuals)": dg.MetadataValue.md(markdown_table(tables[QUALITY])),
    })
