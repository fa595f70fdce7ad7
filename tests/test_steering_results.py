"""Steering results from per-problem outcomes: which problems count, paired tests, Holm, the coefficient rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pva_dagster.study.domain import NON_VALIDATION, VALIDATION_SPLIT
from pva_dagster.study.evaluation.report import steering_members
from pva_dagster.study.problems.splits import split_problems
from pva_dagster.study.steering.coefficient_folds import fold_choices, with_fold_agreement
from pva_dagster.study.steering.results import (
    COEFFICIENT_RULE,
    PRESERVATION_MARGIN,
    choose_coefficients,
    control_tests,
    experiment_tests,
    unit_summary,
)
from pva_dagster.study.steering.split_plan import steered_task_ids, sweep_folds
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


def _tests(outcomes: pd.DataFrame, **kwargs) -> pd.DataFrame:
    return experiment_tests(outcomes, control_tests(outcomes), **kwargs)


def _flips(n: int, k: int, success: str, failure: str) -> list[str]:
    return [success] * k + [failure] * (n - k)


def _outcomes(split="validation", coefficient=1.0, corrected=10, control_corrected=(0,), n=40, broken=2,
              control_broken=(0,), random_corrected=(), control_corrupted=None):
    """Target and controls on n incorrect and n correct problems; the incorrect-preferring latent corrupts one.

    ``control_*`` / ``random_corrected``: one entry per control latent / random direction; the incorrect-preferring
    latent's controls corrupt ``control_corrupted`` (default: as many as the correct-preferring one's break)."""
    control_corrupted = control_broken if control_corrupted is None else control_corrupted
    incorrect, correct = ["incorrect"] * n, ["correct"] * n
    frames = [
        _rows(split, coefficient, "correct", "target", 5, "incorrect", incorrect,
              _flips(n, corrected, "correct", "incorrect")),
        _rows(split, coefficient, "correct", "target", 5, "correct", correct,
              _flips(n, n - broken, "correct", "incorrect")),
        _rows(split, coefficient, "incorrect", "target", 7, "correct", correct,
              _flips(n, n - 1, "correct", "incorrect")),
    ]
    for i, (fixed, broke, corrupted) in enumerate(
        zip(control_corrected, control_broken, control_corrupted, strict=True)
    ):
        frames += [
            _rows(split, coefficient, "correct", "control", 9 + i, "incorrect", incorrect,
                  _flips(n, fixed, "correct", "incorrect")),
            _rows(split, coefficient, "correct", "control", 9 + i, "correct", correct,
                  _flips(n, n - broke, "correct", "incorrect")),
            _rows(split, coefficient, "incorrect", "control", 9 + i, "correct", correct,
                  _flips(n, n - corrupted, "correct", "incorrect")),
        ]
    frames += [
        _rows(split, coefficient, "correct", "random", i, "incorrect", incorrect, _flips(n, k, "correct", "incorrect"))
        for i, k in enumerate(random_corrected)
    ]
    return pd.concat(frames, ignore_index=True)


def test_each_experiment_reads_its_own_problems_and_success():
    tests = _tests(_outcomes()).set_index("experiment")
    assert set(tests.index) == set(EXPERIMENTS)
    assert (tests.loc["correction", "successes"], tests.loc["correction", "n"]) == (10, 40)
    assert tests.loc["preservation", "rate"] == pytest.approx(38 / 40)
    assert tests.loc["corruption", "successes"] == 1 and tests.loc["corruption", "latent"] == 7
    assert tests.loc["correction", "control_rate"] == 0.0
    assert tests.loc["correction", "ci_low"] < 0.25 < tests.loc["correction", "ci_high"]
    assert tests.loc["correction", "p_paired"] == pytest.approx(0.5**10)
    assert tests.loc["correction", "test"].startswith("exact McNemar")
    superiority = tests[tests.question == "superiority"]
    assert set(superiority.index) == {"correction", "corruption"} and superiority.p_paired.between(0, 1).all()


def test_a_planted_effect_is_detected_and_a_small_one_is_not():
    planted = _tests(_outcomes(corrected=10, n=40)).set_index("experiment").loc["correction"]
    assert planted.p_paired < 0.01 and planted.contrast == 10
    # The minimum detectable effect says what this many problems could see: 10 of 40 is above it.
    assert 0 < planted.minimum_detectable_effect < 10 / 40
    tiny = _tests(_outcomes(corrected=1, n=300)).set_index("experiment").loc["correction"]
    assert tiny.p_paired == pytest.approx(0.5) and tiny.minimum_detectable_effect < planted.minimum_detectable_effect


def test_every_control_is_paired_on_its_own_and_the_claim_must_beat_each():
    outcomes = _outcomes(corrected=10, control_corrected=(0, 10), control_broken=(0, 0))
    tests = _tests(outcomes).set_index("experiment")
    per_control = control_tests(outcomes)
    correction = per_control[per_control.experiment == "correction"].set_index("control_latent")
    # Never pooled: each control keeps its own counts and interval over the same 40 problems.
    assert correction.control_successes.to_dict() == {9: 0, 10: 10}
    assert (correction.n == 40).all() and correction.loc[9, "control_ci_high"] < correction.loc[10, "control_ci_low"]
    assert correction.loc[9, "difference_ci_low"] > 0 and correction.loc[10, "difference_ci_low"] < 0
    # The second control corrects the same problems as the target: no evidence against it, so none overall.
    assert tests.loc["correction", "p_paired"] == 1.0 and tests.loc["correction", "discordant"] == "10:0, 0:0"
    assert tests.loc["correction", "controls"] == 2 and tests.loc["correction", "contrast"] == 5.0


def test_preservation_is_non_inferiority_against_a_margin():
    same = _tests(_outcomes(n=300, broken=3, control_broken=(3,))).set_index("experiment")
    assert same.loc["preservation", "question"] == "non-inferiority" and np.isnan(same.loc["preservation", "p_paired"])
    assert same.loc["preservation", "non_inferior"] and same.loc["preservation", "breakage_ci_high"] < 0.1
    worse = _tests(_outcomes(n=300, broken=60, control_broken=(3,))).set_index("experiment")
    assert not worse.loc["preservation", "non_inferior"] and worse.loc["preservation", "breakage_difference"] > 0.1
    # Few problems cannot show non-inferiority at a 10 % margin even when nothing broke.
    few = _tests(_outcomes(n=8, corrected=2, broken=0, control_broken=(0,))).set_index("experiment")
    assert not few.loc["preservation", "non_inferior"]
    assert _tests(_outcomes(n=8, corrected=2, broken=0, control_broken=(0,)), margin=0.5).set_index(
        "experiment").loc["preservation", "non_inferior"]


def test_random_directions_give_an_exploratory_rank_p():
    ranked = _tests(_outcomes(corrected=10, random_corrected=[0, 1, 2] * 6 + [3])).set_index("experiment")
    assert ranked.loc["correction", "random_directions"] == 19 and ranked.loc["correction", "p_rank"] == 0.05
    tied = _tests(_outcomes(corrected=3, random_corrected=[3] * 19)).set_index("experiment")
    assert tied.loc["correction", "p_rank"] == 1.0
    assert tied.loc["corruption", "random_directions"] == 0 and np.isnan(tied.loc["corruption", "p_rank"])


def test_a_problem_whose_unsteered_rerun_changed_label_is_not_counted():
    outcomes = _outcomes()
    outcomes.loc[(outcomes.problems == "incorrect") & (outcomes.task_id == 0), "before"] = "correct"
    tests = _tests(outcomes).set_index("experiment")
    assert tests.loc["correction", "n"] == 39 and tests.loc["correction", "successes"] == 9


def test_each_split_and_coefficient_is_tested_on_its_own():
    sweep = pd.concat([_outcomes("non-validation", c, corrected=k) for c, k in [(0.5, 3), (1.0, 8)]])
    tests = _tests(pd.concat([sweep, _outcomes()], ignore_index=True))
    assert len(tests[tests.split == "non-validation"]) == 6 and len(tests[tests.split == "validation"]) == 3
    alone = _tests(_outcomes()).drop(columns="split")
    validation = tests[tests.split == "validation"].drop(columns="split").reset_index(drop=True)
    pd.testing.assert_frame_equal(validation, alone)


def _sweep(by_coefficient: dict[float, tuple[int, ...]], n: int = 40) -> pd.DataFrame:
    """A coefficient sweep: per coefficient (target corrected, control corrected, control broken[, control
    corrupted]) of n each, one control."""
    return _tests(pd.concat([
        _outcomes("non-validation", c, corrected=v[0], control_corrected=(v[1],), control_broken=(v[2],), n=n,
                  control_corrupted=(v[3],) if len(v) > 3 else None)
        for c, v in by_coefficient.items()
    ], ignore_index=True))


def test_the_rule_chooses_by_contrast_under_the_control_ceiling():
    chosen = choose_coefficients(
        _sweep({0.05: (2, 0, 0), 0.2: (8, 2, 4), 0.5: (30, 30, 40)}), ["correct", "incorrect"], [0.05, 0.2, 0.5]
    ).set_index("direction")
    # 0.5 corrects most, but the controls break every correct problem there (and correct as many): never chosen.
    assert chosen.coefficient["correct"] == 0.2 and chosen.contrast["correct"] == 6
    assert chosen.met_control_ceiling["correct"] and chosen.rule.iloc[0] == COEFFICIENT_RULE
    # The incorrect-preferring latent corrupts the same problem at every coefficient; only at 0.05 does the control
    # break nothing, so only there does the target corrupt more than the control.
    assert chosen.coefficient["incorrect"] == 0.05 and chosen.contrast["incorrect"] == 1
    tied = choose_coefficients(_sweep({0.05: (2, 0, 0), 0.2: (2, 0, 0)}), ["correct"], [0.05, 0.2])
    assert tied.coefficient.item() == 0.2  # equal contrasts: the strongest push the controls tolerate


def test_each_direction_reads_its_own_controls_damage_and_the_ceiling_is_inclusive():
    # At 0.5 the correct-preferring latent's controls break 8 of 40 (20 %, allowed) while the incorrect-preferring
    # latent's controls corrupt 9 of 40 (22.5 %, not allowed): each direction's choice reads its own.
    chosen = choose_coefficients(
        _sweep({0.1: (1, 0, 0, 0), 0.5: (6, 0, 8, 9)}), ["correct", "incorrect"], [0.1, 0.5]
    ).set_index("direction")
    assert chosen.coefficient["correct"] == 0.5 and chosen.control_breakage["correct"] == pytest.approx(0.2)
    assert chosen.coefficient["incorrect"] == 0.1


def test_the_ceiling_holds_for_every_control_not_their_mean():
    outcomes = pd.concat([
        _outcomes("non-validation", c, corrected=k, control_corrected=(0, 0), control_broken=broken)
        for c, k, broken in [(0.1, 1, (0, 0)), (0.5, 9, (14, 2))]  # at 0.5: 35 % and 5 %, a mean of 20 %
    ], ignore_index=True)
    chosen = choose_coefficients(_tests(outcomes), ["correct"], [0.1, 0.5])
    assert chosen.coefficient.item() == 0.1 and chosen.control_breakage.item() == 0.0


def test_where_controls_break_everything_the_smallest_is_flagged():
    chosen = choose_coefficients(_sweep({0.1: (5, 0, 20), 0.5: (9, 0, 40)}), ["correct"], [0.1, 0.5])
    assert chosen.coefficient.item() == 0.1 and not chosen.met_control_ceiling.item()


def test_a_negative_coefficient_is_never_chosen_nor_confirmatory():
    sweep = _sweep({-0.5: (30, 0, 0), 0.1: (1, 0, 0)})
    chosen = choose_coefficients(sweep, ["correct"], [-0.5, 0.1])
    assert chosen.coefficient.item() == 0.1
    with pytest.raises(ValueError, match="no positive coefficient"):
        choose_coefficients(sweep, ["correct"], [-0.5])
    members = steering_members(_tests(_outcomes(coefficient=-0.5)))
    assert members == {}
    assert len(steering_members(_tests(_outcomes(coefficient=0.5)))) == 2


def test_a_direction_without_eligible_problems_is_flagged():
    sweep = _sweep({0.1: (1, 0, 0), 0.5: (3, 0, 0)})
    chosen = choose_coefficients(sweep[sweep.experiment != "corruption"], ["correct", "incorrect"], [0.1, 0.5])
    chosen = chosen.set_index("direction")
    assert not chosen.has_data["incorrect"] and chosen.has_data["correct"]
    assert choose_coefficients(sweep.iloc[:0], ["incorrect"], [0.5]).coefficient.tolist() == [0.5]


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

    on_wrong = baseline_unit("non-validation", "incorrect"), records([False, False])
    on_right = baseline_unit("non-validation", "correct"), records([True])
    target = SteeringUnit("non-validation", 0.5, 2.0, "correct", "target", 3, 7, "incorrect"), records([True, False])
    control = SteeringUnit("non-validation", 0.5, 2.0, "correct", "control", 3, 9, "incorrect"), records([False, False])
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


def _folds(n: int = 40, k: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"task_id": range(n), "fold": [t % k for t in range(n)]})


def _fold_sweep(by_coefficient: dict[float, int]) -> pd.DataFrame:
    """Per coefficient, the target corrects its first k of 40 incorrect problems; one control corrects none."""
    return pd.concat([_outcomes(NON_VALIDATION, c, corrected=k) for c, k in by_coefficient.items()], ignore_index=True)


def test_a_clear_choice_is_made_again_without_every_fold():
    outcomes = _fold_sweep({0.1: 2, 0.2: 20})
    per_fold = fold_choices(outcomes, _folds(), ["correct"], [0.1, 0.2], PRESERVATION_MARGIN)
    assert list(per_fold.fold) == [0, 1, 2, 3, 4] and set(per_fold.coefficient) == {0.2}
    chosen = with_fold_agreement(choose_coefficients(_tests(outcomes), ["correct"], [0.1, 0.2]), per_fold)
    assert chosen.coefficient.item() == 0.2 and chosen.fold_agreement.item() == 1.0


def test_a_choice_one_problem_decides_shows_in_the_folds():
    # 0.1 corrects problems 0-3, 0.2 problems 0-2: over all problems 0.1 wins by one; without the fold holding
    # problem 3 the two tie, and ties go to the larger coefficient.
    outcomes = _fold_sweep({0.1: 4, 0.2: 3})
    per_fold = fold_choices(outcomes, _folds(), ["correct"], [0.1, 0.2], PRESERVATION_MARGIN)
    chosen = with_fold_agreement(choose_coefficients(_tests(outcomes), ["correct"], [0.1, 0.2]), per_fold)
    assert chosen.coefficient.item() == 0.1
    assert per_fold.set_index("fold").coefficient[3] == 0.2 and chosen.fold_agreement.item() == pytest.approx(0.8)
    assert chosen.fold_choices.item() == "0.1, 0.1, 0.1, 0.2, 0.1"


def test_without_folds_there_is_no_agreement_to_report():
    outcomes = _fold_sweep({0.1: 4})
    per_fold = fold_choices(outcomes, pd.DataFrame(), ["correct"], [0.1], PRESERVATION_MARGIN)
    chosen = with_fold_agreement(choose_coefficients(_tests(outcomes), ["correct"], [0.1]), per_fold)
    assert per_fold.empty and np.isnan(chosen.fold_agreement.item())


def test_a_sweep_problem_without_a_fold_is_refused():
    with pytest.raises(ValueError, match="without a fold"):
        fold_choices(_fold_sweep({0.1: 4}), _folds(n=20), ["correct"], [0.1], PRESERVATION_MARGIN)


def test_the_sweep_runs_on_every_non_validation_problem_in_stratified_folds():
    rng = np.random.default_rng(0)
    splits = split_problems(pd.DataFrame({"task_id": range(1, 201), "cyclomatic_complexity": rng.integers(1, 9, 200)}))
    swept = steered_task_ids(splits, NON_VALIDATION)
    assert set(swept) == set(splits.task_id[splits.split != VALIDATION_SPLIT])
    assert set(steered_task_ids(splits, VALIDATION_SPLIT)) == set(splits.task_id[splits.split == VALIDATION_SPLIT])
    with pytest.raises(ValueError, match="not 'hyperparams'"):
        steered_task_ids(splits, "hyperparams")
    labels = {"correct": pd.DataFrame({"task_id": swept[::3]}), "incorrect": pd.DataFrame({"task_id": [
        t for t in swept if t not in set(swept[::3])
    ]})}
    folds, note = sweep_folds(labels, splits, seed=1)
    assert sorted(folds.task_id) == sorted(swept) and (folds.fold >= 0).all()
    correct = folds.task_id.isin(labels["correct"].task_id)
    per_fold = pd.crosstab(folds.fold, correct)
    assert len(per_fold) >= 3 and (per_fold > 0).all().all(), (note, per_fold)
