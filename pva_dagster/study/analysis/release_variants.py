"""Other SAEs of a SAELens release at the same layers: its other widths and L0 levels, named once for every layer.

A pretrained release trains one SAE per width and sparsity from one seed, so its replicates of the primary are
its other widths and L0 levels (GemmaScope: 16k to 1M latents at every layer of Gemma-2-2B, several L0 levels
each). Their ids differ from layer to layer (``layer_12/width_16k/average_l0_82`` but
``layer_6/width_16k/average_l0_70``), so a variant is a template, ``{layer}`` and where needed ``{l0}`` filled
from SAELens's own release table (``pretrained_saes.yaml``: every id of the release and its expected L0): the
lowest or highest L0 the release has at that layer and width. Nothing here reaches the hub.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

L0Choice = Literal["lowest", "highest"]
L0_CHOICES: tuple[L0Choice, ...] = ("lowest", "highest")
_L0_FIELD = "{l0}"


def release_ids(release: str) -> Mapping[str, float | None]:
    """Every SAE id of ``release`` in SAELens's table, with its expected L0 where the table gives one; raises
    naming the release when SAELens does not know it."""
    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise ValueError(f"SAELens knows no release {release!r} (its table has {len(directory)} releases)")
    lookup = directory[release]
    expected = lookup.expected_l0 or {}
    return {sae_id: expected.get(sae_id) for sae_id in lookup.saes_map}


def release_location(release: str, sae_id: str) -> tuple[str, str]:
    """(hub repo, folder) where SAELens's table says the SAE ``sae_id`` of ``release`` lives; raises naming both
    when the table has no such SAE."""
    lookup = get_pretrained_saes_directory().get(release)
    if lookup is None or sae_id not in lookup.saes_map:
        raise ValueError(f"SAELens release {release!r} has no SAE {sae_id!r}")
    return lookup.repo_id, lookup.saes_map[sae_id]


@dataclass(frozen=True)
class ReleaseVariant:
    """One other SAE per layer from ``release``: ``sae_id`` with ``{layer}`` and, where the L0 level is chosen
    from the release's table, ``{l0}`` and ``l0`` ("lowest" or "highest")."""

    release: str
    sae_id: str
    l0: L0Choice | None = None

    def __post_init__(self) -> None:
        if "{layer}" not in self.sae_id:
            raise ValueError(f"a variant's sae_id must contain {{layer}}, got {self.sae_id!r}")
        if (_L0_FIELD in self.sae_id) != (self.l0 is not None):
            raise ValueError(
                f"sae_id {self.sae_id!r} and l0 {self.l0!r}: an sae_id with {_L0_FIELD} needs l0 "
                f"(one of {L0_CHOICES}), and l0 needs {_L0_FIELD} in the sae_id"
            )
        if self.l0 is not None and self.l0 not in L0_CHOICES:
            raise ValueError(f"l0 must be one of {L0_CHOICES}, got {self.l0!r}")

    @property
    def label(self) -> str:
        """How the variant is named in tables and metadata."""
        chosen = f" ({self.l0} L0)" if self.l0 else ""
        return f"{self.release} {self.sae_id}{chosen}"

    def sae_id_at(self, layer: int) -> str:
        """The release's id of this variant at ``layer``; raises naming the release and the id (or the template)
        when the release has none."""
        ids = release_ids(self.release)
        if self.l0 is None:
            sae_id = self.sae_id.format(layer=layer)
            if sae_id not in ids:
                raise ValueError(f"SAELens release {self.release!r} has no SAE {sae_id!r}")
            return sae_id
        before, after = self.sae_id.format(layer=layer, l0="\0").split("\0")
        pattern = re.compile(f"{re.escape(before)}(\\d+){re.escape(after)}")
        levels = {sae_id: _level(sae_id, ids[sae_id], match) for sae_id in ids if (match := pattern.fullmatch(sae_id))}
        if not levels:
            raise ValueError(
                f"SAELens release {self.release!r} has no SAE matching {self.sae_id!r} at layer {layer}"
            )
        choose = min if self.l0 == "lowest" else max
        return choose(levels, key=lambda sae_id: (levels[sae_id], sae_id))


def _level(sae_id: str, expected: float | None, match: re.Match[str]) -> float:
    """The L0 of ``sae_id``: the table's expected L0, else the number its id carries."""
    return float(expected) if expected else float(match.group(1))
