"""Small figures and tables as markdown, for Dagster asset metadata (``MetadataValue.md``) and the report.

Figures are PNGs embedded as base64 data URIs, so a materialization carries its plots with it and the
Dagster UI shows them without a file server. They are kept small (low DPI) because they live in the
event log. Matplotlib runs on the Agg backend: no display, safe in worker processes.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after use(): pick the backend before pyplot starts
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import auc

FIGSIZE = (6.0, 3.6)
DPI = 80
CURVE_KINDS: dict[str, tuple[str, str, str]] = {  # kind -> (title, x label, y label)
    "roc": ("ROC curve", "false positive rate", "true positive rate"),
    "pr": ("Precision-recall curve", "recall", "precision"),
}


def figure_markdown(fig: Figure, title: str) -> str:
    """The figure as a bold title and an inline PNG image; the figure is closed afterwards."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    alt = title.replace("[", "(").replace("]", ")")
    return f"**{title}**\n\n![{alt}](data:image/png;base64,{encoded})"


def _no_data(ax: plt.Axes, why: str) -> None:
    # An empty plot says so in words rather than looking like a rendering bug.
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)


def histogram_by_group(
    values_by_group: dict[str, np.ndarray], title: str, xlabel: str, bins: int = 40
) -> str:
    """Overlaid histograms on shared bins, one per group (non-finite values dropped, counted in the legend)."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    finite = {name: np.asarray(v, dtype=np.float64).ravel() for name, v in values_by_group.items()}
    dropped = {name: int((~np.isfinite(v)).sum()) for name, v in finite.items()}
    finite = {name: v[np.isfinite(v)] for name, v in finite.items()}
    pooled = np.concatenate([v for v in finite.values()] or [np.empty(0)])
    if len(pooled):
        edges = np.histogram_bin_edges(pooled, bins=bins)
        for name, values in finite.items():
            label = f"{name} (n={len(values)}" + (
                f", {dropped[name]} non-finite dropped)" if dropped[name] else ")"
            )
            ax.hist(values, bins=edges.tolist(), alpha=0.5, label=label)
        ax.legend(fontsize="small")
    else:
        _no_data(ax, "no finite values")
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    return figure_markdown(fig, title)


def bar_chart(labels: list[str], values: list[float], title: str, ylabel: str) -> str:
    """One bar per label."""
    if len(labels) != len(values):
        raise ValueError(f"bar_chart got {len(labels)} labels but {len(values)} values")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    if labels:
        ax.bar([str(label) for label in labels], [float(v) for v in values])
    else:
        _no_data(ax, "no bars")
    ax.set(title=title, ylabel=ylabel)
    return figure_markdown(fig, title)


def roc_pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], kind: str) -> str:
    """ROC (``(fpr, tpr)``) or precision-recall (``(recall, precision)``) curves, area in each legend entry."""
    if kind not in CURVE_KINDS:
        raise ValueError(f"unknown curve kind {kind!r}; choose from {sorted(CURVE_KINDS)}")
    title, xlabel, ylabel = CURVE_KINDS[kind]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, (x, y) in curves.items():
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(
                f"curve {name!r}: x and y must be 1-D of one length, got {x.shape} and {y.shape}"
            )
        area = auc(x, y) if len(x) >= 2 else float("nan")
        ax.plot(
            x, y, label=f"{name} (area {area:.3f})", drawstyle="steps-post" if kind == "pr" else "default"
        )
    if kind == "roc":
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    if curves:
        ax.legend(fontsize="small", loc="lower right" if kind == "roc" else "lower left")
    else:
        _no_data(ax, "no curves (no group had both classes)")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    return figure_markdown(fig, title)


def line_sweep(x: list[float], series: dict[str, list[float]], title: str, xlabel: str, ylabel: str) -> str:
    """One line with markers per series over shared x values (NaN leaves a gap)."""
    bad = {name: len(ys) for name, ys in series.items() if len(ys) != len(x)}
    if bad:
        raise ValueError(f"series lengths {bad} do not match the {len(x)} x values")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for name, ys in series.items():
        ax.plot([float(v) for v in x], [float(v) for v in ys], marker="o", label=name)
    if series:
        ax.legend(fontsize="small")
    else:
        _no_data(ax, "no series")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return figure_markdown(fig, title)


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A pipe table of the frame's columns (index dropped); ``(no rows)`` for an empty frame."""
    if frame.empty:
        return "(no rows)" + (
            f"; columns: {', '.join(map(str, frame.columns))}" if len(frame.columns) else ""
        )
    return frame.to_markdown(index=False, floatfmt=floatfmt)


# Per direction, AUROC against layer of the layered readouts, the surface baselines as bands.
LAYERED_READOUTS: tuple[str, ...] = ("best_latent", "sparse_probe", "dense_probe")


def auroc_by_layer(table: pd.DataFrame, direction: str) -> str:
    """AUROC (with its bootstrap interval as error bars) against layer for each of LAYERED_READOUTS, and each
    baseline (rows with a NaN layer) as a horizontal line inside a band of its interval; chance dashed.

    ``table``: :func:`readout_table`'s rows (readout, layer, direction, auroc, auroc_ci_low, auroc_ci_high).
    """
    rows = table[table.direction == direction]
    title = f"AUROC by layer, {direction} direction (validation)"
    fig, ax = plt.subplots(figsize=FIGSIZE)
    baselines = rows[rows.layer.isna()]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, base in enumerate(baselines.itertuples()):
        colour = colours[(len(LAYERED_READOUTS) + i) % len(colours)]
        ax.axhspan(base.auroc_ci_low, base.auroc_ci_high, color=colour, alpha=0.15)
        ax.axhline(base.auroc, color=colour, linewidth=1, label=f"{base.readout} (baseline)")
    layered = rows[rows.readout.isin(LAYERED_READOUTS)].sort_values("layer")
    for i, name in enumerate(LAYERED_READOUTS):
        line = layered[layered.readout == name]
        if len(line):
            # An interval whose bound is the AUROC itself (a bootstrap with no spread on that side) can differ from
            # it by rounding alone; a negative bar length is that rounding, not a bar.
            error = np.clip(np.vstack([line.auroc - line.auroc_ci_low, line.auroc_ci_high - line.auroc]), 0, None)
            ax.errorbar(line.layer, line.auroc, yerr=error, marker="o", capsize=3, color=colours[i], label=name)
    if rows.empty:
        _no_data(ax, f"no readouts for the {direction} direction")
    else:
        ax.axhline(0.5, linestyle="--", color="grey", linewidth=1, label="chance")
        ax.legend(fontsize="small", loc="best")
    ax.set(title=title, xlabel="layer", ylabel="AUROC", ylim=(0, 1))
    return figure_markdown(fig, title)


def strip_with_band(values_by_group: dict[str, np.ndarray], band_by_group: dict[str, float], title: str,
                    ylabel: str) -> str:  # fmt: skip
    """One column of points per group (jittered, seeded) with its median marked, and a shaded band from the axis
    bottom up to ``band_by_group[group]`` (for example the null's 95th percentile)."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    jitter = np.random.default_rng(0)
    for x, (name, values) in enumerate(values_by_group.items()):
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        band = band_by_group.get(name, np.nan)
        if np.isfinite(band):
            label = "null (95th percentile)" if x == 0 else None
            ax.fill_between([x - 0.4, x + 0.4], 0.0, band, color="0.85", label=label)
        ax.scatter(x + jitter.uniform(-0.15, 0.15, len(values)), values, s=12, alpha=0.7)
        if len(values):
            ax.hlines(np.median(values), x - 0.3, x + 0.3, colors="black")
    ax.set_xticks(range(len(values_by_group)), list(values_by_group))
    ax.set(title=title, ylabel=ylabel, ylim=(0.0, 1.0))
    if any(np.isfinite(v) for v in band_by_group.values()):
        ax.legend(fontsize="small")
    return figure_markdown(fig, title)
