"""Where the SAEs come from, one class per variant: a SAELens release (GemmaScope), local SAELens folders, or
SAEs trained here on the embedded model. Assets take the base type ``SAESource``; a profile binds a variant.

How an embedded SAE is trained (latents, k, corpus, the readout prompts it also reads) is science: it comes from
the ``sae_weights`` asset's config as an ``SAETrainingPlan`` and from the study's problems, not from this resource.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import dagster as dg
from pydantic import AfterValidator, Field

from pva_dagster.study.analysis.embedded_saes import (
    ReadoutPrompts,
    SAETrainingPlan,
    load_variant,
    record_variant_seeds,
    recorded_variant_seeds,
    train_embedded_saes,
)
from pva_dagster.study.analysis.sae import load_local_sae, load_pretrained_sae, sae_hook_layer
from pva_dagster.study.layout import DataLayout


def _names_the_layer(template: str) -> str:
    if "{layer}" not in template:
        raise ValueError(f"{template!r} must contain {{layer}} (one SAE per layer)")
    return template


LayerTemplate = Annotated[str, AfterValidator(_names_the_layer)]  # a string with {layer}, checked on creation

class SAESource(dg.ConfigurableResource, ABC):
    """One SAE per analysed layer, each reading ``blocks.{layer}.hook_resid_post``."""

    def prepare(
        self, model: Any, tokenizer: Any, layers: Sequence[int], layout: DataLayout, plan: SAETrainingPlan,
        readout: ReadoutPrompts, log: Callable[[str], None],
    ) -> dict[int, dict[str, float]]:
        """Make the SAEs that must be made here (per layer, a training report); most sources have them."""
        return {}

    @abstractmethod
    def _load(self, layer: int, layout: DataLayout, device: str) -> Any: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the SAEs come from, for the asset's metadata."""

    def load(self, layer: int, layout: DataLayout, device: str) -> Any:
        """The SAELens SAE reading ``blocks.{layer}.hook_resid_post``; raises if it reads another hook."""
        sae = self._load(layer, layout, device)
        if sae_hook_layer(sae) != layer:
            raise ValueError(f"the SAE loaded for layer {layer} reads layer {sae_hook_layer(sae)}")
        return sae

    def variant_seeds(self, layout: DataLayout) -> tuple[int, ...]:
        """The seeds of the SAEs that differ from each layer's primary in their seed alone (none by default)."""
        return ()

    def load_variant(self, layer: int, seed: int, layout: DataLayout, device: str) -> Any:
        """The seed variant ``seed`` of the layer's SAE."""
        raise ValueError(f"{self.describe()} has no seed variants: {self.no_variants()}")

    def no_variants(self) -> str:
        """Why this source has no seed variants, said where a table of them would be."""
        return "this SAE source comes without seed variants"


class PretrainedSAEs(SAESource):
    """``SAE.from_pretrained(release, sae_id)`` through SAELens (the hub or its cache)."""

    release: str = Field(description="SAELens release, e.g. gemma-scope-2b-pt-res-canonical.")
    sae_id: LayerTemplate = Field(description="SAE id template with {layer}, e.g. layer_{layer}/width_16k/canonical.")

    def _load(self, layer: int, layout: DataLayout, device: str) -> Any:
        return load_pretrained_sae(self.release, self.sae_id.format(layer=layer), device)

    def describe(self) -> str:
        return f"pretrained {self.release} {self.sae_id}"

    def no_variants(self) -> str:
        return (
            f"a pretrained release ({self.release}; GemmaScope among them) publishes one SAE per width and L0, "
            "trained from one seed: it has no seed variants. Its other widths and L0 levels are this source's "
            "variants, which are not built here"
        )


class LocalSAEs(SAESource):
    """SAELens folders (``save_model``) on disk, one per layer."""

    folder: LayerTemplate = Field(description="Folder template with {layer}, e.g. /models/saes/layer_{layer}.")

    def _load(self, layer: int, layout: DataLayout, device: str) -> Any:
        return load_local_sae(Path(self.folder.format(layer=layer)), device)

    def describe(self) -> str:
        return f"local {self.folder}"

    def no_variants(self) -> str:
        return f"local SAE folders ({self.folder}) hold one SAE per layer: no seed variants"


class EmbeddedSAEs(SAESource):
    """TopK SAEs trained here with SAELens on the embedded model, saved under the data folder's saes/."""

    def prepare(
        self, model: Any, tokenizer: Any, layers: Sequence[int], layout: DataLayout, plan: SAETrainingPlan,
        readout: ReadoutPrompts, log: Callable[[str], None],
    ) -> dict[int, dict[str, float]]:
        """Train the SAEs (and their seed variants) that none made from this model, plan and readout prompts."""
        reports = train_embedded_saes(model, tokenizer, layers, layout, plan, readout, log)
        record_variant_seeds(layout, plan)
        return reports

    def _load(self, layer: int, layout: DataLayout, device: str) -> Any:
        return load_local_sae(layout.sae_dir(layer), device)

    def variant_seeds(self, layout: DataLayout) -> tuple[int, ...]:
        """The seeds of the variants the last ``sae_weights`` trained or found current (its ``seed_variants``)."""
        return recorded_variant_seeds(layout)

    def load_variant(self, layer: int, seed: int, layout: DataLayout, device: str) -> Any:
        """The seed variant ``seed`` of the layer's SAE; raises naming the layer and seed when there is none."""
        return load_variant(layout, layer, seed, device)

    def no_variants(self) -> str:
        return "sae_weights ran with seed_variants = 0: no seed variant was trained"

    def describe(self) -> str:
        return "embedded (trained here)"
