"""The report's section on replicates: the rank-1 AUROC as a distribution over re-drawn splits beside the
replicates' probes, the selection-aware test, the merged test beyond difficulty and how stable the selection is
(tables of ``replicates.py``)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from pva_dagster.study import outputs
from pva_dagster.study.evaluation.replicates import SELECTION_AWARE_TEST, SURFACE
from pva_dagster.study.plots import markdown_table, strip_with_band

SHOWN_LATENTS = 5  # per direction, the most often selected


def replicate_plot(replicates: pd.DataFrame, summary: pd.DataFrame) -> str:
    """The rank-1 latents' validation AUROC per replicate and direction, with the null's 95th percentile."""
    values = {f"rank-1 {d}": g.auroc.to_numpy() for d, g in replicates.groupby("direction")} if len(replicates) else {}
    band = {f"rank-1 {r.direction}": float(r.null_median_p95) for r in summary.itertuples()} if len(summary) else {}
    return strip_with_band(values, band, "Rank-1 latent's validation AUROC over re-drawn splits", "AUROC")


def replicate_section(readouts: Mapping[str, pd.DataFrame]) -> list[str]:
    replicates, summary = readouts[outputs.REPLICATES], readouts[outputs.REPLICATE_SUMMARY]
    frequency = readouts[outputs.SELECTION_FREQUENCY]
    if summary.empty:
        return ["## Replicates: the selection over re-drawn splits", "No replicate had both classes in its sae split."]
    shown = frequency.groupby("direction").head(SHOWN_LATENTS) if len(frequency) else frequency
    return [
        "## Replicates: the selection over re-drawn splits",
        (f"{int(summary.replicates.max())} re-drawn splits (stratified by difficulty like the study's), each "
         "redoing discovery on its sae split and scoring its rank-1 latent on its validation split, on the same "
         f"residuals and SAEs. Test: {SELECTION_AWARE_TEST} ({int(summary.null_draws.max())} draws; smallest "
         "possible p = 1 / (draws + 1)). `beats_*`: the share of replicates whose rank-1 latent has a higher "
         f"validation AUROC than that surface baseline ({', '.join(SURFACE)}) or the dense probe, fitted on the "
         "replicate's other problems. `dense_probe_*`: per replicate, an L2 logistic regression on the standardised "
         "residual whose layer and C cross-validation inside the replicate's other problems chooses, scored on its "
         "validation split; `length_regressed_probe_*`: the same with prompt length regressed out of every "
         "residual dimension (the same on both directions' rows). `beyond_p_median`: the median over replicates "
         "of the rank-1 latent's likelihood-ratio test beyond length and complexity on the replicate's validation "
         "split; `p_beyond_merged`, twice it (at most 1), is a p-value however the overlapping splits make the "
         "tests depend on each other. A latent is named with how often it is selected: a name without its share "
         "is one draw."),
        markdown_table(summary),
        replicate_plot(replicates, summary),
        "Selection frequency (share of replicates ranking the latent first / holding it in the top k):",
        markdown_table(shown),
    ]
