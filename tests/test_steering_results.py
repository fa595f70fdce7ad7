"""Steering results from per-problem outcomes: which problems count, paired tests, Holm, the coefficient rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pva_dagster.study.steering.results import (
    COEFFICIENT_RULE,
    choose_coefficients,
    experiment_tests,
    unit_summary,
)
from pva_dagster.study.steering.sweep import (
    EXPERIMENTS,
    SteeringUnit,
    baseline_unit,
    combine_units,
    noise_floor,
    unit_outcomes,
)


def _rows(split, coefficient, direction, kind, latent, problems, before, after):
    return pd.DataFrame({
        "split": split, "coefficient": coefficient, "scale": coefficient * 10, "direction": direction, "kind": kind,
        "layer": 6, "latent": latent, "problems": problems, "task_id": range(len(before)),
        "before": before, "after": after, "similarity": 0.9, "identical": False,
    })


def _outcomes(split="validation", coefficient=1.0, corrected=10, control_corrected=0, n=40):
    before = ["incorrect"] * n
    target_after = ["correct"] * corrected + ["incorrect"] * (n - corrected)
    control_after = ["correct"] * control_corrected + ["incorrect"] * (n - control_corrected)
    correct = ["correct"] * n
    return pd.concat([
        _rows(split, coefficient, "correct", "target", 5, "incorrect", before, target_after),
        _rows(split, coefficient, "correct", "control", 9, "incorrect", before, control_after),
        _rows(split, coefficient, "correct", "target", 5, "correct", correct, correct[:-2] + ["incorrect"] * 2),
        _rows(split, coefficient, "correct", "control", 9, "correct", correct, correct),
        _rows(split, coefficient, "incorrect", "target", 7, "correct", correct, correct[:-1] + ["incorrect"]),
        _rows(split, coefficient, "incorrect", "control", 9, "correct", correct, correct),
    ], ignore_index=True)


def test_each_experiment_reads_its_own_problems_and_success():
    tests = experiment_tests(_outcomes()).set_index("experiment")
    assert set(tests.index) == set(EXPERIMENTS)
    assert (tests.loc["correction", "successes"], tests.loc["correction", "n"]) == (10, 40)
    assert tests.loc["preservation", "rate"] == pytest.approx(38 / 40)
    assert tests.loc["corruption", "successes"] == 1 and tests.loc["corruption", "latent"] == 7
    assert tests.loc["correction", "control_rate"] == 0.0
    assert tests.loc["correction", "ci_low"] < 0.25 < tests.loc["correction", "ci_high"]
    assert tests.loc["correction", "p_paired"] == pytest.approx(0.5**10)
    assert (tests.p_holm >= tests.p_paired).all()
    # Preservation: the target broke 2 problems the control kept, so it is not "better" than the control.
    assert tests.loc["preservation", "p_paired"] == 1.0
    assert tests.loc["correction", "paired_test"].startswith("exact McNemar")


def test_one_corrected_problem_against_none_is_not_significant():
    tests = experiment_tests(_outcomes(corrected=1, control_corrected=0, n=300)).set_index("experiment")
    assert tests.loc["correction", "p_paired"] == pytest.approx(0.5)
    assert tests.loc["correction", "p_fisher"] == pytest.approx(0.5)


def test_a_problem_whose_unsteered_rerun_changed_label_is_not_counted():
    outcomes = _outcomes()
    outcomes.loc[(outcomes.problems == "incorrect") & (outcomes.task_id == 0), "before"] = "correct"
    tests = experiment_tests(outcomes).set_index("experiment")
    assert tests.loc["correction", "n"] == 39 and tests.loc["correction", "successes"] == 9


def test_holm_runs_over_each_split_separately():
    sweep = pd.concat([_outcomes("hyperparams", c, corrected=k) for c, k in [(0.5, 3), (1.0, 8)]])
    tests = experiment_tests(pd.concat([sweep, _outcomes()], ignore_index=True))
    assert len(tests[tests.split == "hyperparams"]) == 6 and len(tests[tests.split == "validation"]) == 3
    alone = experiment_tests(_outcomes())
    assert tests[tests.split == "validation"].p_holm.tolist() == alone.p_holm.tolist()


def _sweep(rates: dict[float, tuple[float, float, float]]) -> pd.DataFrame:
    rows = []
    for coefficient, values in rates.items():
        for experiment, rate in zip(["correction", "preservation", "corruption"], values, strict=True):
            direction = "incorrect" if experiment == "corruption" else "correct"
            rows.append({"split": "hyperparams", "experiment": experiment, "direction": direction,
                         "coefficient": coefficient, "rate": rate})
    return pd.DataFrame(rows)


def test_coefficient_rule_respects_the_preservation_floor_and_prefers_small_coefficients():
    swept = [0.5, 1.0, 2.0, -1.0]
    chosen = choose_coefficients(_sweep({
        0.5: (0.2, 1.0, 0.1), 1.0: (0.4, 0.9, 0.3), 2.0: (0.6, 0.5, 0.3), -1.0: (0.4, 1.0, 0.0),
    }), ["correct", "incorrect"], swept).set_index("direction")
    # 2.0 corrects most but breaks preservation; 1.0 and -1.0 tie on correction: the rule breaks ties to the
    # smaller |coefficient|, then the lower value.
    assert chosen.coefficient["correct"] == -1.0 and chosen.met_preservation_floor["correct"]
    assert chosen.coefficient["incorrect"] == 1.0  # 1.0 and 2.0 tie at 0.3: the smaller wins
    assert chosen.rule.iloc[0] == COEFFICIENT_RULE
    none_keep = choose_coefficients(
        _sweep({0.5: (0.2, 0.5, 0.1), 1.0: (0.4, 0.7, 0.3)}), ["correct", "incorrect"], [0.5, 1.0]
    ).set_index("direction")
    assert none_keep.coefficient["correct"] == 1.0 and not none_keep.met_preservation_floor["correct"]
    with pytest.raises(ValueError, match="no nonzero coefficient"):
        choose_coefficients(_sweep({0.0: (0.0, 1.0, 0.0)}), ["correct"], [0.0])
    # A direction with no latent (Phase 2 found none) gets no coefficient.
    assert choose_coefficients(_sweep({0.5: (0.2, 1.0, 0.1)}), ["correct"], [0.5]).direction.tolist() == ["correct"]
    # A direction with a latent but no eligible hyperparams problem (no corruption rows): the smallest
    # |coefficient|, flagged, so the validation run still steers it.
    no_corruption = _sweep({0.5: (0.2, 1.0, 0.1), -0.25: (0.0, 1.0, 0.0)})
    no_corruption = no_corruption[no_corruption.experiment != "corruption"]
    chosen = choose_coefficients(no_corruption, ["correct", "incorrect"], [0.5, -0.25]).set_index("direction")
    assert chosen.coefficient["incorrect"] == -0.25 and not chosen.has_data["incorrect"]
    assert chosen.has_data["correct"]
    assert choose_coefficients(no_corruption.iloc[:0], ["incorrect"], [0.5]).coefficient.tolist() == [0.5]


def test_outcomes_merge_on_task_and_noise_floor_counts_changed_labels():
    def records(passed):
        return pd.DataFrame({"task_id": [1, 2, 3], "passed": passed, "completion": ["a", "b", "c"],
                             "generated_code": ["x = 1", "y = 2", "z = 3"]})

    baseline, steered = records([False, False, True]), records([True, False, True])
    steered.loc[0, "completion"] = "changed"
    unit = SteeringUnit("validation", 1.0, 5.0, "correct", "target", 6, 11, "incorrect")
    outcomes = unit_outcomes(unit, steered, baseline)
    assert outcomes.after.tolist() == ["correct", "incorrect", "correct"]
    assert outcomes.identical.tolist() == [False, True, True] and (outcomes.similarity == 1.0).all()
    summary = unit_summary(outcomes)
    assert (summary.correct_before.item(), summary.correct_after.item()) == (1, 2)
    with pytest.raises(ValueError, match="2 of the baseline's 3"):
        unit_outcomes(unit, steered.iloc[:2], baseline)
    phase1 = records([False, True, True])
    noise = noise_floor(phase1, {baseline_unit("validation", "incorrect"): baseline})
    assert noise.label_changed.item() == 1 and noise.n.item() == 3
    assert np.isfinite(summary.mean_similarity).all()


def test_units_combine_in_any_order_against_their_groups_baseline():
    """Unit steps finish in any order (on a cluster, a steered unit may finish before its baseline)."""
    def records(passed):
        return pd.DataFrame({"task_id": range(1, len(passed) + 1), "passed": passed, "completion": "c",
                             "generated_code": "x = 1"})

    on_wrong = baseline_unit("hyperparams", "incorrect"), records([False, False])
    on_right = baseline_unit("hyperparams", "correct"), records([True])
    target = SteeringUnit("hyperparams", 0.5, 2.0, "correct", "target", 3, 7, "incorrect"), records([True, False])
    control = SteeringUnit("hyperparams", 0.5, 2.0, "correct", "control", 3, 9, "incorrect"), records([False, False])
    in_order, in_order_baselines = combine_units([on_wrong, on_right, target, control])
    shuffled, shuffled_baselines = combine_units([control, on_right, target, on_wrong])
    key = ["kind", "latent", "task_id"]
    pd.testing.assert_frame_equal(
        in_order.sort_values(key).reset_index(drop=True), shuffled.sort_values(key).reset_index(drop=True)
    )
    assert in_order_baselines.keys() == shuffled_baselines.keys() == {on_wrong[0], on_right[0]}
    assert in_order[in_order.kind == "target"].after.tolist() == ["correct", "incorrect"]
    with pytest.raises(ValueError, match="without the baseline of its incorrect problems"):
        combine_units([on_right, target])
    with pytest.raises(ValueError, match="no steering unit"):
        combine_units([on_wrong, on_right])
