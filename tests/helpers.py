"""What every end-to-end run must leave (tests/test_pipeline.py on the embedded profile, tests/test_rehearsal.py
on the gemma profile's stand-ins)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import numpy as np
import pandas as pd
import torch

from pva_dagster.study.domain import DEFAULT_SEED
from pva_dagster.study.evaluation.confirmatory import PRIMARY_REPLICATE, replicate_auroc_member
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.sandbox.execution import probe


def check_phase0(layout: DataLayout, task_ids: list[int], seed: int = DEFAULT_SEED) -> None:
    difficulty = pd.read_parquet(layout.table_file("difficulty_mapping"))
    assert sorted(difficulty.task_id) == task_ids
    sizes = {s: len(pd.read_parquet(layout.split_file(s))) for s in ("sae", "hyperparams", "validation")}
    assert sum(sizes.values()) == len(task_ids) and sizes["sae"] == len(task_ids) // 2
    assert json.loads(layout.split_metadata_file.read_text())["seed"] == seed


def check_phase1(layout: DataLayout, task_range: str, task_ids: list[int], n_layers: int, d_model: int) -> None:
    records = pd.read_parquet(layout.phase1_0_dataset(task_range))
    assert sorted(records.task_id) == task_ids
    assert set(records.label) == {"correct", "incorrect"}, "both labels must occur"
    for row in records.itertuples():
        assert len(row.activation_files) == n_layers
        with np.load(row.activation_files[5]) as npz:
            assert npz["residual"].shape == (d_model,)
        assert f"/{row.label}/" in row.activation_files[5]
    metadata = json.loads(layout.metadata_for(layout.phase1_0_dataset(task_range)).read_text())
    assert metadata["sandbox_isolation"] == probe().level.value
    sampled = pd.read_parquet(layout.phase1_2_dataset(0.3, task_range))
    validation = pd.read_parquet(layout.split_file("validation")).task_id
    assert set(sampled.task_id) == set(validation)
    assert len(sampled) == 2 * len(validation) and not sampled.duplicated(["task_id", "sample"]).any()
    for task_id, files in sampled.groupby("task_id").activation_files:  # both samples share the task's files
        shared = [str(layout.phase1_2_activation(task_id, layer)) for layer in range(n_layers)]
        assert [list(f) for f in files] == [shared, shared]


def check_phase2_scores_and_duckdb_recount(layout: DataLayout, task_range: str) -> None:
    scores = pd.read_parquet(layout.phase2_table("sae", "separation_scores"))
    assert scores.s_correct.between(-1, 1).all() and scores.s_incorrect.between(-1, 1).all()
    top = json.loads(layout.phase2_table("sae", "top_latents").with_suffix(".json").read_text())
    best = top["best"]["correct"]
    sae_tasks = pd.read_parquet(layout.split_file("sae")).task_id.tolist()
    recount = duckdb.sql(
        f"""SELECT passed, count(*) AS n FROM read_parquet('{layout.phase1_0_dataset(task_range)}')
            WHERE task_id IN ({",".join(map(str, sae_tasks))}) GROUP BY passed"""
    ).df().set_index("passed").n
    assert best["n_correct"] == recount[True] and best["n_incorrect"] == recount[False]
    # The SAE quality table: per SAE layer, a row over every Phase 1.0 task and one over the validation tasks
    # alone (held out from the embedded SAEs' training), its counts adding up.
    quality = pd.read_parquet(layout.sae_quality_file)
    every, held_out = quality[quality.prompts == "every task"], quality[quality.prompts != "every task"]
    assert every.layer.is_unique and every.tasks.nunique() == 1 and held_out.layer.tolist() == every.layer.tolist()
    assert (every.tasks >= len(pd.read_parquet(layout.phase1_0_dataset(task_range)))).all()
    assert (held_out.tasks == len(pd.read_parquet(layout.split_file("validation")))).all()
    assert (quality.latents_fired + quality.dead_on_study_prompts == quality.d_sae).all()
    assert (quality.fvu >= 0).all() and quality.between_task_share.between(0, 1).all()
    # The model's next-token loss with each SAE spliced in, and the share of the zero-ablation's damage it avoids.
    # (Their order is the embedded model's own test: a random-weight stand-in predicts no better clean than spliced.)
    losses = quality[["loss_clean", "loss_spliced", "loss_zero_ablated"]]
    assert np.isfinite(losses.to_numpy()).all() and (losses > 0).all().all()
    recovered = (quality.loss_zero_ablated - quality.loss_spliced) / (quality.loss_zero_ablated - quality.loss_clean)
    assert np.allclose(quality.loss_recovered, recovered)


def check_phase3_classification(layout: DataLayout) -> None:
    classification = pd.read_parquet(layout.phase3_table("classification"))
    for column in ("f1", "precision", "recall"):
        assert classification[column].between(0, 1).all()
    assert classification.auroc.dropna().between(0, 1).all()
    both = classification.dropna(subset=["auroc"])
    assert (both.auroc_ci_low <= both.auroc).all() and (both.auroc <= both.auroc_ci_high).all()
    assert classification.auroc_p_permutation.dropna().between(0, 1).all()
    assert classification.threshold_few_samples.all(), "a 24-problem run has fewer than 20 hyperparams samples"


def check_phase3_steering(layout: DataLayout, coefficients: set[float]) -> None:
    chosen = pd.read_parquet(layout.phase3_table("phase3_steering_coefficients")).set_index("direction")
    sweep = pd.read_parquet(layout.phase3_table("steering_sweep_tests"))
    assert set(sweep.split) == {"non-validation"} and set(sweep.coefficient) <= coefficients
    assert set(chosen.coefficient) <= coefficients and (chosen.coefficient > 0).all()
    # The sweep ran on sae and hyperparams problems only, each in a fold that chose again without it.
    split_of = {int(t): name for name in ("sae", "hyperparams", "validation")
                for t in pd.read_parquet(layout.split_file(name)).task_id}  # fmt: skip
    swept = {int(t) for path in layout.steering_units_dir.glob("non-validation_*.parquet")
             for t in pd.read_parquet(path).task_id}  # fmt: skip
    assert swept and {split_of[t] for t in swept} <= {"sae", "hyperparams"}
    folds = pd.read_parquet(layout.phase3_table("steering_sweep_folds"))
    assert folds.fold.nunique() >= 2 and set(folds.direction) == set(chosen.index)
    assert chosen.fold_agreement.between(0, 1).all()
    tests = pd.read_parquet(layout.phase3_table("steering_tests"))
    assert set(tests.split) == {"validation"}
    for row in tests.itertuples():  # only the chosen coefficient of each latent's direction ran on validation
        assert row.coefficient == chosen.coefficient[row.direction]
        assert row.ci_low <= row.rate <= row.ci_high
        if row.question == "superiority":
            # No effect is detectable on a handful of problems: the MDE is then missing, never zero or negative.
            assert 0 <= row.p_paired <= 1 and not row.minimum_detectable_effect <= 0
        else:
            assert row.margin > 0 and row.breakage_ci_high >= row.breakage_difference
    assert {"correction", "preservation", "corruption"} >= set(tests.experiment) and len(tests) >= 2
    # Each control paired with the target on its own: one row per control and experiment.
    per_control = pd.read_parquet(layout.phase3_table("steering_controls"))
    assert len(per_control) == tests.controls.sum()
    effects = pd.read_parquet(layout.phase3_table("steering_effects"))
    assert {"target", "control"} <= set(effects.kind) <= {"target", "control", "random"}
    assert (effects.split == "validation").all()
    # The unsteered rerun (the baseline every effect is measured against) labels the problems as Phase 1.0
    # did: batched greedy generation was measured batch-invariant (shared notes).
    noise = pd.read_parquet(layout.phase3_table("steering_noise"))
    assert noise.n.sum() > 0 and noise.label_changed.sum() == 0
    report = layout.report_file.read_text()
    assert report.startswith("# Does the model know")
    assert "## Phase 3: steering on the validation split" in report and "Exploratory: coefficient sweep" in report
    assert "minimum detectable effect" in report and "non-inferior" in report and "Dose-response" in report


def check_phase3_readouts(layout: DataLayout, n_layers: int, sae_layers: list[int]) -> None:
    """Baselines, a dense probe per stored layer, a sparse probe and best latent per SAE layer, each direction;
    the rank-1 latents marked as the primary replicate; per replicate the probes and the test beyond difficulty;
    the report opens with the SAE quality table, then the declared family over re-drawn splits, Holm-adjusted
    together."""
    table = pd.read_parquet(layout.phase3_table("readouts"))
    counts = table.groupby("readout").size().to_dict()
    assert counts == {
        "prompt_length": 2, "complexity": 2, "tfidf": 2, "length_and_complexity": 2, "length_complexity_tfidf": 2,
        "dense_probe": 2 * n_layers,
        "sparse_probe": 2 * len(sae_layers), "best_latent": 2 * len(sae_layers),
    }
    # A bootstrap bound can equal the AUROC up to rounding (the resamples' AUROCs are summed in another order).
    rounding = 1e-12
    assert table.auroc.between(0, 1).all() and (table.auroc_ci_low <= table.auroc + rounding).all()
    assert (table.auroc <= table.auroc_ci_high + rounding).all() and table.auroc_p_permutation.between(0, 1).all()
    difference = table.auroc_minus_surface
    assert difference.between(-1, 1).all() and (table.auroc_minus_surface_ci_low <= difference + 1e-12).all()
    assert (table[table.readout == "length_and_complexity"].auroc_minus_surface == 0).all()
    assert ((table.f1 >= 0) & (table.majority_f1 >= 0)).all()
    primary = table[table.family == PRIMARY_REPLICATE]
    assert sorted(primary.direction) == ["correct", "incorrect"] and set(primary.readout) == {"best_latent"}
    beyond = pd.read_parquet(layout.phase3_table("beyond_difficulty"))
    assert beyond.p_lrt.between(0, 1).all() and set(beyond.test) == {"likelihood-ratio test, chi2 1 df"}
    scores = pd.read_parquet(layout.phase3_table("readout_scores"))
    assert not scores.duplicated(["readout", "layer", "direction", "task_id"]).any(), "one row a task"
    replicates = pd.read_parquet(layout.phase3_table("replicates"))
    assert {"dense_probe_auroc", "dense_probe_layer", "length_regressed_probe_auroc", "beyond_p"} <= set(replicates)
    report = layout.report_file.read_text()
    family = report.index("## Readouts: the declared confirmatory family")
    assert replicate_auroc_member("correct") in report[family:]
    assert family < report.index("## Phase 2: top latents") and "beyond prompt length and complexity" in report
    assert report.index("## SAE quality on the study's own residuals") < family, "the SAE quality table comes first"


def check_sae_seed_replicates(
    layout: DataLayout, sae_layers: list[int], variants: int, seed: int = DEFAULT_SEED
) -> None:
    """The general-text filter read by every seed's SAEs; each seed variant's selection on the study's split and
    the re-drawn ones, matched to the primary's; a summary per direction and each variant's quality per layer; the
    report's section after the replicates."""
    variant_seeds = [seed + offset for offset in range(1, variants + 1)]
    general = pd.read_parquet(layout.general_text_frequency_file)
    assert sorted(set(general.seed)) == [seed, *variant_seeds] and general.attrs["primary_seed"] == seed
    selections = pd.read_parquet(layout.phase3_table("sae_seed_selections"))
    summary = pd.read_parquet(layout.phase3_table("sae_seed_summary"))
    quality = pd.read_parquet(layout.phase3_table("sae_seed_quality"))
    assert sorted(zip(quality.seed, quality.layer, strict=True)) == [(s, x) for s in variant_seeds for x in sae_layers]
    assert set(selections.seed) <= set(variant_seeds) and "study" in set(selections.split)
    assert not selections.duplicated(["seed", "split", "direction"]).any()
    assert selections.best_cosine.between(0, 1 + 1e-9).all() and set(selections.layer) <= set(sae_layers)
    assert selections.auroc.dropna().between(0, 1).all()
    assert (selections.recovers_primary == (selections.cosine_to_primary_rank1 >= 0.7)).all()
    assert len(summary) and (summary.variants == variants).all() and summary.recovered_share.between(0, 1).all()
    report = layout.report_file.read_text()
    assert report.index("## Replicates") < report.index("## Across SAE seeds")


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread: SAE training gives the same result however many cores the machine has."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def planted_rows(n: int, generator: torch.Generator, atoms: torch.Tensor, planted: torch.Tensor) -> torch.Tensor:
    """``n`` rows of sparse sums of dictionary ``atoms`` (float[atoms, d_model]; each active on a tenth of the rows,
    strength 1-2) and a little noise; atom 0 is active exactly where ``planted`` is 1."""
    active = (torch.rand(n, len(atoms), generator=generator) < 0.1).float()
    active[:, 0] = planted
    strength = 1 + torch.rand(n, len(atoms), generator=generator)
    return (active * strength) @ atoms + 0.05 * torch.randn(n, atoms.shape[1], generator=generator)
