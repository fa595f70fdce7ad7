"""The gemma profile end to end on stand-ins for the hub's files (``pva-rehearse``): google/gemma-2-2b's
interface, GemmaScope through SAELens's own loader, the real MBPP through the ``datasets`` cache; every asset
materialized by Dagster in a fresh process whose HF_HOME is the stand-ins' cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pva_dagster.cli.rehearse import SAE_LAYERS, TASK_IDS, rehearsal_environment
from pva_dagster.profiles import load_profile
from pva_dagster.rehearsal.small_runs import SHORT_STEERING_COEFFICIENTS
from pva_dagster.study import outputs
from pva_dagster.study.layout import DataLayout
from tests.helpers import (
    check_phase0,
    check_phase1,
    check_phase2_scores_and_duckdb_recount,
    check_phase3_classification,
    check_phase3_steering,
)

pytestmark = pytest.mark.slow
MBPP = Path(__file__).resolve().parents[1].parent / "shared/mbpp/mbpp.jsonl"
N_BLOCKS, D_MODEL, D_SAE = 26, 2304, 16384
FIRST_RANGE = "0000-0049"  # the gemma profile's first task range: MBPP tasks 11-34 fall in it

# Run in the rehearsal's environment: loads what the run loaded, through the gemma profile's own resources.
INSPECT = """
import json, sys
import numpy as np, pandas as pd, torch
from pva_dagster.profiles import load_profile
from pva_dagster.study.layout import DataLayout

layout, layers = DataLayout(sys.argv[1]), json.loads(sys.argv[2])
resources = load_profile("gemma").resources
out = {"saes": {}}
for layer in layers:
    sae = resources["sae_source"].load(layer, layout, "cpu")
    out["saes"][layer] = {"class": type(sae).__name__, "hook": sae.cfg.metadata.hook_name,
                          "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae}
    np.save(f"{sys.argv[3]}/W_enc_{layer}.npy", sae.W_enc.detach().numpy())
    for key in resources["sae_source"].variant_seeds(layout):
        variant = resources["sae_source"].load_variant(layer, key, layout, "cpu")
        np.save(f"{sys.argv[3]}/W_enc_{layer}_variant{key}.npy", variant.W_enc.detach().numpy())
model, tokenizer = resources["language_model"].load(layout, "cpu")
out["model"] = {"class": type(model).__name__, "dtype": str(model.dtype), "blocks": len(model.model.layers)}
record = pd.read_parquet(sys.argv[4]).iloc[0]
with torch.no_grad():
    hidden = model(**tokenizer(record.prompt, return_tensors="pt"), output_hidden_states=True).hidden_states
out["task_id"] = int(record.task_id)
np.save(f"{sys.argv[3]}/hidden.npy", torch.stack([h[0, -1] for h in hidden]).float().numpy())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    if not MBPP.is_file():
        pytest.skip(f"the rehearsal runs on the real MBPP, absent at {MBPP}")
    workdir = tmp_path_factory.mktemp("rehearsal")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PVA_"))}
    run = subprocess.run(
        [sys.executable, "-m", "pva_dagster.cli.rehearse", "--workdir", str(workdir), "--mbpp", str(MBPP)],
        check=False, env=env, capture_output=True, text=True, timeout=1800,
    )
    summary = json.loads((workdir / "rehearsal.json").read_text()) if (workdir / "rehearsal.json").is_file() else {}
    assert run.returncode == 0, f"rehearsal failed: {summary.get('steps')}\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    layout = DataLayout(workdir / "data")
    inspect = subprocess.run(
        [sys.executable, "-c", INSPECT, str(layout.root), json.dumps(SAE_LAYERS), str(workdir),
         str(layout.phase1_0_dataset(FIRST_RANGE))],
        check=False, env={**env, **rehearsal_environment(workdir)}, capture_output=True, text=True, timeout=600,
    )
    assert inspect.returncode == 0, inspect.stderr[-6000:]
    return layout, summary, json.loads(inspect.stdout.strip().splitlines()[-1]), workdir


def test_every_run_succeeds(rehearsal):
    _, summary, _, _ = rehearsal
    assert summary["success"] and all(step["success"] for step in summary["steps"].values())
    steps = list(summary["steps"])
    assert steps[0] == "prepare" and steps[-1] == "analysis"


def test_phase0_files_and_splits_from_the_datasets_cache(rehearsal):
    layout, _, _, _ = rehearsal
    problems = pd.read_parquet(layout.table_file("mbpp_problems"))
    assert sorted(problems.task_id) == TASK_IDS  # google-research-datasets/mbpp "full", the stand-in's slice
    check_phase0(layout, TASK_IDS)


def test_phase1_labels_and_activations_of_every_block(rehearsal):
    layout, summary, _, _ = rehearsal
    check_phase1(layout, FIRST_RANGE, TASK_IDS, n_layers=N_BLOCKS, d_model=D_MODEL)
    records = pd.read_parquet(layout.phase1_0_dataset(FIRST_RANGE))
    # The stand-in writes one program for every prompt: exactly the problems whose solution it holds pass.
    assert set(records.task_id[records.passed]) == set(summary["planted_task_ids"])


def test_the_model_is_the_gemma2_standin_in_bfloat16(rehearsal):
    _, _, inspected, _ = rehearsal
    assert inspected["model"] == {"class": "Gemma2ForCausalLM", "dtype": "torch.bfloat16", "blocks": N_BLOCKS}


def test_saes_come_from_the_gemmascope_path_through_saelens(rehearsal):
    _, summary, inspected, workdir = rehearsal
    for layer in SAE_LAYERS:
        path = Path(summary["sae_files"][str(layer)])
        # Where SAELens's release table puts layer_{L}/width_16k/canonical: google/gemma-scope-2b-pt-res.
        assert "models--google--gemma-scope-2b-pt-res/snapshots/" in str(path)
        assert f"/layer_{layer}/width_16k/average_l0_" in str(path) and path.name == "params.npz"
        sae = inspected["saes"][str(layer)]
        assert sae == {
            "class": "JumpReLUSAE", "hook": f"blocks.{layer}.hook_resid_post", "d_in": D_MODEL, "d_sae": D_SAE
        }
        with np.load(path) as npz:
            assert np.array_equal(np.load(workdir / f"W_enc_{layer}.npy"), npz["W_enc"])


def test_the_selection_is_redone_on_gemmascopes_other_l0_levels(rehearsal):
    layout, summary, _, workdir = rehearsal
    source = load_profile("gemma").resources["sae_source"]
    labels = source.variant_labels(layout)
    for key, variant in zip(source.variant_seeds(layout), source.variants, strict=True):
        for layer in SAE_LAYERS:  # the variant loaded is the file the stand-ins put at the id SAELens resolves
            path = summary["variant_files"][variant.resolved().sae_id_at(layer)]
            with np.load(path) as npz:
                assert np.array_equal(np.load(workdir / f"W_enc_{layer}_variant{key}.npy"), npz["W_enc"])
    frequency = pd.read_parquet(layout.general_text_frequency_file)  # each variant's own general-text filter
    assert set(frequency.seed) == {load_profile("gemma").resources["study_design"].seed, *labels}
    assert sorted(frequency.groupby("seed").layer.unique().map(sorted).map(tuple).unique()) == [tuple(SAE_LAYERS)]
    # The rehearsal's 24 problems leave a split without both labels, so no selection is made, on any SAE; the
    # tables say so (the selection on named variants: test_sae_seed_replicates.py).
    quality = pd.read_parquet(layout.phase3_table(outputs.SAE_SEED_QUALITY))
    readouts = pd.read_parquet(layout.phase3_table(outputs.REPLICATE_SUMMARY))
    if quality.empty:
        assert quality.attrs["note"].startswith("readouts not computed:") and readouts.empty
    else:
        expected = sorted((key, layer) for key in labels for layer in SAE_LAYERS)
        assert sorted(zip(quality.seed, quality.layer, strict=True)) == expected
        assert dict(zip(quality.seed, quality.variant, strict=True)) == labels


def test_activations_are_the_output_of_block_L(rehearsal):
    layout, _, inspected, workdir = rehearsal
    hidden = np.load(workdir / "hidden.npy")  # [embeddings + 26 blocks, d_model]: hidden[L + 1] = block L's output
    records = pd.read_parquet(layout.phase1_0_dataset(FIRST_RANGE)).set_index("task_id")
    files = records.loc[inspected["task_id"], "activation_files"]
    for layer in SAE_LAYERS:
        with np.load(files[layer]) as npz:
            stored = npz["residual"]
        distance = {offset: np.linalg.norm(stored - hidden[layer + offset]) for offset in (0, 1, 2)}
        assert distance[1] < 0.2 * min(distance[0], distance[2]), distance
        assert distance[1] < 0.02 * np.linalg.norm(stored), distance


def test_phase2_scores_are_gemmascope_jumprelu_of_the_stored_residuals(rehearsal):
    layout, summary, _, _ = rehearsal
    scores = pd.read_parquet(layout.phase2_table("sae", "separation_scores"))
    assert scores.s_correct.between(-1, 1).all() and scores.s_incorrect.between(-1, 1).all()
    sae_tasks = set(pd.read_parquet(layout.split_file("sae")).task_id)
    records = pd.read_parquet(layout.phase1_0_dataset(FIRST_RANGE))
    records = records[records.task_id.isin(sae_tasks)]
    for layer in SAE_LAYERS:
        residuals = np.stack([np.load(files[layer])["residual"] for files in records.activation_files])
        with np.load(summary["sae_files"][str(layer)]) as npz:  # JumpReLU by hand, from the GemmaScope file
            active = residuals @ npz["W_enc"] + npz["b_enc"] > npz["threshold"]
        passed = records.passed.to_numpy()
        ours = scores[(scores.layer == layer) & (scores.group == "pooled")].sort_values("latent")
        f_correct = active[passed].mean(0)
        assert np.mean(np.isclose(ours.f_correct.to_numpy(), f_correct)) > 0.999


def test_phase2_best_latent_counts_match_an_independent_duckdb_recount(rehearsal):
    check_phase2_scores_and_duckdb_recount(rehearsal[0], FIRST_RANGE)


def test_phase3_classification_has_intervals_and_flags(rehearsal):
    check_phase3_classification(rehearsal[0])


def test_phase3_steering_chooses_on_hyperparams_and_reports_validation_once(rehearsal):
    check_phase3_steering(rehearsal[0], set(SHORT_STEERING_COEFFICIENTS))
