"""Replicates: a latent that carries the label is selected across re-drawn splits and beats the selection-aware
null; on pure noise the null test rejects at about its nominal rate; the replicates' dense probe finds the layer
that carries the label and loses a signal that is only prompt length once length is regressed out; twice the
median of dependent p-values is a valid test; the confirmatory family is declared over the replicates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from pva_dagster.study import outputs
from pva_dagster.study.domain import SAE_SPLIT, VALIDATION_SPLIT
from pva_dagster.study.evaluation.confirmatory import (
    confirmatory_family,
    declared_p_values,
    replicate_auroc_member,
    replicate_beyond_member,
)
from pva_dagster.study.evaluation.replicate_probes import regress_out, replicate_probes
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
from pva_dagster.study.statistics import median_merged_p

N_TASKS, D_SAE, LAYERS = 100, 48, (3, 7)
D_MODEL, PROBE_TASKS, PROBE_LAYERS = 12, 160, (2, 5, 8)


def _study(seed: int, planted: float) -> tuple[pd.DataFrame, dict[int, np.ndarray], Discovery]:
    """Tasks with random labels, noise residuals and sparse latents; latent 5 of layer 7 fires more on correct
    tasks by ``planted`` (0: pure noise)."""
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
    residuals = {layer: rng.normal(size=(N_TASKS, D_MODEL)) for layer in LAYERS}
    return tasks, residuals, Discovery(latents, general, dict.fromkeys(LAYERS, 0.02))


def test_resplits_are_stratified_draws_that_differ_and_repeat():
    tasks, *_ = _study(0, 0.0)
    first, again, other = resplit(tasks, 1), resplit(tasks, 1), resplit(tasks, 2)
    assert (first == again).all() and not (first == other).all()
    assert (first == SAE_SPLIT).sum() == pytest.approx(0.5 * N_TASKS, abs=3)
    assert (first == VALIDATION_SPLIT).sum() == pytest.approx(0.4 * N_TASKS, abs=3)


def test_a_planted_latent_is_selected_in_nine_of_ten_resplits_and_beats_the_null():
    tasks, residuals, discovery = _study(1, 0.7)
    design = ReplicateDesign(seed=0, resplits=20, null_draws=19, top_n=20, keep=5)
    replicates = replicate_table(tasks, residuals, discovery, design)
    correct = replicates[replicates.direction == "correct"]
    assert ((correct.layer == 7) & (correct.latent == 5)).mean() >= 0.9
    summary = replicate_summary(replicates, null_medians(tasks, discovery, design), design).set_index("direction")
    assert summary.loc["correct", "most_selected"] == "L7/5" and summary.loc["correct", "most_selected_share"] >= 0.9
    assert summary.loc["correct", "p_selection_aware"] == pytest.approx(1 / 20)  # above every null draw
    assert summary.loc["correct", "median_auroc"] > summary.loc["correct", "null_median_p95"]
    frequency = selection_frequency(replicates)
    top = frequency[frequency.direction == "correct"].iloc[0]
    assert top.latent == "L7/5" and top.rank1_share >= 0.9


def test_replicates_and_null_draws_over_two_processes_are_those_of_one():
    tasks, residuals, discovery = _study(3, 0.5)
    design = ReplicateDesign(seed=5, resplits=3, null_draws=3, top_n=20, keep=5)
    pd.testing.assert_frame_equal(
        replicate_table(tasks, residuals, discovery, design, workers=2),
        replicate_table(tasks, residuals, discovery, design, workers=1),
    )
    pd.testing.assert_frame_equal(
        null_medians(tasks, discovery, design, workers=2), null_medians(tasks, discovery, design, workers=1)
    )


def test_on_pure_noise_the_selection_aware_test_rejects_at_about_its_nominal_rate():
    # 20 simulated studies without signal, 19 null draws each: a valid test at level 0.05 rejects about 1 of
    # them; more than 4 happens with probability below 0.02 under validity.
    rejections = 0
    for study in range(20):
        tasks, residuals, discovery = _study(100 + study, 0.0)
        design = ReplicateDesign(seed=study, resplits=3, null_draws=19, top_n=10, keep=3)
        summary = replicate_summary(
            replicate_table(tasks, residuals, discovery, design), null_medians(tasks, discovery, design), design
        )
        rejections += int((summary[summary.direction == "correct"].p_selection_aware <= 0.05).sum())
    assert rejections <= 4


def test_the_report_names_a_latent_with_its_selection_frequency_and_plots_the_distribution():
    tasks, residuals, discovery = _study(1, 0.7)
    design = ReplicateDesign(seed=0, resplits=6, null_draws=9, top_n=20, keep=5)
    replicates = replicate_table(tasks, residuals, discovery, design)
    readouts = {
        outputs.REPLICATES: replicates, outputs.SELECTION_FREQUENCY: selection_frequency(replicates),
        outputs.REPLICATE_SUMMARY: replicate_summary(replicates, null_medians(tasks, discovery, design), design),
    }
    page = "\n".join(replicate_section(readouts))
    assert "6 re-drawn splits" in page and "10 draws" not in page and "9 draws" in page
    assert "L7/5" in page and "data:image/png;base64," in page


def test_the_summary_merges_the_replicates_tests_beyond_difficulty_and_sets_the_latent_against_the_probe():
    tasks, residuals, discovery = _study(1, 0.7)
    design = ReplicateDesign(seed=0, resplits=6, null_draws=4, top_n=20, keep=5)
    replicates = replicate_table(tasks, residuals, discovery, design)
    assert replicates.beyond_p.dropna().between(0, 1).all() and replicates.dense_probe_layer.isin(LAYERS).all()
    first = replicates.groupby("replicate").dense_probe_auroc
    assert (first.nunique() == 1).all(), "a probe has no direction: one value per replicate"
    summary = replicate_summary(replicates, null_medians(tasks, discovery, design), design).set_index("direction")
    correct = replicates[replicates.direction == "correct"]
    assert summary.loc["correct", "p_beyond_merged"] == pytest.approx(
        min(1.0, 2 * float(np.median(correct.beyond_p.fillna(1.0))))
    )
    beats = (correct.auroc > correct.dense_probe_auroc).mean()
    assert summary.loc["correct", "beats_dense_probe"] == pytest.approx(beats)
    assert summary.loc["correct", "dense_probe_median_auroc"] == pytest.approx(correct.dense_probe_auroc.median())


def _probe_study(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(40, 160, PROBE_TASKS)
    tasks = pd.DataFrame({"task_id": np.arange(1, PROBE_TASKS + 1), "complexity": rng.integers(1, 8, PROBE_TASKS),
                          "prompt_tokens": tokens})  # fmt: skip
    return tasks, rng.normal(size=(len(PROBE_LAYERS), PROBE_TASKS, D_MODEL))


def _probes_over_resplits(tasks: pd.DataFrame, residuals: dict[int, np.ndarray], resplits: int) -> pd.DataFrame:
    return pd.DataFrame([
        replicate_probes(residuals, tasks, resplit(tasks, r) == VALIDATION_SPLIT, seed=r) for r in range(resplits)
    ])


def test_nested_cross_validation_picks_the_layer_that_carries_the_label():
    tasks, noise = _probe_study(3)
    rng = np.random.default_rng(4)
    tasks["correct"] = rng.random(PROBE_TASKS) < 0.45
    residuals = dict(zip(PROBE_LAYERS, noise, strict=True))
    residuals[5][:, 3] += 2.0 * tasks.correct.to_numpy()  # one dimension of one layer carries the label
    probes = _probes_over_resplits(tasks, residuals, 8)
    assert (probes.dense_probe_layer == 5).mean() >= 0.75
    assert probes.dense_probe_auroc.median() > 0.8
    assert probes.dense_probe_C.isin([0.001, 0.01, 0.1]).all() and (probes.dense_probe_note == "").all()


def test_a_signal_that_is_only_prompt_length_vanishes_once_length_is_regressed_out():
    tasks, noise = _probe_study(5)
    rng = np.random.default_rng(6)
    length = tasks.prompt_tokens.to_numpy(float)
    tasks["correct"] = length + rng.normal(0, 15, PROBE_TASKS) < 100  # short prompts are mostly correct
    residuals = dict(zip(PROBE_LAYERS, noise, strict=True))
    residuals[5][:, 3] = 0.02 * length - 1.5  # a dimension exactly linear in length
    probes = _probes_over_resplits(tasks, residuals, 8)
    assert probes.dense_probe_auroc.median() > 0.8
    assert abs(probes.length_regressed_probe_auroc.median() - 0.5) < 0.1
    fitting = resplit(tasks, 0) != VALIDATION_SPLIT
    regressed = regress_out(residuals[5], length, fitting)
    assert (regressed[:, 3] == 0).all() and abs(np.corrcoef(regressed[fitting, 0], length[fitting])[0, 1]) < 1e-9


def test_twice_the_median_of_dependent_null_p_values_rejects_at_most_its_level():
    # 200 simulated sets of 20 null p-values from correlated normals (a shared component of weight rho, as
    # overlapping splits share tasks); a valid test at 0.05 rejects at most 5 % up to binomial noise, while
    # taking the smallest p of each set, which ignores the multiplicity, rejects far more often.
    rng = np.random.default_rng(7)
    simulations, level = 200, 0.05
    merged, smallest = [], []
    for rho in np.resize([0.0, 0.3, 0.6, 0.9], simulations):
        z = np.sqrt(rho) * rng.normal() + np.sqrt(1 - rho) * rng.normal(size=20)
        p = norm.sf(z)
        merged.append(median_merged_p(p) <= level)
        smallest.append(p.min() <= level)
    margin = 3 * np.sqrt(level * (1 - level) / simulations)
    assert np.mean(merged) <= level + margin
    assert np.mean(smallest) > level + margin
    assert median_merged_p([0.4, 0.6, 0.9]) == 1.0 and median_merged_p([0.01, 0.02, 0.5]) == pytest.approx(0.04)
    with pytest.raises(ValueError, match="p-values in"):
        median_merged_p([0.1, float("nan")])


def test_the_family_declares_the_replicate_members_and_steering_joins_them():
    tasks, residuals, discovery = _study(1, 0.7)
    design = ReplicateDesign(seed=0, resplits=6, null_draws=9, top_n=20, keep=5)
    replicates = replicate_table(tasks, residuals, discovery, design)
    summary = replicate_summary(replicates, null_medians(tasks, discovery, design), design)
    named = declared_p_values(summary, ["correct", "incorrect"], extra={"steering correction": 0.3})
    assert list(named) == [replicate_auroc_member("correct"), replicate_beyond_member("correct"),
                           replicate_auroc_member("incorrect"), replicate_beyond_member("incorrect"),
                           "steering correction"]  # fmt: skip
    row = summary.set_index("direction").loc["correct"]
    assert named[replicate_auroc_member("correct")] == row.p_selection_aware
    assert named[replicate_beyond_member("correct")] == row.p_beyond_merged
    family = confirmatory_family(named)
    assert len(family) == 5 and (family.p_holm >= family.p).all()
    with pytest.raises(ValueError, match="repeat"):
        declared_p_values(summary, ["correct"], extra={replicate_auroc_member("correct"): 0.1})
