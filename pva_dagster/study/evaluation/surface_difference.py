"""Every readout against the combined surface baseline: its validation AUROC minus that of
:data:`SURFACE_REFERENCE` (prompt length and complexity together), on the same tasks.

Why: a readout's AUROC beside each surface feature alone can read as signal when it is no more than difficulty;
length and complexity together are the floor a readout has to clear. The difference is paired (one resample of
the tasks, both AUROCs computed on it), so the tasks both readouts find easy or hard cancel out of its interval;
see :data:`statistics.PAIRED_AUROC_DIFFERENCE`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pva_dagster.study.evaluation.validation import positive_class
from pva_dagster.study.statistics import BOOTSTRAP_RESAMPLES, paired_auroc_difference

SURFACE_REFERENCE = "length_and_complexity"
DIFFERENCE_COLUMNS: tuple[str, ...] = (
    "auroc_minus_surface", "auroc_minus_surface_ci_low", "auroc_minus_surface_ci_high", "auroc_minus_surface_p",
    "auroc_minus_surface_note",
)


def not_compared(reason: str) -> dict[str, float | str]:
    """DIFFERENCE_COLUMNS of a readout that cannot be compared with the reference, and why."""
    return {**dict.fromkeys(DIFFERENCE_COLUMNS[:-1], np.nan), DIFFERENCE_COLUMNS[-1]: reason}


def difference_to_surface(
    readout: pd.DataFrame, surface: pd.DataFrame | None, direction: str, seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, float | str]:
    """DIFFERENCE_COLUMNS of one readout: ``readout`` and ``surface`` are the validation rows (``task_id``,
    ``correct``, ``score``) of the readout and of :data:`SURFACE_REFERENCE` for ``direction``, each score
    oriented for that direction's class (as ``readout_scores_and_curves`` gives them). Where either AUROC is not
    defined, NaN and the reason in ``auroc_minus_surface_note``; never an exception for data."""
    if surface is None or surface.empty:
        return not_compared(f"no {SURFACE_REFERENCE} readout for the {direction} direction")
    paired = readout[["task_id", "correct", "score"]].merge(
        surface[["task_id", "correct", "score"]], on="task_id", how="outer", suffixes=("", "_surface"),
        indicator=True,
    )
    unpaired = int((paired["_merge"] != "both").sum())
    if unpaired or paired.task_id.duplicated().any():
        return not_compared(f"the readout and {SURFACE_REFERENCE} are not scored on the same tasks "
                            f"({unpaired} of {len(paired)} tasks in one only, or a task twice)")
    if (paired.correct.astype(bool) != paired.correct_surface.astype(bool)).any():
        return not_compared(f"the readout and {SURFACE_REFERENCE} disagree on a task's label")
    result = paired_auroc_difference(
        paired.score.to_numpy(np.float64), paired.score_surface.to_numpy(np.float64),
        positive_class(paired.correct.to_numpy(bool), direction), seed, resamples,
    )
    return {
        "auroc_minus_surface": result["difference"], "auroc_minus_surface_ci_low": result["ci_low"],
        "auroc_minus_surface_ci_high": result["ci_high"], "auroc_minus_surface_p": result["p_delong"],
        "auroc_minus_surface_note": str(result["note"]),
    }
