"""The model that writes the code and the SAEs that read its residual stream, made loadable offline."""


import dagster as dg
import pandas as pd
from pydantic import Field
from transformers import AutoConfig

from pva_dagster.assets.loading import model_on_device
from pva_dagster.assets.provenance import data_version
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_MODELS
from pva_dagster.resources import DataStore, DevicePool, LanguageModel, SAESource, StudyDesign
from pva_dagster.study import storage
from pva_dagster.study.analysis.embedded_saes import ReadoutPrompts, SAETrainingPlan, readout_training_prompts
from pva_dagster.study.analysis.spliced_loss import spliced_loss_table
from pva_dagster.study.domain import VALIDATION_SPLIT
from pva_dagster.study.plots import markdown_table
from pva_dagster.study.problems.splits import split_task_ids
from pva_dagster.study.steering.sweep import vector_digest

# Bump when a change of this module's logic changes what the assets produce (the web UI then marks them stale).
CODE_VERSION = "3"
# Validation prompts (the first by task id) the spliced next-token loss is measured on: held out from the SAEs'
# training data, and enough tokens (~5k) for the loss's mean to settle at a few seconds per layer on a CPU.
SPLICED_LOSS_PROMPTS = 32


class SAETrainingConfig(dg.Config):
    """How SAEs are trained where the SAE source trains them (the embedded profile); other sources ignore it."""

    d_sae: int = Field(default=SAETrainingPlan.d_sae, ge=1, description="Latents of each SAE.")
    k: int = Field(default=SAETrainingPlan.k, ge=1, description="Active latents per token (TopK).")
    corpus_tokens: int = Field(
        default=SAETrainingPlan.corpus_tokens, ge=1, description="Corpus tokens whose residuals the SAEs learn."
    )
    training_tokens: int = Field(
        default=SAETrainingPlan.training_tokens, ge=1, description="Training samples per SAE (epochs over the corpus)."
    )
    corpus_files: int = Field(
        default=SAETrainingPlan.corpus_files, ge=1, description="Standard-library files the corpus draws from."
    )
    readout_share: float = Field(
        default=SAETrainingPlan.readout_share, ge=0, lt=1,
        description="Share of the training samples that are readout residuals (the last prompt token of the sae "
        "and hyperparams splits' prompts, never validation's), each repeated to fill it; 0: the corpus alone.",
    )
    readout_positions: int = Field(
        default=SAETrainingPlan.readout_positions, ge=1,
        description="Last tokens of each such prompt whose residuals are readout rows (1: the readout token only).",
    )
    centre_on_readout: bool = Field(
        default=SAETrainingPlan.centre_on_readout,
        description="Hold the decoder bias b_dec at the readout rows' mean, so the latents encode what differs "
        "between tasks; false: b_dec starts at the training rows' mean and is learnt.",
    )
    seed_variants: int = Field(
        default=SAETrainingPlan.seed_variants, ge=0,
        description="SAEs per layer besides the primary, trained alike from the same residuals under seeds seed + 1, "
        "seed + 2, ... (saes/variants/), so a finding can be checked as a decoder direction across seeds.",
    )

    def plan(self, seed: int) -> SAETrainingPlan:
        return SAETrainingPlan(**self.model_dump(), seed=seed)


@dg.asset(group_name=GROUP_MODELS, code_version=CODE_VERSION)
def language_model_weights(
    context: dg.AssetExecutionContext, language_model: LanguageModel, data_store: DataStore
) -> dg.MaterializeResult:
    """The language model's weights where ``from_pretrained`` finds them (the embedded GGUF converted once)."""
    weights = language_model.prepare(data_store.layout)
    config = AutoConfig.from_pretrained(weights)
    context.log.info(f"model ready at {weights}: {config.model_type}, {config.num_hidden_layers} layers")
    # The weights' name and configuration stand for them (hashing a 2B-parameter model per run would not pay).
    return dg.MaterializeResult(
        data_version=data_version({"weights": weights, "config": config.to_json_string()}),
        metadata={
            "weights": weights,
            "architecture": config.model_type,
            "layers": config.num_hidden_layers,
            "d_model": config.hidden_size,
            "vocab": config.vocab_size,
        }
    )


@dg.asset(group_name=GROUP_MODELS, deps=[language_model_weights], op_tags=GPU_STEP_TAGS, code_version=CODE_VERSION)
def sae_weights(
    context: dg.AssetExecutionContext,
    config: SAETrainingConfig,
    mbpp_problems: pd.DataFrame,
    problem_splits: pd.DataFrame,
    sae_source: SAESource,
    language_model: LanguageModel,
    study_design: StudyDesign,
    data_store: DataStore,
    device_pool: DevicePool,
) -> dg.MaterializeResult:
    """One SAE per analysed layer, loadable through SAELens (trained here for the embedded profile, also on the
    readout residuals of the non-validation problems' prompts), with its effect on the model's next-token loss
    when spliced in, on held-out validation prompts (``saes/spliced_loss.parquet``)."""
    layout = data_store.layout
    with model_on_device(context, device_pool, language_model, data_store) as (device, model, tokenizer):
        prompts = readout_training_prompts(mbpp_problems, problem_splits, study_design.prompt_format(), tokenizer)
        readout = ReadoutPrompts(prompts, study_design.max_prompt_tokens)
        reports = sae_source.prepare(
            model, tokenizer, study_design.sae_layers, layout, config.plan(study_design.seed), readout,
            context.log.info,
        )
        saes = {layer: sae_source.load(layer, layout, device) for layer in study_design.sae_layers}
        held_out = mbpp_problems[mbpp_problems.task_id.isin(split_task_ids(problem_splits, VALIDATION_SPLIT))]
        loss_prompts = study_design.prompt_format().prompts(held_out.sort_values("task_id").head(SPLICED_LOSS_PROMPTS),
                                                            tokenizer)  # fmt: skip
        context.log.info(f"next-token loss with each SAE spliced in, on {len(loss_prompts)} validation prompts")
        loss = pd.DataFrame(spliced_loss_table(
            model, tokenizer, saes, list(loss_prompts.values()), study_design.max_prompt_tokens
        ))
    storage.write_parquet(layout.sae_spliced_loss_file, loss)
    rows = [
        {"layer": layer, "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae, **reports.get(layer, {})}
        for layer, sae in saes.items()
    ]
    # The decoder: what Phase 3 steers along; the loss measured with it. The variants too: another set of them
    # (seed_variants, a release's L0 levels) is another input of the seed replicates.
    digests = {layer: vector_digest(sae.W_dec) for layer, sae in saes.items()}
    table = pd.DataFrame(rows).merge(loss, on="layer")
    return dg.MaterializeResult(
        data_version=data_version({"decoders": digests, "variants": sae_source.variant_labels(layout)}),
        metadata={
            "source": sae_source.describe(),
            "layers": study_design.sae_layers,
            "saes": dg.MetadataValue.md(markdown_table(table)),
        }
    )
