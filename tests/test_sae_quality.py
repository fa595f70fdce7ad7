"""The SAE quality table on hand-built SAELens SAEs whose answers are known: one that can represent only the
mean residual, one that represents every direction, and a hand-built firing pattern."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

from pva_dagster.rehearsal.small_runs import FIRST_RANGE, materialize, small_design, small_profile, write_problems
from pva_dagster.resources.data_store import DataStore
from pva_dagster.resources.parquet_io import ParquetIOManager
from pva_dagster.resources.sae_source import LocalSAEs
from pva_dagster.study import outputs, storage
from pva_dagster.study.analysis.sae import save_sae
from pva_dagster.study.analysis.sae_quality import (
    BETWEEN_TASK_FVU_WARNING,
    EVERY_TASK,
    HELD_OUT,
    layer_quality,
    quality_table_of,
    quality_warnings,
    read_spliced_loss,
    sae_quality_table,
    separation_tables,
    with_spliced_loss,
)
from pva_dagster.study.evaluation.report import sae_quality_section
from pva_dagster.study.layout import DataLayout

D_MODEL, TASKS = 16, 40


def _with_weights(sae, w_enc: np.ndarray, w_dec: np.ndarray):
    """``sae`` with encoder ``[d_in, d_sae]`` and decoder ``[d_sae, d_in]`` set, both biases zero."""
    with torch.no_grad():
        sae.W_enc.copy_(torch.as_tensor(w_enc, dtype=torch.float32))
        sae.W_dec.copy_(torch.as_tensor(w_dec, dtype=torch.float32))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def mean_only_sae(mean: np.ndarray, d_sae: int = 8):
    """A TopK SAE (k=1) whose one live latent reads and writes the mean direction; the others are all zero."""
    unit = mean / np.linalg.norm(mean)
    w_enc, w_dec = np.zeros((D_MODEL, d_sae)), np.zeros((d_sae, D_MODEL))
    w_enc[:, 0], w_dec[0] = unit, unit
    sae = TopKSAE(TopKSAEConfig(d_in=D_MODEL, d_sae=d_sae, k=1, dtype="float32", device="cpu"))
    return _with_weights(sae, w_enc, w_dec)


def signed_identity_sae(d_in: int = D_MODEL):
    """A ReLU SAE with latents +e_i and -e_i: it reconstructs every residual exactly; latent i fires where
    x_i > 0, latent d_in + i where x_i < 0."""
    eye = np.eye(d_in)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=2 * d_in, dtype="float32", device="cpu"))
    return _with_weights(sae, np.hstack([eye, -eye]), np.vstack([eye, -eye]))


def planted(tasks: int = TASKS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Residuals ``[tasks, D_MODEL]``: a large shared mean plus centred variation orthogonal to it (about 1 % of
    the energy), as the last prompt token's residual looks across tasks."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=D_MODEL)
    mean *= 10 / np.linalg.norm(mean)
    variation = rng.normal(size=(tasks, D_MODEL))
    variation -= np.outer(variation @ mean, mean) / (mean @ mean)
    variation -= variation.mean(axis=0)
    return (mean + 0.3 * variation).astype(np.float32), mean


def test_an_sae_that_represents_only_the_mean_loses_all_between_task_variation_and_warns():
    residuals, mean = planted()
    row = layer_quality(residuals, mean_only_sae(mean), layer=3)
    assert row["fvu_between_tasks"] == pytest.approx(1.0, abs=1e-3)
    # It keeps the shared part, so the usual uncentred FVU looks excellent: exactly the between-task share.
    assert row["fvu"] == pytest.approx(row["between_task_share"], rel=1e-3) and row["fvu"] < 0.02
    assert (row["latents_fired"], row["dead_on_study_prompts"], row["d_sae"], row["tasks"]) == (1, 7, 8, TASKS)
    assert row["mean_l0"] == 1.0
    [warning] = quality_warnings(pd.DataFrame([row]))
    # Exactly 1 up to rounding, so either side of it: the sentence names the layer and the error's size.
    assert warning.startswith("Layer 3: the SAE's reconstruction error is") and "variation between tasks" in warning
    assert "1 of its 8 latents fire" in warning


def test_an_sae_covering_the_varying_directions_keeps_them_and_does_not_warn():
    residuals, _ = planted()
    row = layer_quality(residuals, signed_identity_sae(), layer=5)
    assert row["fvu_between_tasks"] < 1e-6 and row["fvu"] < 1e-8
    assert quality_warnings(pd.DataFrame([row])) == []


def test_fired_and_dead_latents_and_l0_follow_a_hand_built_pattern():
    residuals = np.zeros((3, 6), dtype=np.float32)
    residuals[0, 0] = 1  # latent 0
    residuals[1, 1] = -2  # latent 6 + 1
    residuals[2, 0], residuals[2, 4] = 3, 5  # latents 0 and 4
    row = layer_quality(residuals, signed_identity_sae(6), layer=2)
    assert (row["latents_fired"], row["dead_on_study_prompts"], row["d_sae"]) == (3, 9, 12)
    assert row["mean_l0"] == pytest.approx(4 / 3)
    x = residuals.astype(np.float64)
    share = np.square(x - x.mean(0)).sum() / np.square(x).sum()
    assert row["between_task_share"] == pytest.approx(share) and row["fvu"] == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_residuals_raise_naming_the_layer(bad):
    residuals, mean = planted()
    residuals[4, 2] = bad
    with pytest.raises(ValueError, match=r"layer 7: 1 of 40 tasks' residuals hold non-finite values \(rows \[4\]\)"):
        layer_quality(residuals, mean_only_sae(mean), layer=7)


def test_no_tasks_raise_naming_the_layer():
    with pytest.raises(ValueError, match="layer 4: residuals must be"):
        layer_quality(np.zeros((0, D_MODEL), np.float32), signed_identity_sae(), layer=4)


def test_residuals_that_do_not_vary_are_not_estimable_and_say_so():
    residuals, mean = planted()
    row = layer_quality(residuals[:1], mean_only_sae(mean), layer=1)
    assert np.isnan(row["fvu_between_tasks"]) and row["between_task_share"] == 0.0
    [warning] = quality_warnings(pd.DataFrame([row]))
    assert "not estimable" in warning and "1 tasks" in warning


def test_the_warning_starts_at_the_stated_threshold():
    base = {"layer": 9, "tasks": 10, "d_sae": 8, "fvu": 0.1, "between_task_share": 0.1, "mean_l0": 1.0,
            "latents_fired": 2, "dead_on_study_prompts": 6}
    below, at = BETWEEN_TASK_FVU_WARNING - 0.01, BETWEEN_TASK_FVU_WARNING
    table = pd.DataFrame([
        {**base, "fvu_between_tasks": below}, {**base, "layer": 10, "fvu_between_tasks": at},
        {**base, "layer": 11, "fvu_between_tasks": 7.5},
    ])
    at_limit, above_one = quality_warnings(table)
    assert at_limit.startswith("Layer 10:") and "may miss much of what differs between tasks" in at_limit
    assert above_one.startswith("Layer 11: the SAE's reconstruction error is 7.5 times the variation between tasks")
    assert "need not represent any of what differs between tasks" in above_one


def test_the_table_reads_each_layers_activation_files(tmp_path):
    residuals, mean = planted()
    rows = []
    for layer in (2, 4):
        for task, x in enumerate(residuals):
            file = tmp_path / f"{task}_layer_{layer}.npz"
            np.savez(file, residual=x if layer == 2 else -x)
            rows.append({"task_id": task, "layer": layer, "file": str(file)})
    index = pd.DataFrame(rows)
    saes = {2: mean_only_sae(mean), 4: signed_identity_sae()}
    logged: list[str] = []
    table = sae_quality_table(index, [2, 4], saes.__getitem__, logged.append)
    assert table.layer.tolist() == [2, 4] and table.tasks.tolist() == [TASKS, TASKS]
    assert table.fvu_between_tasks.iloc[0] == pytest.approx(1.0, abs=1e-3) and table.fvu_between_tasks.iloc[1] < 1e-6
    assert len(logged) == 2 and logged[0].startswith("SAE quality, layer 2, every task: 40 tasks")
    # A held-out row per layer over the named tasks alone, which the warnings then read.
    held = sae_quality_table(index, [2, 4], saes.__getitem__, logged.append, held_out=range(10))
    assert held.prompts.tolist() == [EVERY_TASK, HELD_OUT] * 2 and held.tasks.tolist() == [TASKS, 10] * 2
    assert len(quality_warnings(held)) == 1 and "10 study prompts" in quality_warnings(held)[0]
    with pytest.raises(ValueError, match="layer 2: several Phase 1.0 rows share a task"):
        sae_quality_table(pd.concat([index, index.head(1)]), [2], saes.__getitem__, logged.append)
    with pytest.raises(ValueError, match="layer 3: no Phase 1.0 activations"):
        sae_quality_table(index, [3], saes.__getitem__, logged.append)


def test_the_report_section_shows_the_table_and_the_warnings():
    residuals, mean = planted()
    table = pd.DataFrame([layer_quality(residuals, mean_only_sae(mean), 3),
                          layer_quality(residuals, signed_identity_sae(), 5)])
    title, _, markdown, *sentences = sae_quality_section(table)
    assert title == "## SAE quality on the study's own residuals"
    assert "fvu_between_tasks" in markdown and markdown.count("\n") == 3  # header, rule, two layers
    assert len(sentences) == 1 and sentences[0].startswith("Layer 3:")
    [verdict] = sae_quality_section(table[table.layer == 5])[3:]
    assert verdict.startswith("No layer's SAE loses 50%")


def test_phase2_stores_the_quality_table_beside_its_split_tables(tmp_path):
    """The IO manager writes ``sae_quality`` to its own file and reads it back with the split tables; the
    consumers of the separation scores see the splits only."""
    manager = ParquetIOManager(store=DataStore(root=str(tmp_path)))
    scores, quality = pd.DataFrame({"latent": [0, 1]}), pd.DataFrame({"layer": [3], "fvu": [0.1]})
    manager.handle_output(
        dg.build_output_context(asset_key=dg.AssetKey(outputs.SEPARATION_SCORES)),
        {"sae": scores, outputs.SAE_QUALITY_TABLE: quality},
    )
    layout = DataStore(root=str(tmp_path)).layout
    assert layout.sae_quality_file.is_file() and layout.phase2_table("sae", outputs.SCORES_TABLE).is_file()
    loaded = manager.load_input(dg.build_input_context(asset_key=dg.AssetKey(outputs.SEPARATION_SCORES)))
    pd.testing.assert_frame_equal(quality_table_of(loaded), quality)
    assert list(separation_tables(loaded)) == ["sae"]
    with pytest.raises(ValueError, match="re-materialize phase2"):
        quality_table_of(separation_tables(loaded))


def test_phase2_materializes_the_quality_table_over_every_phase1_0_task(tmp_path):
    """phase2 in process on a hand-made Phase 1.0 partition and two local SAELens SAEs: its value holds the
    quality table (one row per SAE layer, every task), stored in its file and shown, with the warning, in the
    materialization's metadata."""
    layers, task_ids = small_design().sae_layers, list(range(1, 13))
    profile = small_profile(
        tmp_path, write_problems(tmp_path / "problems.jsonl", task_ids),
        sae_source=LocalSAEs(folder=str(tmp_path / "saes" / "layer_{layer}")),
    )
    layout = DataLayout(tmp_path / "data")
    residuals, mean = planted(len(task_ids))
    saes = {layers[0]: mean_only_sae(mean), layers[1]: signed_identity_sae()}
    for layer, sae in saes.items():
        sae.cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
        save_sae(sae, tmp_path / "saes" / f"layer_{layer}")
    files = []
    for task in task_ids:
        files.append([])
        for layer in layers:
            path = layout.phase1_0_activation("correct" if task % 2 == 0 else "incorrect", task, layer)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, residual=residuals[task - 1])
            files[-1].append(str(path))
    records = pd.DataFrame({
        "task_id": task_ids, "sample": 0, "temperature": 0.0, "passed": [t % 2 == 0 for t in task_ids],
        "label": ["correct" if t % 2 == 0 else "incorrect" for t in task_ids],
        "layers": [layers] * len(task_ids), "activation_files": files,
    })
    storage.write_parquet(layout.phase1_0_dataset(FIRST_RANGE), records)
    splits = pd.DataFrame({"task_id": task_ids, "split": "sae"})
    storage.write_parquet(layout.table_file(outputs.PROBLEM_SPLITS), splits)
    # sae_weights' spliced next-token loss (it needs the model, which this test does not load): joined by layer.
    loss = pd.DataFrame({"layer": layers, "loss_clean": 1.0, "loss_spliced": [1.5, 1.2], "loss_zero_ablated": 6.0,
                         "loss_recovered": [0.9, 0.96]})  # fmt: skip
    storage.write_parquet(layout.sae_spliced_loss_file, loss)
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=outputs.PHASE1_0_SOLUTIONS, partition=FIRST_RANGE)
    )
    result = materialize(
        profile, [outputs.SEPARATION_SCORES], instance=instance,
        run_config={"ops": {outputs.SEPARATION_SCORES: {"config": {"splits": ["sae"]}}}},
    )
    assert result.success
    quality = pd.read_parquet(layout.sae_quality_file)
    assert quality.layer.tolist() == layers and (quality.tasks == len(task_ids)).all()
    assert quality.fvu_between_tasks.iloc[0] == pytest.approx(1.0, abs=1e-3)
    assert quality.fvu_between_tasks.iloc[1] < 1e-6
    assert quality.loss_recovered.tolist() == [0.9, 0.96]
    [event] = result.asset_materializations_for_node(outputs.SEPARATION_SCORES)
    shown = event.metadata["SAE quality (every Phase 1.0 task; validation held out)"].value
    assert "fvu_between_tasks" in shown and f"Layer {layers[0]}: the SAE's reconstruction error is" in shown
    assert f"Layer {layers[1]}:" not in shown


def test_the_spliced_loss_joins_by_layer_and_its_absence_says_what_to_rerun(tmp_path):
    quality = pd.DataFrame({"layer": [6, 6, 12], "prompts": [EVERY_TASK, HELD_OUT, EVERY_TASK]})
    loss = pd.DataFrame({"layer": [6, 12], "loss_clean": 1.0, "loss_spliced": [1.2, 1.4], "loss_zero_ablated": 5.0,
                         "loss_recovered": [0.95, 0.9]})  # fmt: skip
    joined = with_spliced_loss(quality, loss)
    assert joined.loss_recovered.tolist() == [0.95, 0.95, 0.9] and len(joined) == 3
    with pytest.raises(ValueError, match=r"layers \[12\]: re-materialize sae_weights"):
        with_spliced_loss(quality, loss[loss.layer == 6])
    with pytest.raises(FileNotFoundError, match="re-materialize sae_weights"):
        read_spliced_loss(tmp_path / "spliced_loss.parquet")
