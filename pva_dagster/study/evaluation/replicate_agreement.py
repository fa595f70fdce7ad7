"""Do two runs of the study agree on their robust summary (``replicate_summary``), whatever latents each names?

Two runs on other CPUs, or in other numerics, label a few solutions otherwise, train their SAEs on other
residuals and rank other latents first: a latent index is not expected to agree. What the report states is the
distribution over re-drawn splits, so that is what must agree: for every direction and every readout with a
5-95 % band, each run's median lies inside the other run's band. The named latents are listed beside, each with
its selection share, to show what did not carry over.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The readouts of replicate_summary given as median with a 5-95 % band: (median, p05, p95) columns.
BANDED_READOUTS: dict[str, tuple[str, str, str]] = {
    "rank-1 latent": ("median_auroc", "auroc_p05", "auroc_p95"),
    "dense probe": ("dense_probe_median_auroc", "dense_probe_auroc_p05", "dense_probe_auroc_p95"),
    "length-regressed probe": (
        "length_regressed_probe_median_auroc", "length_regressed_probe_auroc_p05", "length_regressed_probe_auroc_p95",
    ),
}
AGREEMENT_COLUMNS = ["direction", "readout", "first", "second", "agree"]


def _band(row: pd.Series, columns: tuple[str, str, str]) -> tuple[float, float, float]:
    median, low, high = (float(row[column]) for column in columns)
    return median, low, high


def _shown(median: float, low: float, high: float) -> str:
    return f"{median:.3f} [{low:.3f}, {high:.3f}]"


def summary_agreement(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """One row per direction and banded readout: both runs' median [5 %, 95 %] and whether each median lies in
    the other's band (``AGREEMENT_COLUMNS``). A direction either run lacks, or a readout one run could not
    estimate (NaN), is a row that does not agree: a missing figure is not an agreeing one."""
    rows = []
    a, b = first.set_index("direction"), second.set_index("direction")
    for direction in sorted(set(a.index) | set(b.index)):
        for readout, columns in BANDED_READOUTS.items():
            bands = [
                _band(frame.loc[direction], columns) if direction in frame.index and set(columns) <= set(frame.columns)
                else (np.nan, np.nan, np.nan)
                for frame in (a, b)
            ]
            (m1, lo1, hi1), (m2, lo2, hi2) = bands
            agree = bool(lo2 <= m1 <= hi2 and lo1 <= m2 <= hi1)  # False whenever a figure is NaN
            rows.append({
                "direction": direction, "readout": readout,
                "first": _shown(m1, lo1, hi1), "second": _shown(m2, lo2, hi2), "agree": agree,
            })
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def named_latents(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Per direction, the latent each run ranks first most often, with the share of its replicates that do."""
    def named(frame: pd.DataFrame) -> pd.Series:
        return frame.set_index("direction").apply(
            lambda row: f"{row.most_selected} ({row.most_selected_share:.0%})", axis=1
        )

    return pd.DataFrame({"first": named(first), "second": named(second)}).rename_axis("direction").reset_index()
