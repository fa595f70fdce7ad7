"""Do two runs of the study agree on their robust summary (``replicate_summary``), whatever latents each names?

Two runs on other CPUs, or in other numerics, label a few solutions otherwise, train their SAEs on other
residuals and rank other latents first: a latent index is not expected to agree. What the report states is the
distribution over re-drawn splits, so that is what must agree: for every direction and every readout with a
5-95 % band, each run's median lies inside the other run's band. The named latents are listed beside, each with
its selection share, to show what did not carry over. The bands over re-drawn splits hold the split's variation
alone; the pooled band over splits and SAE seeds holds the SAEs' too, which is what differs on another CPU.
"""

from __future__ import annotations

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


POOLED_READOUT = "rank-1 latent, splits x SAE seeds"
BAND_COLUMNS = ["direction", "readout", "median", "low", "high", "draws"]


def _quantile_band(direction: str, readout: str, values: pd.Series) -> dict[str, object]:
    values = values.dropna()
    return {
        "direction": direction, "readout": readout, "median": float(values.median()),
        "low": float(values.quantile(0.05)), "high": float(values.quantile(0.95)), "draws": len(values),
    }


def run_bands(
    summary: pd.DataFrame, replicates: pd.DataFrame | None = None, seed_selections: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One run's banded readouts (``BAND_COLUMNS``): those of ``replicate_summary`` (re-drawn splits of the primary
    SAEs) and, given the run's ``replicates`` and ``sae_seed_selections``, the rank-1 AUROC pooled over the
    re-drawn splits of the primary SAEs and of every seed variant: the band that holds both the split's and the
    SAE training's variation (a run on another CPU trains other SAEs)."""
    rows = [
        {"direction": row.direction, "readout": readout, "median": float(getattr(row, median)),
         "low": float(getattr(row, low)), "high": float(getattr(row, high)), "draws": int(row.replicates)}
        for row in summary.itertuples()
        for readout, (median, low, high) in BANDED_READOUTS.items()
        if {median, low, high} <= set(summary.columns)
    ]  # fmt: skip
    if replicates is not None and seed_selections is not None and len(replicates) and len(seed_selections):
        resplit_rows = seed_selections[seed_selections.split != "study"]  # the study's split is resplit 0's
        for direction in sorted(set(replicates.direction)):
            pooled = pd.concat([
                replicates.auroc[replicates.direction == direction],
                resplit_rows.auroc[resplit_rows.direction == direction],
            ])
            rows.append(_quantile_band(direction, POOLED_READOUT, pooled))
    return pd.DataFrame(rows, columns=BAND_COLUMNS)


def _shown(median: float, low: float, high: float) -> str:
    return f"{median:.3f} [{low:.3f}, {high:.3f}]"


def summary_agreement(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """One row per direction and banded readout of either run (:func:`run_bands`): both runs' median [5 %, 95 %]
    and whether each median lies in the other's band (``AGREEMENT_COLUMNS``). A readout either run lacks, or could
    not estimate (NaN), is a row that does not agree: a missing figure is not an agreeing one."""
    keys = ["direction", "readout"]
    both = first.merge(second, on=keys, how="outer", suffixes=("_1", "_2")).sort_values(keys, ignore_index=True)
    rows = []
    for row in both.itertuples():
        m1, lo1, hi1, m2, lo2, hi2 = (
            float(getattr(row, f"{column}_{run}")) for run in (1, 2) for column in ("median", "low", "high")
        )
        rows.append({
            "direction": row.direction, "readout": row.readout, "first": _shown(m1, lo1, hi1),
            "second": _shown(m2, lo2, hi2), "agree": bool(lo2 <= m1 <= hi2 and lo1 <= m2 <= hi1),
        })
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def named_latents(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Per direction, the latent each run ranks first most often, with the share of its replicates that do."""
    def named(frame: pd.DataFrame) -> pd.Series:
        return frame.set_index("direction").apply(
            lambda row: f"{row.most_selected} ({row.most_selected_share:.0%})", axis=1
        )

    return pd.DataFrame({"first": named(first), "second": named(second)}).rename_axis("direction").reset_index()
