"""Phase 3 classification: thresholds come from the non-validation problems only, across stratified folds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pva_dagster.study.evaluation.classification import selected_latents, validate_latents


def _samples(rng: np.random.Generator, task_ids: range, shift: float, split: str = "hyperparams") -> pd.DataFrame:
    passed = rng.random(len(task_ids)) < 0.5
    return pd.DataFrame({
        "task_id": list(task_ids), "sample": 0, "temperature": 0.0, "passed": passed, "split": split,
        # latent 7 of layer 3 fires more on correct code; shift moves the whole split
        "L3_7": np.where(passed, 2.0, 0.5) + rng.normal(0, 0.4, len(task_ids)) + shift,
    })


def test_threshold_comes_from_non_validation_only_and_validation_changes_only_metrics():
    rng = np.random.default_rng(0)
    hyper, validation = _samples(rng, range(1, 41), 0.0), _samples(rng, range(41, 121), 0.0)
    difficulty = pd.DataFrame({"task_id": range(1, 121), "cyclomatic_complexity": rng.integers(1, 6, 120)})
    selected = pd.DataFrame({"direction": ["correct"], "rank": [1], "layer": [3], "latent": [7]})
    overall, grouped = validate_latents(selected, hyper, validation, difficulty, seed=0)
    perturbed = validation.assign(L3_7=validation.L3_7 + 5.0)  # every validation activation moves up
    overall_p, _ = validate_latents(selected, hyper, perturbed, difficulty, seed=0)
    assert overall.threshold[0] == overall_p.threshold[0]
    assert overall.auroc[0] == overall_p.auroc[0]  # a shift keeps the ranking
    assert overall_p.recall[0] == 1.0 and overall_p.precision[0] < overall.precision[0]
    assert overall.auroc[0] > 0.8
    assert set(grouped.group_kind) == {"temperature", "difficulty"}
    assert set(grouped[grouped.group_kind == "difficulty"].group) <= {"easy", "medium", "hard"}
    assert overall.threshold_folds[0] == 5  # 40 tasks: a label x difficulty stratum too small, said so
    assert overall.threshold_note[0].startswith("stratified by label only: the smallest label x difficulty")
    assert 0 <= overall.cv_f1[0] <= 1 and 0 <= overall.hyperparams_f1[0] <= 1


def test_selected_latents_takes_the_best_of_each_direction():
    top = pd.DataFrame({
        "direction": ["correct", "correct", "incorrect", "incorrect"], "rank": [2, 1, 1, 2],
        "layer": [3, 6, 9, 12], "latent": [1, 2, 3, 4],
    })
    chosen = selected_latents(top, per_direction=1)
    assert chosen[["direction", "layer", "latent"]].values.tolist() == [["correct", 6, 2], ["incorrect", 9, 3]]


def test_a_temperature_with_one_class_gets_no_scores_but_the_pooled_group_does(tmp_path):
    import torch

    from pva_dagster.study import storage
    from pva_dagster.study.analysis.latent_scores import POOLED, score_split
    from pva_dagster.study.analysis.sae import train_topk_sae

    rng = np.random.default_rng(1)
    sae, _ = train_topk_sae(torch.tensor(rng.normal(size=(64, 8)), dtype=torch.float32), layer=0, d_sae=16, k=4,
                            training_tokens=64, batch_size=16, lr=1e-3, seed=0)
    rows = []
    for i, (temperature, passed) in enumerate([(0.0, True), (0.0, False)] * 4 + [(1.2, False)] * 4):
        path = tmp_path / f"{i}.npz"
        storage.write_npz(path, residual=rng.normal(size=8).astype(np.float32))
        rows.append({"task_id": i, "sample": 0, "temperature": temperature, "passed": passed, "layer": 0,
                     "file": str(path)})
    messages: list[str] = []
    scores = score_split(pd.DataFrame(rows), [0], lambda layer: sae, messages.append)
    assert set(scores.group) == {"0.0", POOLED}
    assert any("temperature 1.2: only incorrect samples (4)" in m for m in messages)
    assert not any("temperature 0.0: only" in m for m in messages)


def test_validation_metrics_carry_intervals_a_permutation_p_and_threshold_flags():
    rng = np.random.default_rng(4)
    hyper, validation = _samples(rng, range(1, 9), 0.0), _samples(rng, range(9, 89), 0.0)
    difficulty = pd.DataFrame({"task_id": range(1, 89), "cyclomatic_complexity": 1})
    selected = pd.DataFrame({"direction": ["correct"], "rank": [1], "layer": [3], "latent": [7]})
    overall, _ = validate_latents(selected, hyper, validation, difficulty, seed=0)
    row = overall.iloc[0]
    assert row.auroc_ci_low < row.auroc < row.auroc_ci_high and row.f1_ci_low <= row.f1 <= row.f1_ci_high
    assert row.auroc_p_permutation < 0.001  # a latent built to separate
    assert row.threshold_samples == 8 and row.threshold_few_samples
    assert overall.equals(validate_latents(selected, hyper, validation, difficulty, seed=0)[0])
    # A latent that is 0 everywhere on the hyperparams split can only call everything positive (at >= 0, the
    # smallest activation seen): flagged, and on validation's activations (never negative) all positive too.
    non_negative = validation.assign(L3_7=validation.L3_7.clip(lower=0))
    flat = validate_latents(selected, hyper.assign(L3_7=0.0), non_negative, difficulty, seed=0)[0].iloc[0]
    assert flat.threshold == 0.0 and flat.threshold_one_class and flat.predicts_one_class and flat.recall == 1.0
