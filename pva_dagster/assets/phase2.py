"""Phase 2: which SAE latents fire differently on correct and incorrect solutions, per layer and split.

The asset key is ``phase2`` so that ``dagster asset materialize --select 'phase2*'`` re-runs it and Phase 3.
"""


import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field, field_validator

from pva_dagster.assets.loading import model_on_device
from pva_dagster.assets.models import sae_weights
from pva_dagster.assets.phase1 import phase1_0_solutions, phase1_2_solutions
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_SEPARATION
from pva_dagster.resources import DataStore, DevicePool, LanguageModel, SAESource, StudyDesign
from pva_dagster.resources.choices import one_of
from pva_dagster.study import storage
from pva_dagster.study.analysis.activation_index import activation_index
from pva_dagster.study.analysis.corpus import (
    CORPORA,
    CORPUS_PACKAGES,
    corpus_fingerprint,
    corpus_texts,
    package_version,
    sample_position_residuals,
)
from pva_dagster.study.analysis.latent_scores import counts_by_group, pooled, score_split
from pva_dagster.study.analysis.sae import encode
from pva_dagster.study.analysis.separation import best_latents, general_frequency, rank_latents
from pva_dagster.study.generation.phase1_files import phase1_dataset_files
from pva_dagster.study.plots import histogram_by_group, markdown_table

PHASE2_SPLITS = ("sae", "validation")


class Phase2Config(dg.Config):
    splits: list[str] = Field(
        default=list(PHASE2_SPLITS),
        description="'sae' = discovery split (temperature 0); 'validation' also pools the Phase 1.2 temperatures.",
    )
    input_dataset: str | None = Field(
        default=None,
        description="Score this Phase 1.0 dataset file instead of the materialized partitions (as --input did).",
    )
    general_corpus: str = Field(default="fortunes", description=f"General-text corpus, one of {sorted(CORPORA)}.")
    general_documents: int = Field(
        default=2000, ge=1, description="General-text documents the filter reads, one random token position each."
    )
    max_general_freq: float = Field(
        default=0.02, description="Keep only latents active on fewer (<) of the general-text positions."
    )
    top_n: int = Field(default=100, description="Candidates per direction before the general-text filter.")
    keep: int = Field(default=20, description="Latents kept per direction after the filter.")

    @field_validator("splits")
    @classmethod
    def _known_splits(cls, splits: list[str]) -> list[str]:
        if not splits:
            raise ValueError(f"choose at least one split of {PHASE2_SPLITS}")
        return [one_of("split", split, PHASE2_SPLITS) for split in splits]

    @field_validator("general_corpus")
    @classmethod
    def _known_corpus(cls, corpus: str) -> str:
        return one_of("corpus", corpus, CORPORA)


@dg.asset(
    group_name=GROUP_SEPARATION,
    deps=[phase1_0_solutions, phase1_2_solutions, sae_weights],
    op_tags=GPU_STEP_TAGS,
)
def phase2(
    context: dg.AssetExecutionContext,
    config: Phase2Config,
    problem_splits: pd.DataFrame,
    duckdb: DuckDBResource,
    sae_source: SAESource,
    language_model: LanguageModel,
    study_design: StudyDesign,
    data_store: DataStore,
    device_pool: DevicePool,
) -> dg.MaterializeResult:
    """Separation scores of every latent (per layer, split, temperature) and the top latents per direction."""
    layout, layers = data_store.layout, study_design.sae_layers
    metadata: dict[str, object] = {}
    with model_on_device(context, device_pool, language_model, data_store) as (device, model, tokenizer):
        saes = {layer: sae_source.load(layer, layout, device) for layer in layers}
        texts = corpus_texts(config.general_corpus)
        general = sample_position_residuals(
            model, tokenizer, texts, layers, config.general_documents, context_len=128, batch_size=16,
            seed=study_design.seed,
        )
        general_freq = {layer: general_frequency(encode(saes[layer], general[layer].numpy(), 256)) for layer in layers}
        package = CORPUS_PACKAGES[config.general_corpus]
        metadata["general-text corpus"] = {
            "name": config.general_corpus, "package version": package_version(package) if package else "python stdlib",
            "sha256": corpus_fingerprint(texts), "documents available": len(texts),
            "documents read": config.general_documents, "seed": study_design.seed,
        }
        del model
        for split in config.splits:
            files = phase1_dataset_files(
                layout, study_design.max_task_id, study_design.task_range_size, study_design.temperatures,
                with_sampled=split == "validation", input_dataset=config.input_dataset,
            )
            task_ids = problem_splits.task_id[problem_splits.split == split].tolist()
            with duckdb.get_connection() as conn:
                index = activation_index(conn, files, task_ids, layers)
            context.log.info(f"split {split}: {len(index) // len(layers)} samples from {len(files)} dataset files")
            scores = score_split(index, layers, saes.__getitem__, context.log.info)
            pooled_scores = pooled(scores)
            ranked = rank_latents(
                pooled_scores, general_freq, top_n=config.top_n, max_general_freq=config.max_general_freq,
                keep=config.keep,
            )
            out = layout.phase2_dir(split)
            storage.write_parquet(out / "separation_scores.parquet", scores)
            storage.write_parquet(out / "top_latents.parquet", ranked)
            storage.write_json(
                out / "top_latents.json",
                {
                    "split": split,
                    "counts": counts_by_group(index),
                    "best": best_latents(ranked),
                    "top": ranked.to_dict("records"),
                    "config": config.model_dump(),
                    "general_corpus": metadata["general-text corpus"],
                },
            )
            metadata[f"{split} top latents"] = dg.MetadataValue.md(markdown_table(ranked.head(10)))
            metadata[f"{split} separation by layer"] = dg.MetadataValue.md(
                histogram_by_group(
                    {f"layer {layer}": pooled_scores.s_correct[pooled_scores.layer == layer].to_numpy() for layer in layers},
                    title=f"s_correct = f_correct - f_incorrect ({split} split)",
                    xlabel="s_correct",
                )
            )
            metadata[f"{split} scores"] = dg.MetadataValue.path(str(out / "separation_scores.parquet"))
    return dg.MaterializeResult(metadata=metadata)
