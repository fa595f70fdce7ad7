"""Two runs agree on the robust summary when only their numerics differ, and not when the signal differs; the
CLI reads the summaries from two data folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pva_dagster.cli.compare_runs import main as compare_runs
from pva_dagster.study import storage
from pva_dagster.study.evaluation.replicate_agreement import (
    BANDED_READOUTS,
    POOLED_READOUT,
    named_latents,
    run_bands,
    summary_agreement,
)
from pva_dagster.study.evaluation.replicates import (
    Discovery,
    ReplicateDesign,
    null_medians,
    replicate_summary,
    replicate_table,
)
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.outputs import REPLICATE_SUMMARY

N_TASKS, D_SAE, D_MODEL, LAYERS = 120, 40, 10, (3, 7)
DESIGN = ReplicateDesign(seed=0, resplits=12, null_draws=2, top_n=20, keep=5)


def _summary(planted: float, rounding_seed: int | None) -> pd.DataFrame:
    """The replicate summary of one simulated study whose latent 5 of layer 7 carries the label by ``planted``;
    ``rounding_seed`` perturbs every latent and residual by a relative 1e-3, as other numerics would."""
    rng = np.random.default_rng(7)
    correct = rng.random(N_TASKS) < 0.45
    tasks = pd.DataFrame({
        "task_id": np.arange(1, N_TASKS + 1), "correct": correct,
        "complexity": rng.integers(1, 6, N_TASKS), "prompt_tokens": rng.integers(40, 120, N_TASKS),
    })
    latents = {layer: rng.exponential(1.0, (N_TASKS, D_SAE)) * (rng.random((N_TASKS, D_SAE)) < 0.4) for layer in LAYERS}
    latents[7][:, 5] = np.where(rng.random(N_TASKS) < 0.15 + planted * correct, 1.0 + rng.random(N_TASKS), 0.0)
    residuals = {layer: rng.normal(size=(N_TASKS, D_MODEL)) + 0.8 * correct[:, None] for layer in LAYERS}
    if rounding_seed is not None:
        noise = np.random.default_rng(rounding_seed)
        latents = {k: v * (1 + 1e-3 * noise.standard_normal(v.shape)) for k, v in latents.items()}
        residuals = {k: v * (1 + 1e-3 * noise.standard_normal(v.shape)) for k, v in residuals.items()}
    discovery = Discovery(latents, {layer: np.zeros(D_SAE) for layer in LAYERS}, dict.fromkeys(LAYERS, 0.02))
    return replicate_summary(
        replicate_table(tasks, residuals, discovery, DESIGN), null_medians(tasks, discovery, DESIGN), DESIGN
    )


def test_runs_that_differ_in_rounding_agree_on_every_banded_readout():
    agreement = summary_agreement(run_bands(_summary(0.7, None)), run_bands(_summary(0.7, rounding_seed=1)))
    assert len(agreement) == 2 * len(BANDED_READOUTS) and agreement.agree.all()


def test_a_run_without_the_signal_disagrees_on_the_rank1_latent_and_names_another_latent():
    planted, noise = _summary(0.9, None), _summary(0.0, None)
    agreement = summary_agreement(run_bands(planted), run_bands(noise)).set_index(["direction", "readout"])
    assert not agreement.loc[("correct", "rank-1 latent"), "agree"]
    names = named_latents(planted, noise).set_index("direction")
    assert names.loc["correct", "first"].startswith("L7/5 ") and not names.loc["correct", "second"].startswith("L7/5 ")


def test_a_direction_one_run_lacks_does_not_agree():
    summary = _summary(0.7, None)
    agreement = summary_agreement(run_bands(summary), run_bands(summary[summary.direction == "correct"]))
    assert not agreement[agreement.direction == "incorrect"].agree.any()
    assert agreement[agreement.direction == "correct"].agree.all()


def test_the_cli_compares_two_data_folders_robust_summaries(tmp_path: Path, capsys):
    folders = {name: tmp_path / name for name in ("bf16", "f32", "noise")}
    for root, summary in zip(
        folders.values(), (_summary(0.7, None), _summary(0.7, 2), _summary(0.0, None)), strict=True
    ):
        storage.write_parquet(DataLayout(root).phase3_table(REPLICATE_SUMMARY), summary)
    assert compare_runs([str(folders["bf16"]), str(folders["f32"]), "--robust"]) == 0
    assert "6 of 6 readouts agree" in capsys.readouterr().out
    assert compare_runs([str(folders["bf16"]), str(folders["noise"]), "--robust"]) == 1


def test_the_pooled_band_holds_the_seed_variants_draws_beside_the_resplits():
    replicates = pd.DataFrame({"direction": ["correct"] * 4, "auroc": [0.70, 0.72, 0.68, 0.71]})
    seeds = pd.DataFrame({
        "split": ["study", "resplit", "resplit", "resplit", "resplit"], "direction": ["correct"] * 5,
        "auroc": [0.99, 0.55, 0.57, 0.56, 0.58],
    })
    summary = pd.DataFrame({"direction": ["correct"], "replicates": [4], "median_auroc": [0.705],
                            "auroc_p05": [0.68], "auroc_p95": [0.72]})  # fmt: skip
    bands = run_bands(summary, replicates, seeds).set_index("readout")
    pooled = bands.loc[POOLED_READOUT]
    assert pooled.draws == 8 and pooled.low < 0.58 and pooled.high >= 0.70  # the study's row (0.99) left out
    assert pooled["median"] == pytest.approx(pd.Series([0.70, 0.72, 0.68, 0.71, 0.55, 0.57, 0.56, 0.58]).median())
    # Another CPU's run, whose SAEs drew the other way round (its primary low, its variants high): outside the
    # split band, inside the pooled one.
    other = run_bands(
        summary.assign(median_auroc=0.57, auroc_p05=0.55, auroc_p95=0.6),
        replicates.assign(auroc=[0.57, 0.56, 0.58, 0.55]),
        seeds.assign(auroc=[0.99, 0.70, 0.72, 0.68, 0.71]),
    )
    agreement = summary_agreement(run_bands(summary, replicates, seeds), other).set_index("readout").agree
    assert not agreement["rank-1 latent"] and agreement[POOLED_READOUT]
