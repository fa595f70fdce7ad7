"""Plot helpers: each gives markdown with an inline PNG that decodes; tables render as pipe tables."""

from __future__ import annotations

import base64
import io
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from pva_dagster.study.evaluation.validation import pr_points, roc_points
from pva_dagster.study.plots import (
    bar_chart,
    figure_markdown,
    histogram_by_group,
    line_sweep,
    markdown_table,
    roc_pr_curves,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\(data:image/png;base64,(?P<data>[A-Za-z0-9+/=]+)\)")


def _png(markdown: str, title: str) -> np.ndarray:
    """Check the markdown shape, decode the image and return its pixels."""
    assert markdown.startswith(f"**{title}**")
    match = IMAGE.search(markdown)
    assert match, markdown[:200]
    raw = base64.b64decode(match["data"], validate=True)
    assert raw[:8] == PNG_MAGIC
    pixels = imread(io.BytesIO(raw), format="png")
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    return pixels


def test_figure_markdown_embeds_the_png_and_closes_the_figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    markdown = figure_markdown(fig, "a [bracketed] title")
    _png(markdown, "a [bracketed] title")
    assert IMAGE.search(markdown)["alt"] == "a (bracketed) title"
    assert not plt.fignum_exists(fig.number)


def test_histogram_by_group():
    rng = np.random.default_rng(0)
    groups = {"layer 6": rng.normal(size=200), "layer 12": np.append(rng.normal(1, 1, 100), np.nan)}
    open_before = len(plt.get_fignums())
    _png(histogram_by_group(groups, title="s_correct", xlabel="score"), "s_correct")
    _png(histogram_by_group({"empty": np.array([])}, title="nothing", xlabel="score"), "nothing")
    assert len(plt.get_fignums()) == open_before


def test_bar_chart():
    _png(bar_chart(["1", "2", "5"], [10.0, 4.0, 1.0], title="complexity", ylabel="problems"), "complexity")
    with pytest.raises(ValueError, match="2 labels but 1 values"):
        bar_chart(["a", "b"], [1.0], title="t", ylabel="y")


def test_roc_and_pr_curves_from_real_points():
    rng = np.random.default_rng(1)
    activation = rng.normal(size=100)
    correct = activation + rng.normal(size=100) > 0
    _png(roc_pr_curves({"L6/12": roc_points(activation, correct, "correct")}, kind="roc"), "ROC curve")
    _png(roc_pr_curves({"L6/12": pr_points(activation, correct, "incorrect")}, kind="pr"), "Precision-recall curve")
    _png(roc_pr_curves({}, kind="roc"), "ROC curve")  # no latent had both classes: an explicit empty plot
    with pytest.raises(ValueError, match="'det'"):
        roc_pr_curves({}, kind="det")


def test_line_sweep():
    x = [-1.0, 0.0, 1.0]
    series = {"correct target": [0.1, 0.0, 0.3], "correct control": [0.05, 0.0, float("nan")]}
    _png(line_sweep(x, series, title="sweep", xlabel="coefficient", ylabel="rate"), "sweep")
    with pytest.raises(ValueError, match="'short': 2"):
        line_sweep(x, {"short": [1.0, 2.0]}, title="t", xlabel="x", ylabel="y")


def test_markdown_table():
    frame = pd.DataFrame({"latent": [3, 12], "auroc": [0.71234, 0.5], "direction": ["correct", "incorrect"]})
    lines = markdown_table(frame).splitlines()
    assert len(lines) == 4
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["latent", "auroc", "direction"]
    assert "0.712" in lines[2] and "0.71234" not in lines[2]
    assert "0.5000" in markdown_table(frame, floatfmt=".4f")
    assert markdown_table(frame.iloc[:0]) == "(no rows); columns: latent, auroc, direction"
    assert markdown_table(pd.DataFrame()) == "(no rows)"
