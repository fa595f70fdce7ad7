"""Where the SAEs come from, one class per variant: a SAELens release (GemmaScope), local SAELens folders, or
SAEs trained here on the embedded model. Assets take the base type ``SAESource``; a profile binds a variant.

How an embedded SAE is trained (latents, k, corpus, the readout prompts it also reads) is science: it comes from
the ``sae_weights`` asset's config as an ``SAETrainingPlan`` and from the study's problems, not from this resource.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, cast

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
from pva_dagster.study.analysis.release_variants import L0_CHOICES, L0Choice, ReleaseVariant
from pva_dagster.study.analysis.sae import load_local_sae, load_pretrained_sae, sae_hook_layer
from pva_dagster.study.layout import DataLayout


def _names_the_layer(template: str) -> str:
    if "{layer}" not in template:
        raise ValueError(f"{template!r} must contain {{layer}} (one SAE per layer)")
    return template


def _reading_layer(sae: Any, layer: int, what: str) -> Any:
    """``sae``, once it is known to read ``blocks.{layer}.hook_resid_post``."""
    if sae_hook_layer(sae) != layer:
        raise ValueError(f"{what} loaded for layer {layer} reads layer {sae_hook_layer(sae)}")
    return sae


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
        return _reading_layer(self._load(layer, layout, device), layer, "the SAE")

    def variant_seeds(self, layout: DataLayout) -> tuple[int, ...]:
        """The keys of the other SAEs of each layer that the selection is redone on (none by default): seeds for
        SAEs trained here, negative numbers for a release's other widths and L0 levels (they have no seed, and a
        negative key never meets the study's seed)."""
        return ()

    def variant_labels(self, layout: DataLayout) -> dict[int, str]:
        """Each variant's key -> how tables and metadata name it."""
        return {seed: f"seed {seed}" for seed in self.variant_seeds(layout)}

    def load_variant(self, layer: int, seed: int, layout: DataLayout, device: str) -> Any:
        """The variant ``seed`` of the layer's SAE."""
        raise ValueError(f"{self.describe()} has no seed variants: {self.no_variants()}")

    def no_variants(self) -> str:
        """Why this source has no seed variants, said where a table of them would be."""
        return "this SAE source comes without seed variants"


class PretrainedVariant(dg.Config):
    """Another SAE of a SAELens release at each analysed layer (``release_variants.ReleaseVariant``)."""

    release: str = Field(description="SAELens release, e.g. gemma-scope-2b-pt-res (every L0 level).")
    sae_id: LayerTemplate = Field(
        description="SAE id template with {layer}, and {l0} where the L0 level is chosen from the release's table, "
        "e.g. layer_{layer}/width_16k/average_l0_{l0} or layer_{layer}/width_65k/canonical.",
    )
    l0: str | None = Field(default=None, description=f"With {{l0}}: one of {L0_CHOICES}, the L0 at that layer.")

    def resolved(self) -> ReleaseVariant:
        """The variant, checked: raises naming the sae_id and l0 when they do not fit together."""
        return ReleaseVariant(self.release, self.sae_id, cast(L0Choice | None, self.l0))


class PretrainedSAEs(SAESource):
    """``SAE.from_pretrained(release, sae_id)`` through SAELens (the hub or its cache)."""

    release: str = Field(description="SAELens release, e.g. gemma-scope-2b-pt-res-canonical.")
    sae_id: LayerTemplate = Field(description="SAE id template with {layer}, e.g. layer_{layer}/width_16k/canonical.")
    variants: list[PretrainedVariant] = Field(
        default_factory=list,
        description="Other widths / L0 levels of the same layers, on which the selection is redone (the release "
        "publishes one seed per width and L0, so these are its replicates of the primary).",
    )

    def _load(self, layer: int, layout: DataLayout, device: str) -> Any:
        return load_pretrained_sae(self.release, self.sae_id.format(layer=layer), device)

    def prepare(
        self, model: Any, tokenizer: Any, layers: Sequence[int], layout: DataLayout, plan: SAETrainingPlan,
        readout: ReadoutPrompts, log: Callable[[str], None],
    ) -> dict[int, dict[str, float]]:
        """Resolve every variant at every layer through SAELens's table now, so that a variant the release lacks
        fails here, naming it, and not after the primaries' analysis."""
        for variant in self._by_key().values():
            ids = [variant.sae_id_at(layer) for layer in layers]
            log(f"SAE variant {variant.label}: {', '.join(ids)}")
        return {}

    def _by_key(self) -> dict[int, ReleaseVariant]:
        """Each variant, checked, by its key: -1, -2, ... in ``variants``' order."""
        return {-number: variant.resolved() for number, variant in enumerate(self.variants, start=1)}

    def variant_seeds(self, layout: DataLayout) -> tuple[int, ...]:
        return tuple(self._by_key())

    def variant_labels(self, layout: DataLayout) -> dict[int, str]:
        return {key: variant.label for key, variant in self._by_key().items()}

    def load_variant(self, layer: int, seed: int, layout: DataLayout, device: str) -> Any:
        """The variant keyed ``seed`` (-1, -2, ... in ``variants``' order) at ``layer``."""
        variants = self._by_key()
        if seed not in variants:
            raise ValueError(f"{self.describe()} has no variant {seed}; its variants are {tuple(variants)}")
        variant = variants[seed]
        sae = load_pretrained_sae(variant.release, variant.sae_id_at(layer), device)
        return _reading_layer(sae, layer, f"the variant {variant.label}")

    def describe(self) -> str:
        return f"pretrained {self.release} {self.sae_id}"

    def no_variants(self) -> str:
        return (
            f"a pretrained release ({self.release}; GemmaScope among them) publishes one SAE per width and L0, "
            "trained from one seed: it has no seed variants, and no other width or L0 level is configured "
            "(PretrainedSAEs.variants)"
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
