"""SAE seed variants: two seeds trained on data with a planted direction both learn it and the decoder matching
pairs their selections; the embedded training resumes variants by their fingerprints and retrains them when the
plan changes, without touching the primary; a missing variant is named."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pva_dagster.resources import EmbeddedSAEs
from pva_dagster.study.analysis.embedded_saes import (
    ReadoutPrompts,
    SAETrainingPlan,
    load_variant,
    train_embedded_saes,
    train_layer_sae,
)
from pva_dagster.study.analysis.sae import MADE_BY_FILE, encode
from pva_dagster.study.analysis.sae_variants import (
    MATCH_COSINE,
    best_match,
    decoders,
    match_selection,
    variant_quality,
    variant_summary,
)
from pva_dagster.study.domain import CORRECT, SAE_SPLIT, VALIDATION_SPLIT
from pva_dagster.study.evaluation.replicates import Discovery, ReplicateDesign, one_replicate
from pva_dagster.study.generation.model_loading import load_causal_lm
from pva_dagster.study.layout import DataLayout
from tests.helpers import one_thread, planted_rows

D_MODEL = 32
# About a second of training on plain rows (no readout mixing, b_dec learnt): enough to recover every atom.
PLAN = SAETrainingPlan(d_sae=32, k=4, training_tokens=128 * 600, batch_size=128, lr=3e-3, readout_share=0.0,
                       centre_on_readout=False, seed=0, seed_variants=1)  # fmt: skip


ATOMS = 24  # the data's sparse dictionary; atom 0 is the planted direction


def test_two_seeds_learn_a_planted_direction_and_the_matching_pairs_their_selections():
    generator = torch.Generator().manual_seed(3)
    atoms = torch.nn.functional.normalize(torch.randn(ATOMS, D_MODEL, generator=generator), dim=1)
    direction = atoms[0]
    corpus = planted_rows(4096, generator, atoms, (torch.rand(4096, generator=generator) < 0.2).float())
    correct = np.arange(160) % 2 == 0  # the planted direction is present exactly in the correct tasks' residuals
    tasks = planted_rows(160, generator, atoms, torch.from_numpy(correct).float()).numpy()
    splits = np.where(np.arange(160) < 80, SAE_SPLIT, VALIDATION_SPLIT)
    design = ReplicateDesign(seed=0)
    saes, selected = {}, {}
    with one_thread():
        for seed in (PLAN.seed, *PLAN.variant_seeds):
            sae, _ = train_layer_sae(corpus, torch.empty(0, D_MODEL), layer=0, plan=PLAN.for_seed(seed))
            latents = encode(sae, tasks, batch_size=64)
            discovery = Discovery({0: latents}, {0: np.zeros(PLAN.d_sae)}, {0: 1.0})
            saes[seed], selected[seed] = sae, one_replicate(pd.DataFrame(), correct, splits, discovery, design)
    rows = {seed: decoders({0: sae})[0] for seed, sae in saes.items()}
    for seed, chosen in selected.items():
        rank1 = chosen.set_index("direction").loc[CORRECT]
        unit = rows[seed][int(rank1.latent)] / np.linalg.norm(rows[seed][int(rank1.latent)])
        assert abs(unit @ direction.numpy()) > 0.9, (seed, rank1)  # each seed's rank-1 latent is the planted one
        assert rank1.auroc > 0.9
    primary, variant = PLAN.seed, PLAN.variant_seeds[0]
    assert not np.allclose(rows[primary], rows[variant])  # other seeds, other SAEs
    matches = match_selection({0: rows[primary]}, {0: rows[variant]}, selected[primary], selected[variant], variant)
    mine = matches.set_index("direction").loc[CORRECT]
    assert mine.best_is_primary_rank1 and mine.recovers_primary and mine.best_cosine > 0.9
    assert mine.cosine_to_primary_rank1 == pytest.approx(mine.best_cosine)
    quality = variant_quality({0: tasks}, {variant: {0: saes[variant]}})
    summary = variant_summary(matches, variants=1, quality=quality).set_index("direction").loc[CORRECT]
    assert summary.recovered_share == 1.0 and summary.match_cosine == MATCH_COSINE
    assert summary.median_variant_fvu == pytest.approx(quality.fvu.iloc[0])

    # A decoder of random directions recovers nothing: the same selection, no match above the threshold.
    noise = np.random.default_rng(0).standard_normal(rows[variant].shape)
    unmatched = match_selection({0: rows[primary]}, {0: noise}, selected[primary], selected[variant], variant)
    assert not unmatched.recovers_primary.any() and (unmatched.best_cosine < MATCH_COSINE).all()
    assert variant_summary(unmatched, variants=2).set_index("direction").loc[CORRECT].recovered_share == 0.0


TINY = SAETrainingPlan(d_sae=16, k=2, corpus_tokens=256, training_tokens=512, batch_size=64, corpus_files=2,
                       context_len=32, seed=5, seed_variants=1)  # fmt: skip
READOUT = ReadoutPrompts(("Add two numbers.\n\nassert f(1, 2) == 3\n\n# Solution:",), max_prompt_tokens=2048)


def test_variants_resume_by_fingerprint_and_retrain_when_the_plan_changes(tiny_gemma2_dir, tmp_path):
    """Each variant carries its own fingerprint: a rerun keeps it, another variant count trains only the new
    seed (the primary stays current), another setting retrains them all."""
    model, tokenizer = load_causal_lm(str(tiny_gemma2_dir))
    layout = DataLayout(tmp_path)

    def train(plan: SAETrainingPlan) -> list[str]:
        lines: list[str] = []
        train_embedded_saes(model, tokenizer, [1], layout, plan, READOUT, lines.append)
        return [line.split(": ", 1)[1].split(" trained")[0] for line in lines if " trained" in line]

    with one_thread():
        assert train(TINY) == ["SAE", "seed variant 6"]
        made_by = (layout.sae_variant_dir(1, 6) / MADE_BY_FILE).read_text()
        assert made_by != (layout.sae_dir(1) / MADE_BY_FILE).read_text()
        assert train(TINY) == []  # current: kept
        assert train(dataclasses.replace(TINY, seed_variants=2)) == ["seed variant 7"]
        assert (layout.sae_variant_dir(1, 6) / MADE_BY_FILE).read_text() == made_by
        assert train(dataclasses.replace(TINY, seed_variants=2, k=3)) == ["SAE", "seed variant 6", "seed variant 7"]
    primary = EmbeddedSAEs().load(1, layout, "cpu")
    variant = EmbeddedSAEs().load_variant(1, 7, layout, "cpu")
    assert variant.cfg.metadata.seed == 7 and primary.cfg.metadata.seed == 5
    assert not torch.allclose(primary.W_dec, variant.W_dec)


def test_a_missing_variant_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="layer 3, seed 99"):
        load_variant(DataLayout(tmp_path), layer=3, seed=99)


# Small decoders from a pool of entries, so zero rows, parallel rows and ties come up often.
ENTRY = st.sampled_from([0.0, 0.0, 1.0, -1.0, 2.5, 1e-8, -3.0])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 6), st.integers(1, 4), st.data())
def test_best_match_is_finite_and_finds_a_copied_row(d_sae, d_model, data):
    """Any decoder, zero rows included: a |cosine| in [0, 1]; a primary row scaled by any non-zero factor (the sign
    included) is matched at cosine 1 by a row parallel to it (itself or another: parallel rows tie up to rounding)."""
    primary = np.array(data.draw(st.lists(st.lists(ENTRY, min_size=d_model, max_size=d_model), min_size=d_sae,
                                          max_size=d_sae)))  # fmt: skip
    query = np.array(data.draw(st.lists(ENTRY, min_size=d_model, max_size=d_model)))
    latent, cosine = best_match(primary, query)
    assert 0 <= latent < d_sae and 0 <= cosine <= 1 + 1e-9
    source = data.draw(st.integers(0, d_sae - 1))
    if np.linalg.norm(primary[source]) > 1e-6:
        latent, cosine = best_match(primary, data.draw(st.sampled_from([-2.0, 0.5, 3.0])) * primary[source])
        assert cosine == pytest.approx(1.0)
        assert best_match(primary[[latent]], primary[source])[1] == pytest.approx(1.0)
