"""Where the SAEs come from: GemmaScope through SAELens, a local SAELens folder, or trained offline."""


from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, field_validator

from pva_dagster.resources.choices import one_of
from pva_dagster.study.analysis.embedded_saes import SAETrainingPlan, train_embedded_saes
from pva_dagster.study.analysis.sae import load_local_sae, load_pretrained_sae, sae_hook_layer
from pva_dagster.study.layout import DataLayout

SAE_SOURCES = ("embedded", "pretrained", "local")


class SAESource(dg.ConfigurableResource):
    source: str = Field(
        default="embedded",
        description="'embedded': TopK SAEs trained here with SAELens on the embedded model (saved under "
        "data/saes); 'pretrained': SAE.from_pretrained(release, sae_id); 'local': SAELens folders at local_dir.",
    )
    release: str = Field(default="gemma-scope-2b-pt-res-canonical", description="SAELens release (pretrained).")
    sae_id: str = Field(default="layer_{layer}/width_16k/canonical", description="SAE id template (pretrained).")
    local_dir: str = Field(default="", description="Folder template with {layer} (source='local').")
    d_sae: int = Field(default=2048, description="Latents of each embedded SAE.")
    k: int = Field(default=32, description="Active latents per token (TopK) of each embedded SAE.")
    corpus_tokens: int = Field(default=40_000, description="Corpus tokens whose residuals the embedded SAEs learn.")
    training_tokens: int = Field(default=120_000, description="Training samples per SAE (epochs over the corpus).")
    corpus_files: int = Field(default=200, description="Standard-library files the training corpus draws from.")

    @field_validator("source")
    @classmethod
    def _known_source(cls, source: str) -> str:
        return one_of("SAE source", source, SAE_SOURCES)

    def _folder(self, layout: DataLayout, layer: int) -> Path:
        return layout.sae_dir(layer) if self.source == "embedded" else Path(self.local_dir.format(layer=layer))

    def prepare(
        self, model: Any, tokenizer: Any, layers: Sequence[int], layout: DataLayout, seed: int,
        log: Callable[[str], None],
    ) -> dict[int, dict[str, float]]:
        """Train the embedded SAEs that are missing; other sources need nothing made."""
        if self.source != "embedded":
            return {}
        plan = SAETrainingPlan(
            d_sae=self.d_sae, k=self.k, corpus_tokens=self.corpus_tokens, training_tokens=self.training_tokens,
            corpus_files=self.corpus_files,
            seed=seed,
        )
        return train_embedded_saes(model, tokenizer, layers, lambda layer: layout.sae_dir(layer), plan, log)

    def load(self, layer: int, layout: DataLayout, device: str) -> Any:
        """The SAELens SAE reading ``blocks.{layer}.hook_resid_post``; raises if it reads another hook."""
        if self.source == "pretrained":
            sae = load_pretrained_sae(self.release, self.sae_id.format(layer=layer), device)
        else:
            sae = load_local_sae(self._folder(layout, layer), device)
        if sae_hook_layer(sae) != layer:
            raise ValueError(f"the SAE loaded for layer {layer} reads layer {sae_hook_layer(sae)}")
        return sae
