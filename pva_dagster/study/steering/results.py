"""Phase 3 steering results: rates with intervals, target vs each control on the same problems, the exploratory
rank test against random directions, and the choice of coefficient.

Input is the per-problem outcome table of :func:`~pva_dagster.study.steering.sweep.combine_units` (all units of a
split). A problem counts for an experiment when its unsteered rerun (same batches) has the label the experiment
applies to; the rate is the fraction of those problems whose steered label is the experiment's success. Controls
are never pooled as independent trials: each is paired with the target on the same problems, its counts and
interval kept in its own row (:func:`control_tests`), and a claim must hold against every one of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pva_dagster.study.domain import NON_VALIDATION
from pva_dagster.study.plots import line_sweep
from pva_dagster.study.statistics import (
    PAIRED_DIFFERENCE_INTERVAL,
    PAIRED_TEST,
    clopper_pearson,
    fisher_greater,
    minimum_detectable_rate,
    paired_difference_interval,
    paired_exact_test,
    rank_p_value,
)
from pva_dagster.study.steering.sweep import (
    CONTROL,
    EXPERIMENTS,
    RANDOM,
    SUPERIORITY,
    TARGET,
    superiority_experiment,
)

# The coefficient rule, applied to the sweep over the non-validation problems only (the validation split then runs
# the chosen coefficient once). Written out here because the report prints it.
CONTROL_DAMAGE_CEILING = 0.2
COEFFICIENT_RULE = (
    "the sweep over the non-validation problems (sae and hyperparams splits together), positive coefficients only "
    "(negative ones are exploratory): per direction, the coefficient with the largest paired contrast to the "
    "controls in its superiority experiment (correction for the correct-preferring latent, corruption for the "
    "incorrect-preferring one; contrast = problems where the target "
    "succeeded and a control did not minus the reverse, averaged over the controls), among the coefficients at which "
    f"every control breaks at most {CONTROL_DAMAGE_CEILING:.0%} of correct problems; ties (and a direction without "
    "eligible problems, flagged has_data False) go to the larger coefficient (the strongest push the controls "
    "tolerate); if none keeps the controls under the ceiling (or there were no correct problems to measure it on), "
    "the smallest, flagged. The rule fits nothing, so its cross-validated criterion (the contrast summed over "
    "held-out folds) is the contrast over every problem of the sweep; the folds (stratified by label and "
    "difficulty) show the choice's stability: the problems outside each fold choose again (fold_agreement)"
)
# Preservation's declared non-inferiority margin: the target may break at most this much more of the correct
# problems than a control does (upper 95 % bound of the paired difference).
PRESERVATION_MARGIN = 0.1
NON_INFERIORITY_TEST = (
    f"non-inferiority: upper bound of the {PAIRED_DIFFERENCE_INTERVAL} of breakage (target minus control) below the "
    "margin, against every control"
)


def _successes(part: pd.DataFrame, success: str) -> pd.Series:
    """Success per problem (indexed by task_id) of one unit's rows."""
    return (part.set_index("task_id").after == success).sort_index()


def _paired(group: pd.DataFrame, kind: str, success: str, target: pd.Series) -> dict[int, pd.Series]:
    """Per latent of ``kind``: its successes, on exactly the target's problems."""
    others = {int(latent): _successes(rows, success) for latent, rows in group[group.kind == kind].groupby("latent")}
    unpaired = [latent for latent, s in others.items() if not s.index.equals(target.index)]
    if unpaired:
        raise ValueError(f"{kind} latents {unpaired} ran on other problems than the target: cannot pair them")
    return others


def _control_row(target: pd.Series, control: pd.Series) -> dict[str, float | int]:
    """One control against the target: its rate and interval, discordant pairs, the paired test, the interval of
    the paired difference (target minus control) and Fisher's test (descriptive)."""
    k, n = int(control.sum()), len(control)
    low, high = clopper_pearson(k, n)
    difference_low, difference_high = paired_difference_interval(target.to_numpy(), control.to_numpy())
    return {
        "control_successes": k, "control_rate": k / n if n else np.nan, "control_ci_low": low, "control_ci_high": high,
        **paired_exact_test(target.to_numpy(), control.to_numpy()),
        "difference": float(target.mean() - control.mean()) if n else np.nan,
        "difference_ci_low": difference_low, "difference_ci_high": difference_high,
        "p_fisher": fisher_greater(int(target.sum()), n, k, n),
    }


def _eligible(outcomes: pd.DataFrame):
    """(experiment name, experiment, (split, coefficient, layer), rows) of every tested group of outcomes."""
    for name, experiment in EXPERIMENTS.items():
        rows = outcomes[
            (outcomes.direction == experiment.latent_direction) & (outcomes.problems == experiment.problems)
            & (outcomes.before == experiment.problems)
        ]
        for key, group in rows.groupby(["split", "coefficient", "layer"]):
            yield name, experiment, key, group


def control_tests(outcomes: pd.DataFrame) -> pd.DataFrame:
    """One row per (split, experiment, coefficient, control latent): that control paired with the target."""
    rows = []
    for name, experiment, (split, coefficient, layer), group in _eligible(outcomes):
        target = _successes(group[group.kind == TARGET], experiment.success)
        for latent, control in _paired(group, CONTROL, experiment.success, target).items():
            rows.append({
                "split": split, "experiment": name, "coefficient": coefficient, "layer": int(layer),
                "control_latent": latent, "n": len(target), "successes": int(target.sum()),
                **_control_row(target, control),
            })
    columns = ["split", "experiment", "coefficient", "control_latent"]
    return pd.DataFrame(rows).sort_values(columns).reset_index(drop=True) if rows else pd.DataFrame(rows)


def _random_columns(group: pd.DataFrame, success: str, target: pd.Series) -> dict[str, object]:
    random = _paired(group, RANDOM, success, target)
    if not random:  # not run: the sweep, preservation, or steering_random_directions 0
        return {"random_directions": 0, "random_rate": np.nan, "p_rank": np.nan}
    counts = [int(s.sum()) for s in random.values()]
    return {
        "random_directions": len(random), "random_rate": float(np.mean(counts)) / len(target),
        "p_rank": rank_p_value(float(target.sum()), counts),
    }


def _experiment_row(
    experiment_question: str, success: str, group: pd.DataFrame, per_control: list[dict], margin: float
) -> dict[str, object]:
    target = _successes(group[group.kind == TARGET], success)
    k, n = int(target.sum()), len(target)
    low, high = clopper_pearson(k, n)
    if not per_control:
        raise ValueError(f"the target at coefficient {group.coefficient.iloc[0]} ran without a control")
    control_rates = [float(c["control_rate"]) for c in per_control]
    control_rate = float(np.mean(control_rates))
    row: dict[str, object] = {
        "question": experiment_question, "n": n, "successes": k, "rate": k / n if n else np.nan,
        "ci_low": low, "ci_high": high, "controls": len(per_control),
        "control_latents": ",".join(str(c["control_latent"]) for c in per_control),
        "control_rate": control_rate,
        "discordant": ", ".join(f"{c['discordant_target']}:{c['discordant_control']}" for c in per_control),
        # The paired contrast the coefficient rule ranks by: target-only minus control-only successes, per control.
        "contrast": float(np.mean([c["discordant_target"] - c["discordant_control"] for c in per_control])),
        "difference_ci_low": min(c["difference_ci_low"] for c in per_control),
        "difference_ci_high": max(c["difference_ci_high"] for c in per_control),
        # The largest share of these correct problems any control breaks (its own damage): the rule's ceiling.
        "control_breakage": max(1 - r if success == "correct" else r for r in control_rates)
        if (group.problems == "correct").all() else np.nan,
        # The ceiling the coefficient was chosen under, checked again on these problems (on validation a control
        # that stayed under it in the sweep can break more).
        "control_within_ceiling": _within_ceiling(control_rates, success) if (group.problems == "correct").all()
        else None,
        "mean_similarity": float(group[group.kind == TARGET].similarity.mean()) if n else np.nan,
        **_random_columns(group, success, target),
    }
    if experiment_question == SUPERIORITY:
        # The target must beat every control: the largest p over the controls (an intersection-union test), so the
        # control with the highest rate decides the power.
        row["p_paired"] = max(float(c["p_paired"]) for c in per_control)
        row["minimum_detectable_effect"] = minimum_detectable_rate(n, max(control_rates)) - max(control_rates)
        row.update(margin=np.nan, breakage_difference=np.nan, breakage_ci_high=np.nan, non_inferior=None,
                   smallest_margin_shown=np.nan)
    else:
        # Breakage = 1 - success; target minus control breakage is minus the success difference.
        breakage_high = max(-c["difference_ci_low"] for c in per_control)
        row.update(
            p_paired=np.nan, minimum_detectable_effect=np.nan, margin=margin,
            breakage_difference=control_rate - (k / n if n else np.nan), breakage_ci_high=breakage_high,
            non_inferior=bool(breakage_high < margin),
            smallest_margin_shown=_smallest_margin(_paired(group, CONTROL, success, target)),
        )
    return row


def _within_ceiling(control_rates: list[float], success: str) -> bool:
    return max(1 - r if success == "correct" else r for r in control_rates) <= CONTROL_DAMAGE_CEILING + 1e-9


def _smallest_margin(controls: dict[int, pd.Series]) -> float:
    """Preservation's analogue of a detectable effect: the upper bound the breakage difference would have if the
    target broke exactly the problems the worst control broke, i.e. the smallest margin these problems could show
    non-inferiority at. ``controls``: each control's successes (:func:`_paired`)."""
    return max(-paired_difference_interval(c.to_numpy(), c.to_numpy())[0] for c in controls.values())


def experiment_tests(
    outcomes: pd.DataFrame, controls: pd.DataFrame, margin: float = PRESERVATION_MARGIN
) -> pd.DataFrame:
    """Per (split, experiment, coefficient): the target's rate (95 % Clopper-Pearson), the controls' mean rate and
    per-control discordant pairs (``controls``: :func:`control_tests` of the same outcomes), the paired contrast,
    and the experiment's question: for superiority the paired test against every control (largest p) and the
    minimum detectable effect at 80 % power; for preservation the breakage difference's upper bound against
    ``margin`` and the smallest margin these problems could show. With random directions in the outcomes
    (validation), their mean rate and the target's rank p-value (exploratory). No multiplicity adjustment here:
    the report's confirmatory family adjusts its members together."""
    rows = []
    for name, experiment, (split, coefficient, layer), group in _eligible(outcomes):
        mine = controls[
            (controls.split == split) & (controls.experiment == name) & (controls.coefficient == coefficient)
        ].to_dict("records") if len(controls) else []
        rows.append({
            "split": split, "experiment": name, "direction": experiment.latent_direction, "layer": int(layer),
            "latent": int(group[group.kind == TARGET].latent.iloc[0]), "coefficient": coefficient,
            **_experiment_row(experiment.question, experiment.success, group, mine, margin),
        })
    tests = pd.DataFrame(rows)
    if tests.empty:
        return tests
    tests["test"] = [PAIRED_TEST if q == SUPERIORITY else NON_INFERIORITY_TEST for q in tests.question]
    return tests.sort_values(["split", "experiment", "coefficient"]).reset_index(drop=True)


def _choose(rows: pd.DataFrame, damage: pd.Series) -> tuple[pd.Series, bool]:
    """The row the rule picks among one direction's positive coefficients, and whether the ceiling was met."""
    # A share of problems is a ratio of counts: the tolerance keeps e.g. 1 - 0.8 on the right side of 0.2.
    tolerated = damage.reindex(rows.coefficient).fillna(np.inf).to_numpy() <= CONTROL_DAMAGE_CEILING + 1e-9
    if not tolerated.any():
        return rows.sort_values("coefficient").iloc[0], False
    ranked = rows[tolerated].assign(_contrast=rows.contrast.fillna(-np.inf))
    return ranked.sort_values(["_contrast", "coefficient"], ascending=[False, False]).iloc[0], True


def choose_coefficients(sweep: pd.DataFrame, directions: Sequence[str], coefficients: Sequence[float]) -> pd.DataFrame:
    """One positive coefficient per latent direction from the sweep's tests, by :data:`COEFFICIENT_RULE`.

    ``directions``: those with a latent to steer; ``coefficients``: the values swept (negative ones are never
    chosen). A direction whose superiority experiment had no eligible problem in the sweep has no
    contrast to rank by: ``has_data`` False, and the ceiling alone decides.
    """
    positive = sorted(c for c in coefficients if c > 0)
    if not positive:
        raise ValueError(
            f"no positive coefficient was swept ({list(coefficients)}): confirmatory "
            "steering adds the latent's direction, so it needs one"
        )
    sweep = sweep[sweep.split == NON_VALIDATION] if len(sweep) else sweep
    chosen = []
    for direction in directions:
        experiment = superiority_experiment(direction)
        swept = pd.DataFrame({"coefficient": positive})
        mine = sweep[sweep.experiment == experiment] if len(sweep) else pd.DataFrame()
        swept = swept.merge(mine, on="coefficient", how="left") if len(mine) else swept.assign(
            contrast=np.nan, rate=np.nan, control_rate=np.nan
        )
        on_correct = sweep[(sweep.direction == direction) & sweep.control_breakage.notna()] if len(sweep) else sweep
        damage = on_correct.set_index("coefficient").control_breakage if len(on_correct) else pd.Series(dtype=float)
        row, met = _choose(swept, damage)
        chosen.append({
            "direction": direction, "experiment": experiment, "coefficient": float(row.coefficient),
            "contrast": row.contrast, "rate": row.rate, "control_rate": row.control_rate,
            "control_breakage": damage.get(row.coefficient, np.nan), "met_control_ceiling": met,
            "has_data": bool(swept.contrast.notna().any()), "rule": COEFFICIENT_RULE,
        })
    return pd.DataFrame(chosen)


def unit_summary(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per unit: problems, labels before/after, code similarity to the unsteered rerun, identical completions."""
    keys = ["split", "coefficient", "direction", "kind", "layer", "latent", "problems"]
    return outcomes.groupby(keys, sort=True).agg(
        n=("task_id", "size"),
        correct_before=("before", lambda s: int((s == "correct").sum())),
        correct_after=("after", lambda s: int((s == "correct").sum())),
        mean_similarity=("similarity", "mean"),
        identical=("identical", "sum"),
    ).reset_index()


def dose_response(tests: pd.DataFrame) -> dict[str, list[float]]:
    """Rate per coefficient (ascending), one line per experiment for the target and one for the controls' mean."""
    series: dict[str, list[float]] = {}
    if tests.empty:
        return series
    for name, group in tests.groupby("experiment"):
        group = group.sort_values("coefficient")
        series[f"{name} target"] = group.rate.tolist()
        series[f"{name} controls"] = group.control_rate.tolist()
    return series


def dose_response_plot(tests: pd.DataFrame, coefficient_mode: str) -> str:
    """The sweep's :func:`dose_response` as a markdown plot (asset metadata and the report show the same one)."""
    if tests.empty:
        return "No experiment had eligible problems in the sweep: no dose-response."
    return line_sweep(
        sorted(tests.coefficient.unique()), dose_response(tests), title="Dose-response: rate by steering coefficient",
        xlabel=f"coefficient ({coefficient_mode})", ylabel="rate",
    )
