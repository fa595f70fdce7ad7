"""How stable the steering coefficient's choice is: the rule applied again without each cross-fitting fold.

The coefficient rule (:data:`~pva_dagster.study.steering.results.COEFFICIENT_RULE`) fits nothing: its criterion,
the paired contrast to the controls, is a count of problems, so summed over held-out folds it is the contrast over
every problem of the sweep, and the choice made on all of them is the cross-validated one. What folds add is its
stability: with each fold left out in turn, the other problems choose again, and the share of these choices that
agree with the reported one says whether a few problems decided it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pva_dagster.study.steering.results import choose_coefficients, control_tests, experiment_tests

FOLD_COLUMNS: tuple[str, ...] = ("fold", "direction", "coefficient", "contrast", "met_control_ceiling")


def fold_choices(
    outcomes: pd.DataFrame, folds: pd.DataFrame, directions: Sequence[str], coefficients: Sequence[float],
    margin: float,
) -> pd.DataFrame:
    """FOLD_COLUMNS: per fold and direction, the coefficient the rule picks on the sweep's problems outside it.

    ``outcomes``: the sweep's per-problem outcomes (:func:`~pva_dagster.study.steering.sweep.combine_units`);
    ``folds``: ``task_id``, ``fold`` of its problems (negative: in no fold). Empty without folds."""
    fold_of = folds.set_index("task_id").fold if len(folds) else pd.Series(dtype=int)
    missing = sorted(set(outcomes.task_id) - set(fold_of.index))
    if len(fold_of) and missing:
        raise ValueError(f"sweep problems without a fold: {missing[:10]}")
    rows = []
    for k in sorted(int(f) for f in fold_of.unique() if f >= 0):
        kept = outcomes[outcomes.task_id.map(fold_of) != k]
        tests = experiment_tests(kept, control_tests(kept), margin)
        chosen = choose_coefficients(tests, directions, coefficients)
        rows += [{"fold": k, **row} for row in chosen[list(FOLD_COLUMNS[1:])].to_dict("records")]
    return pd.DataFrame(rows, columns=list(FOLD_COLUMNS))


def with_fold_agreement(chosen: pd.DataFrame, per_fold: pd.DataFrame) -> pd.DataFrame:
    """``chosen`` (one row per direction) with each fold's choice listed and the share that agrees with it."""
    listed, agreement = [], []
    for row in chosen.itertuples():
        mine = per_fold[per_fold.direction == row.direction].sort_values("fold").coefficient.to_numpy(float)
        listed.append(", ".join(f"{c:g}" for c in mine))
        agreement.append(float(np.mean(mine == row.coefficient)) if len(mine) else np.nan)
    return chosen.assign(fold_choices=listed, fold_agreement=agreement)
