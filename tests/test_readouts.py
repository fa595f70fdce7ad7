"""The readouts on planted synthetic data, through the real functions: baselines, probes, the best latent,
beyond difficulty, the confirmatory family, the per-layer plot and the general-text cut-off."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from pva_dagster.study.analysis.general_text_cutoff import cutoff_sensitivity, ranking_rule, relative_density_cutoff
from pva_dagster.study.analysis.separation import separation_scores
from pva_dagster.study.evaluation.beyond_difficulty import (
    beyond_difficulty_sentences,
    beyond_difficulty_table,
    likelihood_ratio_test,
)
from pva_dagster.study.evaluation.confirmatory import (
    PRIMARY_REPLICATE,
    confirmatory_family,
    declared_p_values,
    family_labels,
    primary_auroc_member,
    primary_beyond_member,
    primary_replicate_p_values,
    replicate_auroc_member,
    replicate_beyond_member,
)
from pva_dagster.study.evaluation.readout_metrics import majority_f1, readout_table
from pva_dagster.study.evaluation.readouts import readout_scores_and_curves
from pva_dagster.study.evaluation.validation import choose_threshold
from pva_dagster.study.plots import auroc_by_layer

LAYER, D_MODEL, D_SAE, PER_SPLIT = 6, 16, 12, 200
FAST = {"resamples": 200, "permutations": 199}


def _planted(seed: int, extra_signal: float) -> tuple[pd.DataFrame, dict, dict, np.ndarray]:
    """Tasks whose correctness is logistic in complexity plus ``extra_signal * z`` (z hidden, per task).

    Latent 0 is a noisy non-negative function of complexity only; latent 1 of z only; the rest are sparse noise.
    The residual carries z along a unit direction ``w`` (returned) in isotropic noise. Prompt text holds the word
    "alpha" mostly when the task is correct.
    """
    rng = np.random.default_rng(seed)
    n = 3 * PER_SPLIT
    complexity = rng.choice([1, 2, 4], size=n)
    z = rng.normal(size=n)
    correct = rng.random(n) < 1 / (1 + np.exp(-(2.0 - 1.0 * complexity + extra_signal * z)))
    words = np.where(rng.random(n) < np.where(correct, 0.8, 0.2), "alpha", "beta")
    tasks = pd.DataFrame({
        "task_id": np.arange(n), "split": np.repeat(["sae", "hyperparams", "validation"], PER_SPLIT),
        "correct": correct, "prompt_tokens": rng.integers(20, 200, size=n), "complexity": complexity,
        "prompt_text": [f"write a function {w} that returns gamma {i % 7}" for i, w in enumerate(words)],
    })
    latents = np.maximum(rng.normal(-1.0, 1.0, size=(n, D_SAE)), 0.0)
    latents[:, 0] = np.maximum(complexity + rng.normal(0, 0.5, size=n) - 1.0, 0.0)
    latents[:, 1] = np.maximum(z + rng.normal(0, 0.3, size=n), 0.0)
    w = rng.normal(size=D_MODEL)
    w /= np.linalg.norm(w)
    residual = rng.normal(size=(n, D_MODEL)) + 2.0 * z[:, None] * w[None, :]
    return tasks, {LAYER: residual}, {LAYER: latents}, w


@pytest.fixture(scope="module")
def difficulty_only():
    tasks, residuals, latents, _ = _planted(seed=1, extra_signal=0.0)
    chosen = {(LAYER, "incorrect"): 0, (LAYER, "correct"): 1}
    scores = readout_scores_and_curves(tasks, residuals, latents, seed=0, chosen_latents=chosen)[0]
    return tasks, scores, readout_table(scores, seed=0, **FAST), beyond_difficulty_table(scores, tasks, 0, 200)


@pytest.fixture(scope="module")
def extra_signal():
    tasks, residuals, latents, w = _planted(seed=2, extra_signal=2.0)
    scores = readout_scores_and_curves(tasks, residuals, latents, seed=0)[0]
    table = readout_table(scores, seed=0, **FAST)
    return tasks, residuals, w, scores, table, beyond_difficulty_table(scores, tasks, 0, 200)


def _row(table: pd.DataFrame, readout: str, direction: str) -> pd.Series:
    rows = table[(table.readout == readout) & (table.direction == direction)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_a_difficulty_only_latent_has_a_high_auroc_but_adds_nothing_beyond_difficulty(difficulty_only):
    _, _, table, beyond = difficulty_only
    assert _row(table, "best_latent", "incorrect").auroc > 0.7  # it does track incorrectness, via complexity
    assert _row(table, "complexity", "incorrect").auroc > 0.7
    row = _row(beyond, "best_latent", "incorrect")
    assert row.latent == 0
    assert row.p_lrt > 0.2
    assert row.stratified_auroc_ci_low < 0.5 < row.stratified_auroc_ci_high
    assert abs(row.stratified_auroc - 0.5) < 0.1
    sentences = beyond_difficulty_sentences(beyond[(beyond.readout == "best_latent")])
    assert len(sentences) == 2
    said = " ".join(sentences)
    assert ("incorrect: the best_latent at layer 6 (latent 0): nothing detectable beyond prompt length and "
            "complexity at this power") in said
    assert f"odds ratio per SD {row.odds_ratio_per_sd:.2f}, 95 % interval [{row.odds_ratio_ci_low:.2f}, " in said
    assert "adds nothing" not in said


def test_a_planted_extra_signal_is_found_beyond_difficulty(extra_signal):
    *_, table, beyond = extra_signal
    row = _row(beyond, "best_latent", "correct")
    assert row.latent == 1  # chosen by separation on the sae split
    assert row.p_lrt < 1e-6
    assert row.odds_ratio_ci_low > 1
    assert row.stratified_auroc_ci_low > 0.6
    for probe in ("dense_probe", "sparse_probe"):
        assert _row(beyond, probe, "correct").p_lrt < 1e-6
    assert "adds signal" in beyond_difficulty_sentences(beyond[beyond.readout == "dense_probe"].head(1))[0]


def test_the_dense_probe_recovers_the_planted_direction(extra_signal):
    tasks, residuals, w, _, table, _ = extra_signal
    validation = (tasks.split == "validation").to_numpy()
    oracle = roc_auc_score(tasks.correct[validation], residuals[LAYER][validation] @ w)
    dense = _row(table, "dense_probe", "correct").auroc
    assert dense > 0.75
    assert dense == pytest.approx(oracle, abs=0.04)
    assert _row(table, "dense_probe", "incorrect").auroc == pytest.approx(dense)  # negated score, flipped class
    assert _row(table, "prompt_length", "correct").auroc < 0.6  # unrelated by construction


def test_tfidf_baseline_reads_the_planted_word(extra_signal, difficulty_only):
    for table in (extra_signal[4], difficulty_only[2]):
        assert _row(table, "tfidf", "correct").auroc > 0.7


def test_thresholds_of_a_non_negative_activation_stay_on_its_observed_range():
    activation = np.array([0.0] * 16 + [0.5, 1.0, 2.0, 3.0])
    correct = np.array([True] * 14 + [False] * 2 + [True, False, True, False])
    threshold = choose_threshold(activation, correct, "correct")  # F1-optimal: everything positive
    assert threshold.value == 0.0 and threshold.operator == ">="  # at the minimum seen, never below zero
    assert threshold.predict(activation).all() and threshold.f1 == pytest.approx(f1_score(correct, np.ones(20, bool)))


def test_table_thresholds_lie_within_the_non_validation_scores(extra_signal):
    _, _, _, scores, table, _ = extra_signal
    fitting = scores[scores.split != "validation"].groupby(["readout", "direction"], dropna=False).score
    for row in table.itertuples():
        key = (row.readout, row.direction)
        assert fitting.min()[key] <= row.threshold <= fitting.max()[key]
        assert row.threshold_folds == 5


def test_majority_f1_is_what_predicting_the_majority_class_scores(extra_signal):
    mostly = np.array([True] * 7 + [False] * 3)
    assert majority_f1(mostly) == pytest.approx(2 * 0.7 / 1.7)
    assert majority_f1(mostly) == pytest.approx(f1_score(mostly, np.ones(10, bool)))
    assert majority_f1(~mostly) == 0.0
    tasks, *_, table, _ = extra_signal
    correct = tasks.correct[tasks.split == "validation"].to_numpy()
    row = _row(table, "dense_probe", "incorrect")
    assert row.majority_f1 == pytest.approx(majority_f1(~correct))
    assert row.prevalence == pytest.approx((~correct).mean())


def test_same_seed_same_table_and_the_seed_matters():
    tasks, residuals, latents, _ = _planted(seed=3, extra_signal=1.0)
    first = readout_table(readout_scores_and_curves(tasks, residuals, latents, seed=5)[0], seed=5, **FAST)
    second = readout_table(readout_scores_and_curves(tasks, residuals, latents, seed=5)[0], seed=5, **FAST)
    pd.testing.assert_frame_equal(first, second)
    other = readout_table(readout_scores_and_curves(tasks, residuals, latents, seed=5)[0], seed=6, **FAST)
    assert not np.allclose(first.auroc_ci_low, other.auroc_ci_low)
    pd.testing.assert_series_equal(first.auroc, other.auroc)


def test_holm_adjusts_exactly_the_declared_family(extra_signal):
    family = confirmatory_family({"a": 0.01, "b": 0.04, "c": 0.03})
    assert family.p_holm.tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert family.significant.tolist() == [True, False, False]
    bigger = confirmatory_family({"a": 0.01, "b": 0.04, "c": 0.03, "steering": 0.5})
    assert bigger.p_holm.iloc[0] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="steering"):
        confirmatory_family({"a": 0.01, "steering": float("nan")})
    *_, table, beyond = extra_signal
    primary = primary_replicate_p_values(table, beyond, {"correct": LAYER, "incorrect": LAYER})
    assert list(primary) == [primary_auroc_member("correct"), primary_beyond_member("correct"),
                             primary_auroc_member("incorrect"), primary_beyond_member("incorrect")]
    assert primary[primary_beyond_member("correct")] == _row(beyond, "best_latent", "correct").p_lrt
    labels = family_labels(table, {"correct": LAYER})
    assert (labels == PRIMARY_REPLICATE).sum() == 1
    assert table[labels == PRIMARY_REPLICATE].readout.item() == "best_latent"


def test_auroc_by_layer_draws_a_png(extra_signal):
    markdown = auroc_by_layer(extra_signal[4], "correct")
    encoded = markdown.split("base64,")[1].rstrip(")")
    assert base64.b64decode(encoded).startswith(b"\x89PNG")


def test_auroc_by_layer_draws_an_interval_bound_equal_to_the_auroc_up_to_rounding():
    # auroc - ci_low is -5.6e-17 here: a bootstrap without spread below, as a bfloat16 run on one CPU gave.
    table = pd.DataFrame({
        "readout": ["dense_probe", "dense_probe"], "layer": [6.0, 12.0], "direction": ["correct", "correct"],
        "auroc": [0.3, 0.7], "auroc_ci_low": [0.1 + 0.2, 0.6], "auroc_ci_high": [0.5, 0.8],
    })
    assert (table.auroc - table.auroc_ci_low).min() < 0
    encoded = auroc_by_layer(table, "correct").split("base64,")[1].rstrip(")")
    assert base64.b64decode(encoded).startswith(b"\x89PNG")


def test_general_text_cutoff_sensitivity():
    assert relative_density_cutoff(0.004, 5) == pytest.approx(0.02)
    correct = np.array([True] * 5 + [False] * 5)
    latents = np.zeros((10, 4))
    latents[:5, :3] = 1.0  # latents 0-2 fire on every correct sample only
    scores = separation_scores(latents, correct, layer=0)
    freq = {0: np.array([0.001, 0.008, 0.03, 0.0])}
    table = cutoff_sensitivity(scores, freq).set_index(["cutoff", "direction"])
    assert table.loc[(0.005, "correct"), "top"] == "L0/0"
    assert table.loc[(0.005, "correct"), "left"] == "L0/1"
    assert table.loc[(0.02, "correct"), "kept"] == 2
    assert table.loc[(0.05, "correct"), "entered"] == "L0/2"
    assert table.loc[(0.05, "correct"), "shared_with_reference"] == 2
    assert cutoff_sensitivity(scores, freq).attrs["reference"] == "absolute 2.0%"


def test_the_cutoff_table_compares_with_the_rule_the_ranking_used():
    correct = np.array([True] * 5 + [False] * 5)
    latents = np.zeros((10, 4))
    latents[:5, :3] = 1.0
    scores = separation_scores(latents, correct, layer=0)
    freq = {0: np.array([0.001, 0.008, 0.03, 0.0])}  # mean density 0.00975
    rule = ranking_rule(freq, None, 0.02, 4.0)
    assert rule[0] == "design: 4x mean density" and rule[1] == {0: pytest.approx(0.039)}
    assert ranking_rule(freq, 0.01, 0.02, 4.0) == ("run config: absolute 1.0%", {0: 0.01})
    table = cutoff_sensitivity(scores, freq, design=rule)
    assert table.attrs["reference"] == "design: 4x mean density"
    indexed = table.set_index(["rule", "direction"])
    assert indexed.loc[("absolute 2.0%", "correct"), "left"] == "L0/2"  # kept at 3.9 %, the ranking's rule
    assert indexed.loc[("design: 4x mean density", "correct"), "shared_with_reference"] == 3


def test_readout_sections_print_the_family_the_sentences_and_the_floors(extra_signal):
    from pva_dagster.study.evaluation.report import readout_sections

    *_, table, beyond = extra_signal
    layers = {"correct": LAYER, "incorrect": LAYER}
    summary = pd.DataFrame({"direction": ["correct", "incorrect"], "p_selection_aware": [0.02, 0.5],
                            "p_beyond_merged": [0.01, 1.0]})  # fmt: skip
    family = confirmatory_family(declared_p_values(summary, list(layers)))
    page = "\n".join(readout_sections(table, beyond, family, layers))
    assert replicate_auroc_member("correct") in page and replicate_beyond_member("incorrect") in page
    assert primary_beyond_member("correct") in page and "adds signal" in page
    assert page.count("data:image/png;base64,") == 2
    row = _row(table, "dense_probe", "correct")
    assert f"{row.f1:.3f} ({row.majority_f1:.3f})" in page
    assert "AUROC minus length_and_complexity [95% paired bootstrap]" in page
    difference = (row.auroc_minus_surface, row.auroc_minus_surface_ci_low, row.auroc_minus_surface_ci_high)
    assert "{:.3f} [{:.3f}, {:.3f}]".format(*difference) in page


def test_a_latent_that_never_fires_is_not_tested_and_does_not_stop_the_table():
    rng = np.random.default_rng(3)
    positive = rng.random(60) < 0.5
    length, complexity = rng.integers(20, 200, 60), rng.integers(1, 9, 60)
    result = likelihood_ratio_test(positive, length, complexity, np.zeros(60))
    assert (result["lr_stat"], result["p_lrt"]) == (0.0, 1.0) and np.isnan(result["odds_ratio_per_sd"])
    constant_complexity = likelihood_ratio_test(positive, length, np.ones(60), positive + rng.random(60))
    assert constant_complexity["p_lrt"] < 1e-6  # a constant covariate is left out, not an error


def test_discovery_latents_are_scored_on_validation_one_row_per_task():
    from pva_dagster.study.evaluation.readout_inputs import discovery_latents_on, why_not_computable

    rng = np.random.default_rng(5)
    tasks = pd.DataFrame({
        "task_id": range(30), "split": ["sae"] * 10 + ["hyperparams"] * 5 + ["validation"] * 15,
        "correct": rng.random(30) < 0.5, "passed_base": True, "passed_extended": rng.random(30) < 0.5,
    })
    tasks.loc[[0, 10, 15], "correct"] = [True, True, True]
    tasks.loc[[1, 11, 16], "correct"] = [False, False, False]
    latents = {4: rng.random((30, 8))}
    top = pd.DataFrame({"direction": ["correct"], "rank": [1], "layer": [4], "latent": [3], "score": [0.4]})
    table = discovery_latents_on(top, latents, tasks, "validation").iloc[0]
    validation = tasks[tasks.split == "validation"]
    assert (table.n_correct, table.n_incorrect) == (validation.correct.sum(), (~validation.correct).sum())
    assert table.discovery_score == 0.4 and table.split == "validation"
    reason = why_not_computable(tasks)  # passed_base is True everywhere: no split has both classes under it
    assert reason is not None and "passed_base" in reason
    both = tasks.assign(passed_base=tasks.correct, passed_extended=tasks.correct)
    assert why_not_computable(both) is None
