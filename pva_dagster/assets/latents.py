"""Phase 2: which SAE latents fire differently on correct and incorrect solutions, per layer and split, and
how well each SAE represents the study's residuals at all (``sae_quality``, one of ``phase2``'s tables).

``phase2`` (the separation scores of every latent, per split) is the first asset of the Phase 2 / Phase 3
graph, so that ``dagster asset materialize --select 'phase2*'`` re-runs it and everything downstream; the
general-text frequency it filters with depends on the model and SAEs only and is made with them (``prepare``).
"""

from typing import Any

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field, field_validator

from pva_dagster.assets.loading import claimed_device, with_model_released
from pva_dagster.assets.provenance import data_version
from pva_dagster.assets.reuse import INPUTS_FINGERPRINT, inputs_fingerprint, stored_if_unchanged
from pva_dagster.assets.weights import language_model_weights, sae_weights
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_SEPARATION
from pva_dagster.resources import DataStore, DevicePool, LanguageModel, SAESource, StudyDesign
from pva_dagster.resources.choices import one_of
from pva_dagster.resources.parquet_io import PartitionFrames
from pva_dagster.study import storage
from pva_dagster.study.analysis.activation_index import activation_index, phase1_records
from pva_dagster.study.analysis.corpus import CORPORA, corpus_texts
from pva_dagster.study.analysis.general_text import (
    corpus_facts,
    frequencies_by_layer,
    general_text_residuals,
    seed_frequency_table,
)
from pva_dagster.study.analysis.general_text_cutoff import cutoff_sensitivity, mean_density, ranking_rule
from pva_dagster.study.analysis.latent_scores import counts_by_group, pooled, score_split
from pva_dagster.study.analysis.sae_quality import (
    quality_markdown,
    quality_warnings,
    read_spliced_loss,
    sae_quality_table,
    separation_tables,
    with_spliced_loss,
)
from pva_dagster.study.analysis.separation import KEEP, TOP_N, best_latents, rank_latents
from pva_dagster.study.domain import SAE_SPLIT, VALIDATION_SPLIT
from pva_dagster.study.outputs import SAE_QUALITY_TABLE
from pva_dagster.study.plots import histogram_by_group, markdown_table
from pva_dagster.study.problems.splits import split_task_ids

CODE_VERSION = "4"  # general_text_frequency encodes with the SAEs' seed variants too
PHASE2_CODE_VERSION = "5"  # its value holds the SAE quality table too, with sae_weights' spliced loss
# The splits Phase 2 can score, and the default: the discovery split. "validation" adds an exploratory table
# pooling Phase 1.2's samples, whose rows share a task's prompt residual (phase3_readouts scores the discovery
# latents on validation one row per task instead).
PHASE2_SPLITS = (SAE_SPLIT, VALIDATION_SPLIT)
DEFAULT_PHASE2_SPLITS = (SAE_SPLIT,)


class GeneralTextConfig(dg.Config):
    general_corpus: str = Field(default="fortunes", description=f"General-text corpus, one of {sorted(CORPORA)}.")
    general_documents: int = Field(
        default=2000, ge=1, description="General-text documents the filter reads, one random token position each."
    )

    @field_validator("general_corpus")
    @classmethod
    def _known_corpus(cls, corpus: str) -> str:
        return one_of("corpus", corpus, CORPORA)


class Phase2Config(dg.Config):
    splits: list[str] = Field(
        default=list(DEFAULT_PHASE2_SPLITS),
        description="'sae' = discovery split (temperature 0); 'validation' (exploratory) also pools the Phase 1.2 "
        "temperatures.",
    )
    input_dataset: str | None = Field(
        default=None,
        description="Score this Phase 1.0 dataset file instead of the materialized partitions.",
    )

    @field_validator("splits")
    @classmethod
    def _known_splits(cls, splits: list[str]) -> list[str]:
        if not splits:
            raise ValueError(f"choose at least one split of {PHASE2_SPLITS}")
        return [one_of("split", split, PHASE2_SPLITS) for split in splits]


class TopLatentsConfig(dg.Config):
    max_general_freq: float | None = Field(
        default=None, description="Keep only latents active on fewer (<) of the general-text positions than this "
        "(None: the study design's cut-off).",
    )
    top_n: int = Field(default=TOP_N, description="Candidates per direction before the general-text filter.")
    keep: int = Field(default=KEEP, description="Latents kept per direction after the filter.")


@dg.asset(
    group_name=GROUP_SEPARATION, deps=[language_model_weights, sae_weights], op_tags=GPU_STEP_TAGS,
    code_version=CODE_VERSION,
)
def general_text_frequency(
    context: dg.AssetExecutionContext, config: GeneralTextConfig, sae_source: SAESource,
    language_model: LanguageModel, study_design: StudyDesign, data_store: DataStore, device_pool: DevicePool,
) -> dg.Output[pd.DataFrame]:
    """How often each latent of each SAE fires on general text (the filter of Phase 2's top latents), for the
    primary SAEs and each seed variant (``seed`` column; the primary's seed is the study's)."""
    layout, seed = data_store.layout, study_design.seed
    variant_seeds = sae_source.variant_seeds(layout)
    texts = corpus_texts(config.general_corpus)
    layers = study_design.sae_layers
    with claimed_device(context, device_pool, keep_model=True) as device:  # taken by with_model_released
        # The model is needed for the residuals only: it is freed before the SAEs load and encode them.
        residuals = with_model_released(
            language_model, layout, device,
            lambda model, tokenizer: general_text_residuals(
                model, tokenizer, texts, layers, config.general_documents, seed
            ),
        )
        saes = {seed: {layer: sae_source.load(layer, layout, device) for layer in layers}} | {
            variant: {layer: sae_source.load_variant(layer, variant, layout, device) for layer in layers}
            for variant in variant_seeds
        }
        frame = seed_frequency_table(saes, residuals, primary_seed=seed)
    facts = corpus_facts(config.general_corpus, texts, config.general_documents, seed)
    frame.attrs.update(corpus=facts, config=config.model_dump())
    by_layer = frame.groupby(["seed", "layer"]).general_freq.agg(["mean", "max"]).reset_index()
    return dg.Output(frame, data_version=data_version(frame), metadata={
        "general-text corpus": facts, "frequency by seed and layer": dg.MetadataValue.md(markdown_table(by_layer)),
        "SAE variants": sae_source.variant_labels(layout) or sae_source.no_variants(),
    })


@dg.asset(
    group_name=GROUP_SEPARATION, deps=[sae_weights], op_tags=GPU_STEP_TAGS, code_version=PHASE2_CODE_VERSION,
)
def phase2(
    context: dg.AssetExecutionContext, config: Phase2Config, phase1_0_solutions: PartitionFrames,
    phase1_2_solutions: PartitionFrames, problem_splits: pd.DataFrame, duckdb: DuckDBResource,
    sae_source: SAESource, study_design: StudyDesign, data_store: DataStore, device_pool: DevicePool,
) -> dg.Output[dict[str, pd.DataFrame]]:
    """Separation scores of every latent per split (per layer and temperature, and pooled over temperatures),
    and ``sae_quality``: how much of the residuals, and of what differs between tasks, each SAE loses, over every
    Phase 1.0 task."""
    made_from = inputs_fingerprint(context, config, study_design, sae_source)
    # A file given as input_dataset is no asset whose version Dagster records: always scored again.
    unchanged = None if config.input_dataset else stored_if_unchanged(context, made_from, data_store.layout)
    if unchanged is not None:
        return unchanged
    layers = study_design.sae_layers
    # input_dataset: score one Phase 1.0 file instead of the partitions (the partitions are then never read).
    greedy = (
        pd.read_parquet(config.input_dataset) if config.input_dataset else phase1_records(phase1_0_solutions.values())
    )
    scores: dict[str, pd.DataFrame] = {}
    metadata: dict[str, Any] = {
        "input_dataset": config.input_dataset or "the phase1_0_solutions partitions", INPUTS_FINGERPRINT: made_from,
    }
    with claimed_device(context, device_pool) as device:
        saes = {layer: sae_source.load(layer, data_store.layout, device) for layer in layers}
        with duckdb.get_connection() as conn:
            every_task = activation_index(conn, greedy, sorted(set(greedy.task_id)), layers)
        quality = with_spliced_loss(
            sae_quality_table(
                every_task, layers, saes.__getitem__, context.log.info,
                split_task_ids(problem_splits, VALIDATION_SPLIT),
            ),
            read_spliced_loss(data_store.layout.sae_spliced_loss_file),
        )
        for split in config.splits:
            records = phase1_records([greedy, *(phase1_2_solutions.values() if split == VALIDATION_SPLIT else [])])
            task_ids = split_task_ids(problem_splits, split)
            with duckdb.get_connection() as conn:
                index = activation_index(conn, records, task_ids, layers)
            context.log.info(f"split {split}: {len(index) // len(layers)} samples")
            scores[split] = score_split(index, layers, saes.__getitem__, context.log.info)
            scores[split].attrs.update(counts=counts_by_group(index), config=config.model_dump())
            metadata[f"{split} samples per group"] = scores[split].attrs["counts"]
    scores[SAE_QUALITY_TABLE] = quality
    metadata["SAE quality (every Phase 1.0 task; validation held out)"] = dg.MetadataValue.md(
        "\n\n".join([quality_markdown(quality), *quality_warnings(quality)])
    )
    return dg.Output(scores, data_version=data_version(scores), metadata=metadata)


@dg.asset(group_name=GROUP_SEPARATION, code_version=CODE_VERSION)
def top_latents(
    config: TopLatentsConfig, phase2: dict[str, pd.DataFrame], general_text_frequency: pd.DataFrame,
    study_design: StudyDesign, data_store: DataStore,
) -> dg.Output[dict[str, pd.DataFrame]]:
    """The best latents per direction and split, after the general-text filter (also ``top_latents.json``)."""
    general, ranked = frequencies_by_layer(general_text_frequency), {}
    rule, cutoffs = ranking_rule(
        general, config.max_general_freq, study_design.general_text_cutoff, study_design.general_text_density_multiple
    )
    metadata: dict[str, Any] = {
        "general-text cut-off rule": rule,
        "general-text cut-off per layer": {str(k): round(c, 5) for k, c in cutoffs.items()},
    }
    for split, scores in separation_tables(phase2).items():
        pooled_scores = pooled(scores)
        ranked[split] = rank_latents(
            pooled_scores, general, top_n=config.top_n, max_general_freq=cutoffs, keep=config.keep
        )
        facts = {
            "counts": scores.attrs["counts"], "general_corpus": general_text_frequency.attrs["corpus"],
            "config": {**scores.attrs["config"], **general_text_frequency.attrs["config"], **config.model_dump()},
            "general_text_cutoffs": {str(layer): cutoff for layer, cutoff in cutoffs.items()},
        }
        ranked[split].attrs.update(facts)
        storage.write_json(  # for notebooks; downstream assets read the asset's value
            data_store.layout.phase2_dir(split) / "top_latents.json",
            {"split": split, "best": best_latents(ranked[split]), "top": ranked[split].to_dict("records"), **facts},
        )
        metadata[f"{split} top latents"] = dg.MetadataValue.md(markdown_table(ranked[split].head(10)))
        metadata[f"{split} separation by layer"] = dg.MetadataValue.md(histogram_by_group(
            {f"layer {layer}": rows.s_correct.to_numpy() for layer, rows in pooled_scores.groupby("layer")},
            title=f"s_correct = f_correct - f_incorrect ({split} split)", xlabel="s_correct",
        ))
    return dg.Output(ranked, data_version=data_version(ranked), metadata=metadata)


@dg.asset(group_name=GROUP_SEPARATION, code_version=CODE_VERSION)
def general_text_cutoffs(
    config: TopLatentsConfig, phase2: dict[str, pd.DataFrame], general_text_frequency: pd.DataFrame,
    study_design: StudyDesign,
) -> dg.Output[pd.DataFrame]:
    """How the discovery split's top latents change with the general-text cut-off (0.5, 1, 2, 5 %), against the
    rule the ranking uses (the study design's, or this run's ``max_general_freq``); exploratory."""
    general = frequencies_by_layer(general_text_frequency)
    design = ranking_rule(
        general, config.max_general_freq, study_design.general_text_cutoff, study_design.general_text_density_multiple
    )
    table = cutoff_sensitivity(pooled(phase2[SAE_SPLIT]), general, top_n=config.top_n, keep=config.keep, design=design)
    densities = {str(layer): round(mean_density(freq), 5) for layer, freq in general.items()}
    return dg.Output(table, data_version=data_version(table), metadata={
        "mean general-text density per layer": densities, "reference (the ranking's rule)": design[0],
        "top latents by cut-off": dg.MetadataValue.md(markdown_table(table.drop(columns="top"))),
    })
