"""The model that writes the code and the SAEs that read its residual stream, made loadable offline."""


import dagster as dg
import pandas as pd
from transformers import AutoConfig

from pva_dagster.assets.loading import model_on_device
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_MODELS
from pva_dagster.resources import DataStore, DevicePool, LanguageModel, SAESource, StudyDesign
from pva_dagster.study.plots import markdown_table


@dg.asset(group_name=GROUP_MODELS)
def language_model_weights(
    context: dg.AssetExecutionContext, language_model: LanguageModel, data_store: DataStore
) -> dg.MaterializeResult:
    """The language model's weights where ``from_pretrained`` finds them (the embedded GGUF converted once)."""
    weights = language_model.prepare(data_store.layout)
    config = AutoConfig.from_pretrained(weights)
    context.log.info(f"model ready at {weights}: {config.model_type}, {config.num_hidden_layers} layers")
    return dg.MaterializeResult(
        metadata={
            "weights": weights,
            "architecture": config.model_type,
            "layers": config.num_hidden_layers,
            "d_model": config.hidden_size,
            "vocab": config.vocab_size,
        }
    )


@dg.asset(group_name=GROUP_MODELS, deps=[language_model_weights], op_tags=GPU_STEP_TAGS)
def sae_weights(
    context: dg.AssetExecutionContext,
    sae_source: SAESource,
    language_model: LanguageModel,
    study_design: StudyDesign,
    data_store: DataStore,
    device_pool: DevicePool,
) -> dg.MaterializeResult:
    """One SAE per analysed layer, loadable through SAELens (trained here for the embedded profile)."""
    layout = data_store.layout
    with model_on_device(context, device_pool, language_model, data_store) as (device, model, tokenizer):
        reports = sae_source.prepare(
            model, tokenizer, study_design.sae_layers, layout, study_design.seed, context.log.info
        )
        rows = []
        for layer in study_design.sae_layers:
            sae = sae_source.load(layer, layout, device)
            rows.append({"layer": layer, "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae, **reports.get(layer, {})})
    table = pd.DataFrame(rows)
    return dg.MaterializeResult(
        metadata={
            "source": sae_source.source,
            "layers": study_design.sae_layers,
            "saes": dg.MetadataValue.md(markdown_table(table)),
        }
    )
