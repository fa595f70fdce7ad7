"""Phase 3 steering results: rates with intervals, target vs control tests, and the choice of coefficient.

Input is the per-problem outcome table of :func:`steering_sweep.unit_outcomes` (all units of a split). A problem
counts for an experiment when its unsteered rerun (same batches) has the label the experiment applies to; the
rate is the fraction of those problems whose steered label is the experiment's success.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pva_dagster.study.statistics import (
    FISHER_TEST,
    PAIRED_TEST,
    clopper_pearson,
    fisher_greater,
    holm,
    paired_exact_test,
)
from pva_dagster.study.steering.sweep import CONTROL, EXPERIMENTS, TARGET

# The coefficient rule, applied to the hyperparams split's sweep only (the validation split then runs the
# chosen coefficient once). Written out here because the report prints it.
PRESERVATION_FLOOR = 0.8
COEFFICIENT_RULE = (
    "hyperparams split; correct-preferring latent: the nonzero coefficient with the highest correction rate among "
    f"those keeping preservation >= {PRESERVATION_FLOOR} (if none does, the one with the highest preservation); "
    "incorrect-preferring latent: the nonzero coefficient with the highest corruption rate; ties go to the "
    "smaller |coefficient|"
)


def _successes(part: pd.DataFrame, success: str) -> pd.Series:
    """Success per problem (indexed by task_id) of one latent's rows."""
    return (part.set_index("task_id").after == success).sort_index()


def _test_row(group: pd.DataFrame, success: str) -> dict[str, object]:
    target = _successes(group[group.kind == TARGET], success)
    controls = {latent: _successes(rows, success) for latent, rows in group[group.kind == CONTROL].groupby("latent")}
    unpaired = [latent for latent, c in controls.items() if not c.index.equals(target.index)]
    if unpaired:
        raise ValueError(f"control latents {unpaired} ran on other problems than the target: cannot pair them")
    pairs = [paired_exact_test(target.to_numpy(), c.to_numpy()) for c in controls.values()]
    k, n = int(target.sum()), len(target)
    k_control, n_control = sum(int(c.sum()) for c in controls.values()), sum(len(c) for c in controls.values())
    low, high = clopper_pearson(k, n)
    control_low, control_high = clopper_pearson(k_control, n_control)
    return {
        "n": n, "successes": k, "rate": k / n if n else np.nan, "ci_low": low, "ci_high": high,
        "control_latents": ",".join(str(latent) for latent in controls),
        "control_successes": k_control, "control_trials": n_control,
        "control_rate": k_control / n_control if n_control else np.nan,
        "control_ci_low": control_low, "control_ci_high": control_high,
        "discordant_target": sum(int(p["discordant_target"]) for p in pairs),
        "discordant_control": sum(int(p["discordant_control"]) for p in pairs),
        # The target must beat every control: the largest p over the controls (an intersection-union test).
        "p_paired": max((float(p["p_paired"]) for p in pairs), default=np.nan),
        "p_fisher": fisher_greater(k, n, k_control, n_control),
        "mean_similarity": float(group[group.kind == TARGET].similarity.mean()) if n else np.nan,
    }


def experiment_tests(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per (split, experiment, coefficient): target and control rates with 95 % Clopper-Pearson intervals, the
    paired test and Fisher's test, and Holm-adjusted paired p-values over each split's table (one family)."""
    rows = []
    for name, experiment in EXPERIMENTS.items():
        eligible = outcomes[
            (outcomes.direction == experiment.latent_direction) & (outcomes.problems == experiment.problems)
            & (outcomes.before == experiment.problems)
        ]
        for (split, coefficient, layer), group in eligible.groupby(["split", "coefficient", "layer"]):
            latent = int(group[group.kind == TARGET].latent.iloc[0])
            rows.append({
                "split": split, "experiment": name, "direction": experiment.latent_direction, "layer": int(layer),
                "latent": latent, "coefficient": coefficient, **_test_row(group, experiment.success),
                "paired_test": PAIRED_TEST, "fisher_test": FISHER_TEST,
            })
    tests = pd.DataFrame(rows)
    if tests.empty:
        return tests
    tests["p_holm"] = np.nan
    for index in tests.groupby("split").groups.values():
        tests.loc[index, "p_holm"] = holm(tests.loc[index, "p_paired"].to_numpy())
    return tests.sort_values(["split", "experiment", "coefficient"]).reset_index(drop=True)


def _pick(candidates: pd.DataFrame, rate: str) -> pd.Series:
    ranked = candidates.assign(
        _rate=candidates[rate].fillna(-1.0), _size=candidates.coefficient.abs()
    ).sort_values(["_rate", "_size", "coefficient"], ascending=[False, True, True])
    return ranked.iloc[0]


def choose_coefficients(sweep: pd.DataFrame, directions: Sequence[str], coefficients: Sequence[float]) -> pd.DataFrame:
    """One coefficient per latent direction from the hyperparams sweep's tests, by :data:`COEFFICIENT_RULE`.

    ``directions``: those with a latent to steer; ``coefficients``: the nonzero values swept. A direction whose
    experiments had no eligible problem on the hyperparams split has no rate to rank by; it gets the smallest
    |coefficient| and ``has_data`` False, so the validation run still happens and the table says why.
    """
    coefficients = [c for c in coefficients if c != 0]
    if not coefficients:
        raise ValueError("no nonzero coefficient was swept on the hyperparams split: nothing to choose from")
    sweep = sweep[sweep.split == "hyperparams"] if len(sweep) else sweep
    rate = pd.DataFrame({"coefficient": coefficients})
    for name in EXPERIMENTS:
        rows = sweep[sweep.experiment == name] if len(sweep) else sweep
        rate[name] = rate.coefficient.map(dict(zip(rows.get("coefficient", []), rows.get("rate", []), strict=True)))
    chosen = []
    if "correct" in directions:
        keeps = rate.preservation.fillna(0.0) >= PRESERVATION_FLOOR
        correct = _pick(rate[keeps], "correction") if keeps.any() else _pick(rate, "preservation")
        chosen.append({
            "direction": "correct", "coefficient": float(correct.coefficient), "correction_rate": correct.correction,
            "preservation_rate": correct.preservation, "met_preservation_floor": bool(keeps.any()),
            "has_data": bool(rate[["correction", "preservation"]].notna().any().any()), "rule": COEFFICIENT_RULE,
        })
    if "incorrect" in directions:
        incorrect = _pick(rate, "corruption")
        chosen.append({
            "direction": "incorrect", "coefficient": float(incorrect.coefficient),
            "corruption_rate": incorrect.corruption, "has_data": bool(rate.corruption.notna().any()),
            "rule": COEFFICIENT_RULE,
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


def sweep_series(tests: pd.DataFrame) -> dict[str, list[float]]:
    """Rate per coefficient (ascending), one line per experiment for the target and one for the controls."""
    series = {}
    for name, group in tests.groupby("experiment"):
        group = group.sort_values("coefficient")
        series[f"{name} target"] = group.rate.tolist()
        series[f"{name} control"] = group.control_rate.tolist()
    return series
