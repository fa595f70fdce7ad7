"""Phase 2's general-text filter: on what fraction of general-text token positions each SAE latent fires.

A latent active on much ordinary English text says little about code correctness; Phase 2 drops candidates at
or above a frequency (``rank_latents(max_general_freq=...)``). The frequency is a property of the SAEs and the
corpus, not of Phase 1, so it is computed once per model, SAE set and corpus.
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


def measure_general_frequency(
    model: Any, tokenizer: Any, saes: Mapping[int, Any], texts: Sequence[str], documents: int, seed: int
) -> pd.DataFrame:
    """One row per (layer, latent): ``general_freq``, the fraction of sampled positions where it is active.

    ``documents`` texts are drawn with ``seed``, one random token position each, read at every SAE's layer.
    """
    layers = sorted(saes)
    residuals = sample_position_residuals(
        model, tokenizer, texts, layers, documents, context_len=CONTEXT_LEN, batch_size=BATCH_SIZE, seed=seed
    )
    frames = []
    for layer in layers:
        freq = general_frequency(encode(saes[layer], residuals[layer].numpy(), ENCODE_BATCH))
        latents = np.arange(len(freq), dtype=np.int64)
        frames.append(pd.DataFrame({"layer": layer, "latent": latents, "general_freq": freq}))
    return pd.concat(frames, ignore_index=True)


def frequencies_by_layer(frame: pd.DataFrame) -> dict[int, np.ndarray]:
    """``layer -> float64[d_sae]`` indexed by latent, as ``rank_latents`` reads them."""
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
