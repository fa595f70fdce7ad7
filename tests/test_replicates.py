"""Replicates: a latent that carries the label is selected across re-drawn splits and beats the selection-aware
null; on pure noise the null test rejects at about its nominal rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pva_dagster.study import outputs
from pva_dagster.study.domain import SAE_SPLIT, VALIDATION_SPLIT
from pva_dagster.study.evaluation.replicate_report import replicate_section
from pva_dagster.study.evaluation.replicates import (
    Discovery,
    ReplicateDesign,
    null_medians,
    replicate_summary,
    replicate_table,
    resplit,
    selection_frequency,
)

N_TASKS, D_SAE, LAYERS = 100, 48, (3, 7)


def _study(seed: int, planted: float) -> tuple[pd.DataFrame, Discovery]:
    """Tasks with random labels and sparse latents; latent 5 of layer 7 fires more on correct tasks by
    ``planted`` (0: pure noise)."""
    rng = np.random.default_rng(seed)
    correct = rng.random(N_TASKS) < 0.45
    tasks = pd.DataFrame({
        "task_id": np.arange(1, N_TASKS + 1), "correct": correct,
        "complexity": rng.integers(1, 6, N_TASKS), "prompt_tokens": rng.integers(40, 120, N_TASKS),
    })
    latents = {}
    for layer in LAYERS:
        values = rng.exponential(1.0, (N_TASKS, D_SAE)) * (rng.random((N_TASKS, D_SAE)) < 0.4)
        latents[layer] = values
    latents[7][:, 5] = np.where(rng.random(N_TASKS) < 0.15 + planted * correct, 1.0 + rng.random(N_TASKS), 0.0)
    general = {layer: np.zeros(D_SAE) for layer in LAYERS}
    return tasks, Discovery(latents, general, dict.fromkeys(LAYERS, 0.02))


def test_resplits_are_stratified_draws_that_differ_and_repeat():
    tasks, _ = _study(0, 0.0)
    first, again, other = resplit(tasks, 1), resplit(tasks, 1), resplit(tasks, 2)
    assert (first == again).all() and not (first == other).all()
    assert (first == SAE_SPLIT).sum() == pytest.approx(0.5 * N_TASKS, abs=3)
    assert (first == VALIDATION_SPLIT).sum() == pytest.approx(0.4 * N_TASKS, abs=3)


def test_a_planted_latent_is_selected_in_nine_of_ten_resplits_and_beats_the_null():
    tasks, discovery = _study(1, 0.7)
    design = ReplicateDesign(seed=0, resplits=20, null_draws=19, top_n=20, keep=5)
    replicates = replicate_table(tasks, discovery, design)
    correct = replicates[replicates.direction == "correct"]
    assert ((correct.layer == 7) & (correct.latent == 5)).mean() >= 0.9
    summary = replicate_summary(replicates, null_medians(tasks, discovery, design), design).set_index("direction")
    assert summary.loc["correct", "most_selected"] == "L7/5" and summary.loc["correct", "most_selected_share"] >= 0.9
    assert summary.loc["correct", "p_selection_aware"] == pytest.approx(1 / 20)  # above every null draw
    assert summary.loc["correct", "median_auroc"] > summary.loc["correct", "null_median_p95"]
    frequency = selection_frequency(replicates)
    top = frequency[frequency.direction == "correct"].iloc[0]
    assert top.latent == "L7/5" and top.rank1_share >= 0.9


def test_on_pure_noise_the_selection_aware_test_rejects_at_about_its_nominal_rate():
    # 20 simulated studies without signal, 19 null draws each: a valid test at level 0.05 rejects about 1 of
    # them; more than 4 happens with probability below 0.02 under validity.
    rejections = 0
    for study in range(20):
        tasks, discovery = _study(100 + study, 0.0)
        design = ReplicateDesign(seed=study, resplits=3, null_draws=19, top_n=10, keep=3)
        summary = replicate_summary(
            replicate_table(tasks, discovery, design), null_medians(tasks, discovery, design), design
        )
        rejections += int((summary[summary.direction == "correct"].p_selection_aware <= 0.05).sum())
    assert rejections <= 4


def test_the_report_names_a_latent_with_its_selection_frequency_and_plots_the_distribution():
    tasks, discovery = _study(1, 0.7)
    design = ReplicateDesign(seed=0, resplits=6, null_draws=9, top_n=20, keep=5)
    replicates = replicate_table(tasks, discovery, design)
    readouts = {
        outputs.REPLICATES: replicates, outputs.SELECTION_FREQUENCY: selection_frequency(replicates),
        outputs.REPLICATE_SUMMARY: replicate_summary(replicates, null_medians(tasks, discovery, design), design),
    }
    page = "\n".join(replicate_section(readouts))
    assert "6 re-drawn splits" in page and "10 draws" not in page and "9 draws" in page
    assert "L7/5" in page and "data:image/png;base64," in page
