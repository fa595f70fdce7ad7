"""The selection across SAE seeds: on residuals with a planted direction, SAEs trained from other seeds (real SAELens
training) select latents whose decoder rows match the primary's rank-1 latent, on the study's split and on the
re-drawn ones; a variant of random decoder directions matches nothing; without variants the tables are empty and
say why; the general-text table holds every seed's frequencies and its primary rows read as before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from pva_dagster.resources import EmbeddedSAEs, LocalSAEs, PretrainedSAEs
from pva_dagster.study.analysis.embedded_saes import (
    SAETrainingPlan,
    record_variant_seeds,
    recorded_variant_seeds,
    train_layer_sae,
)
from pva_dagster.study.analysis.general_text import frequencies_by_layer, frequency_table, seed_frequency_table
from pva_dagster.study.analysis.general_text_cutoff import ranking_rule
from pva_dagster.study.analysis.sae_variants import MATCH_COSINE, variant_quality
from pva_dagster.study.domain import CORRECT, SAE_SPLIT, VALIDATION_SPLIT
from pva_dagster.study.evaluation.replicates import ReplicateDesign
from pva_dagster.study.evaluation.sae_seed_replicates import (
    QUALITY,
    SELECTION_COLUMNS,
    SELECTIONS,
    STUDY_SPLIT,
    SUMMARY,
    seed_replicate_tables,
    seed_sae,
    seed_section,
)
from pva_dagster.study.layout import DataLayout
from tests.helpers import one_thread, planted_rows

D_MODEL, ATOMS, TASKS = 32, 24, 160
PLAN = SAETrainingPlan(d_sae=32, k=4, training_tokens=128 * 600, batch_size=128, lr=3e-3, readout_share=0.0,
                       centre_on_readout=False, seed=0, seed_variants=2)  # fmt: skip
DESIGN = ReplicateDesign(seed=0, resplits=4)


def _cutoffs(general_freq):
    return ranking_rule(general_freq, None, 0.02, None)[1]  # the design's absolute rule


@pytest.fixture(scope="module")
def family():
    """Tasks whose correct ones carry the planted atom, the SAEs of the primary and its two seed variants trained
    on a corpus of the same dictionary, and the residuals."""
    generator = torch.Generator().manual_seed(3)
    atoms = torch.nn.functional.normalize(torch.randn(ATOMS, D_MODEL, generator=generator), dim=1)
    corpus = planted_rows(4096, generator, atoms, (torch.rand(4096, generator=generator) < 0.2).float())
    correct = np.arange(TASKS) % 2 == 0
    residuals = {0: planted_rows(TASKS, generator, atoms, torch.from_numpy(correct).float()).numpy()}
    tasks = pd.DataFrame({
        "task_id": np.arange(TASKS), "complexity": 1 + (np.arange(TASKS) // 2) % 4, "correct": correct,
        "split": np.where(np.arange(TASKS) < TASKS // 2, SAE_SPLIT, VALIDATION_SPLIT),
    })  # fmt: skip
    with one_thread():
        saes = {
            seed: {0: train_layer_sae(corpus, torch.empty(0, D_MODEL), layer=0, plan=PLAN.for_seed(seed))[0]}
            for seed in (PLAN.seed, *PLAN.variant_seeds)
        }
    return tasks, residuals, saes


def _seed_sae(seed, saes, residuals):
    return seed_sae(seed, saes[seed], residuals, {0: np.zeros(PLAN.d_sae)}, _cutoffs)


def test_variants_select_the_primarys_direction_and_a_random_decoder_does_not(family):
    tasks, residuals, saes = family
    primary = _seed_sae(PLAN.seed, saes, residuals)
    variants = [_seed_sae(seed, saes, residuals) for seed in PLAN.variant_seeds]
    quality = variant_quality(residuals, {seed: saes[seed] for seed in PLAN.variant_seeds})
    tables = seed_replicate_tables(tasks, primary, variants, DESIGN, quality, "unused: there are variants")

    selections = tables[SELECTIONS]
    assert list(selections.columns) == list(SELECTION_COLUMNS)
    assert set(selections.split) == {STUDY_SPLIT, *(f"resplit {r}" for r in range(DESIGN.resplits))}
    assert set(selections.seed) == set(PLAN.variant_seeds)
    assert not selections.duplicated(["seed", "split", "direction"]).any()
    mine = selections[selections.direction == CORRECT]
    assert (mine.auroc > 0.9).all() and (mine.primary_auroc > 0.9).all()  # the planted direction, on validation
    summary = tables[SUMMARY].set_index("direction").loc[CORRECT]
    assert summary.variants == 2 and summary.recovered_share >= 2 / 3
    assert summary.resplit_recovered_share >= 2 / 3 and summary.median_best_cosine >= MATCH_COSINE
    assert summary.median_auroc > 0.9 and summary.median_variant_fvu == pytest.approx(quality.fvu.median())
    assert sorted(tables[QUALITY].seed) == list(PLAN.variant_seeds)
    assert set(tables[QUALITY].variant) == {f"seed {seed}" for seed in PLAN.variant_seeds}  # the default name
    named = seed_replicate_tables(tasks, primary, variants, DESIGN, quality, "unused", {1: "width 65k", 2: "L0 9"})
    assert dict(zip(named[QUALITY].seed, named[QUALITY].variant, strict=True)) == {1: "width 65k", 2: "L0 9"}
    assert "## Across SAE seeds" in seed_section(tables) and "recovered_share" in seed_section(tables)[-1]

    # The same selections, but decoder rows of random directions: nothing is recovered, on any split.
    noise = np.random.default_rng(0).standard_normal((PLAN.d_sae, D_MODEL))
    random = dataclasses.replace(variants[0], seed=99, decoders={0: noise})
    relabelled = quality[quality.seed == variants[0].seed].assign(seed=99)  # its quality is not what is checked
    unmatched = seed_replicate_tables(tasks, primary, [random], DESIGN, relabelled, "unused")
    assert not unmatched[SELECTIONS].recovers_primary.any()
    assert (unmatched[SELECTIONS].best_cosine < MATCH_COSINE).all()
    row = unmatched[SUMMARY].set_index("direction").loc[CORRECT]
    assert row.recovered_share == 0 and row.resplit_recovered_share == 0


def test_without_variants_the_tables_are_empty_and_say_why(family):
    tasks, residuals, saes = family
    why = EmbeddedSAEs().no_variants()
    tables = seed_replicate_tables(tasks, _seed_sae(PLAN.seed, saes, residuals), [], DESIGN, pd.DataFrame(), why)
    assert all(table.empty for table in tables.values())
    assert all(table.attrs["note"] == f"no SAE seed variants: {why}" for table in tables.values())
    assert "seed_variants = 0" in why
    assert seed_section(tables) == ["## Across SAE seeds", f"Not computed: no SAE seed variants: {why}."]


def test_sources_name_their_variants_or_say_why_there_are_none(tmp_path):
    layout = DataLayout(tmp_path)
    with pytest.raises(FileNotFoundError, match="materialize sae_weights"):
        EmbeddedSAEs().variant_seeds(layout)
    record_variant_seeds(layout, PLAN)
    assert EmbeddedSAEs().variant_seeds(layout) == recorded_variant_seeds(layout) == (1, 2)
    assert EmbeddedSAEs().variant_labels(layout) == {1: "seed 1", 2: "seed 2"}
    record_variant_seeds(layout, dataclasses.replace(PLAN, seed_variants=0))
    assert EmbeddedSAEs().variant_seeds(layout) == ()
    gemma = PretrainedSAEs(release="gemma-scope-2b-pt-res-canonical", sae_id="layer_{layer}/width_16k/canonical")
    assert gemma.variant_seeds(layout) == () and "GemmaScope" in gemma.no_variants()
    assert "PretrainedSAEs.variants" in gemma.no_variants()
    local = LocalSAEs(folder=str(tmp_path / "layer_{layer}"))
    with pytest.raises(ValueError, match="no seed variants"):
        local.load_variant(0, 1, layout, "cpu")


def test_the_general_text_table_holds_every_seed_and_its_primary_rows_read_as_before(family):
    _, residuals, saes = family
    frame = seed_frequency_table(saes, residuals, primary_seed=PLAN.seed)
    assert sorted(set(frame.seed)) == [PLAN.seed, *PLAN.variant_seeds] and frame.attrs["primary_seed"] == PLAN.seed
    alone = frequencies_by_layer(frequency_table(saes[PLAN.seed], residuals))
    np.testing.assert_array_equal(frequencies_by_layer(frame)[0], alone[0])
    variant = frequencies_by_layer(frame, PLAN.variant_seeds[0])
    np.testing.assert_array_equal(variant[0], frequencies_by_layer(frequency_table(saes[1], residuals))[0])
    with pytest.raises(ValueError, match="seed 7"):
        frequencies_by_layer(frame, 7)
    with pytest.raises(ValueError, match="no SAEs of the primary's seed 5"):
        seed_frequency_table(saes, residuals, primary_seed=5)
