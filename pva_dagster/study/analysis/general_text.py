"""Phase 2's general-text filter: on what fraction of general-text token positions each SAE latent fires.

A latent active on much ordinary English text says little about code correctness; Phase 2 drops candidates at
or above a frequency (``rank_latents(max_general_freq=...)``). The frequency is a property of the SAEs and the
corpus, not of Phase 1, so it is computed once per model, SAE set and corpus. The SAEs' seed variants read the
same general-text residuals (one model pass), so their filter is the same measurement on another SAE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pva_dagster.study.analysis.corpus import (
    CORPUS_PACKAGES,
    corpus_fingerprint,
    package_version,
    sample_position_residuals,
)
from pva_dagster.study.analysis.sae import encode
from pva_dagster.study.analysis.separation import general_frequency

CONTEXT_LEN, BATCH_SIZE, ENCODE_BATCH = 128, 16, 256


def general_text_residuals(
    model: Any, tokenizer: Any, texts: Sequence[str], layers: Sequence[int], documents: int, seed: int
) -> dict[int, np.ndarray]:
    """``layer -> float32[documents, d_model]``: ``documents`` texts drawn with ``seed``, one random token
    position each, read at each layer. CPU arrays only, so the model can be freed once this returns."""
    residuals = sample_position_residuals(
        model, tokenizer, texts, sorted(layers), documents, context_len=CONTEXT_LEN, batch_size=BATCH_SIZE, seed=seed
    )
    return {layer: residuals[layer].numpy() for layer in sorted(layers)}


def frequency_table(saes: Mapping[int, Any], residuals: Mapping[int, np.ndarray]) -> pd.DataFrame:
    """One row per (layer, latent): ``general_freq``, the fraction of sampled positions where it is active."""
    frames = []
    for layer in sorted(saes):
        freq = general_frequency(encode(saes[layer], residuals[layer], ENCODE_BATCH))
        latents = np.arange(len(freq), dtype=np.int64)
        frames.append(pd.DataFrame({"layer": layer, "latent": latents, "general_freq": freq}))
    return pd.concat(frames, ignore_index=True)


def seed_frequency_table(
    saes: Mapping[int, Mapping[int, Any]], residuals: Mapping[int, np.ndarray], primary_seed: int
) -> pd.DataFrame:
    """:func:`frequency_table` of each seed's SAEs (seed -> layer -> SAE) on the same residuals, with a ``seed``
    column; ``attrs["primary_seed"]`` names the primary's, whose rows :func:`frequencies_by_layer` reads."""
    if primary_seed not in saes:
        raise ValueError(f"no SAEs of the primary's seed {primary_seed} among seeds {sorted(saes)}")
    frame = pd.concat(
        [frequency_table(by_layer, residuals).assign(seed=seed) for seed, by_layer in sorted(saes.items())],
        ignore_index=True,
    )
    frame.attrs["primary_seed"] = primary_seed
    return frame


def frequencies_by_layer(frame: pd.DataFrame, seed: int | None = None) -> dict[int, np.ndarray]:
    """``layer -> float64[d_sae]`` indexed by latent, as ``rank_latents`` reads them: of the SAEs of ``seed``,
    by default the primary's (a table without a ``seed`` column holds the primary's alone)."""
    if "seed" in frame.columns:
        chosen = frame.attrs["primary_seed"] if seed is None else seed
        frame = frame[frame.seed == chosen]
        if frame.empty:
            raise ValueError(f"no general-text frequencies of the SAEs of seed {chosen}")
    elif seed is not None:
        raise ValueError(f"the general-text frequencies hold the primary SAEs' alone, not seed {seed}'s")
    return {
        int(layer): rows.sort_values("latent").general_freq.to_numpy()
        for layer, rows in frame.groupby("layer", sort=True)
    }


def corpus_facts(name: str, texts: Sequence[str], documents: int, seed: int) -> dict[str, Any]:
    """What identifies the general text read (recorded beside the frequencies and the top latents)."""
    package = CORPUS_PACKAGES[name]
    facts = {
        "name": name, "package version": package_version(package) if package else "python stdlib",
        "sha256": corpus_fingerprint(texts), "documents available": len(texts), "documents read": documents,
        "seed": seed,
    }
    return dict(sorted(facts.items()))
