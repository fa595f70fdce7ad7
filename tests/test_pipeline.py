"""End to end on the embedded default: every phase materializes in-process with Dagster on real code paths
(the SmolLM2 forward passes, the sandbox subprocesses, SAELens training and DuckDB queries)."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from pva_dagster.study.isolation import probe
from pva_dagster.study.layout import DataLayout
from tests.helpers import FIRST_RANGE, link_embedded_model, materialize, small_resources, write_problems

# Embedded problems the model mostly gets right (one-liners) and mostly wrong (loops, branches), renumbered
# 1..24 so that they form one task range; both labels are needed for Phases 2 and 3.
SOURCE_IDS = [*range(1, 13), *range(60, 72)]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, embedded_model_dir):
    tmp = tmp_path_factory.mktemp("pipeline")
    resources = small_resources(tmp, write_problems(tmp / "problems.jsonl", SOURCE_IDS))
    link_embedded_model(tmp / "data", embedded_model_dir)
    results = {
        "prepare": materialize(
            resources,
            ["mbpp_problems", "difficulty_mapping", "problem_splits", "language_model_weights", "sae_weights"],
        ),
        "phase1_0": materialize(resources, "phase1_0_solutions", partition=FIRST_RANGE),
        "phase1_2": materialize(
            resources, "phase1_2_solutions", partition=dg.MultiPartitionKey({"temperature": "0.3", "task_range": FIRST_RANGE})
        ),
    }
    results["analysis"] = materialize(
        resources, "phase2*", run_config={"ops": {"phase2": {"config": {"general_documents": 300}}}}
    )
    return DataLayout(tmp / "data"), resources, results


def test_every_run_succeeds(pipeline):
    _, _, results = pipeline
    assert all(result.success for result in results.values())


def test_phase0_files_and_splits(pipeline):
    layout, _, _ = pipeline
    difficulty = pd.read_parquet(layout.table_file("difficulty_mapping"))
    assert sorted(difficulty.task_id) == list(range(1, 25))
    sizes = {s: len(pd.read_parquet(layout.split_file(s))) for s in ("sae", "hyperparams", "validation")}
    assert sum(sizes.values()) == 24 and sizes["sae"] == 12
    assert json.loads(layout.split_metadata_file.read_text())["seed"] == 42


def test_phase1_labels_and_activations(pipeline):
    layout, _, _ = pipeline
    records = pd.read_parquet(layout.phase1_0_dataset(FIRST_RANGE))
    assert sorted(records.task_id) == list(range(1, 25))
    assert set(records.label) == {"correct", "incorrect"}, "both labels must occur on the embedded problems"
    n_layers = 30
    for row in records.itertuples():
        assert len(row.activation_files) == n_layers
        with np.load(row.activation_files[5]) as npz:
            assert npz["residual"].shape == (576,)
        assert f"/{row.label}/" in row.activation_files[5]
    metadata = json.loads(layout.metadata_for(layout.phase1_0_dataset(FIRST_RANGE)).read_text())
    assert metadata["sandbox_isolation"] == probe().level.value
    sampled = pd.read_parquet(layout.phase1_2_dataset(0.3, FIRST_RANGE))
    validation = pd.read_parquet(layout.split_file("validation")).task_id
    assert set(sampled.task_id) == set(validation)
    assert len(sampled) == 2 * len(validation) and not sampled.duplicated(["task_id", "sample"]).any()


def test_phase2_scores_and_an_independent_duckdb_recount(pipeline):
    layout, _, _ = pipeline
    scores = pd.read_parquet(layout.phase2_dir("sae") / "separation_scores.parquet")
    assert scores.s_correct.between(-1, 1).all() and scores.s_incorrect.between(-1, 1).all()
    top = json.loads((layout.phase2_dir("sae") / "top_latents.json").read_text())
    best = top["best"]["correct"]
    sae_tasks = pd.read_parquet(layout.split_file("sae")).task_id.tolist()
    recount = duckdb.sql(
        f"""SELECT passed, count(*) AS n FROM read_parquet('{layout.phase1_0_dataset(FIRST_RANGE)}')
            WHERE task_id IN ({",".join(map(str, sae_tasks))}) GROUP BY passed"""
    ).df().set_index("passed").n
    assert best["n_correct"] == recount[True] and best["n_incorrect"] == recount[False]


def test_phase3_classification_has_intervals_and_flags(pipeline):
    layout, _, _ = pipeline
    classification = pd.read_parquet(layout.phase3_dir() / "classification.parquet")
    for column in ("f1", "precision", "recall"):
        assert classification[column].between(0, 1).all()
    assert classification.auroc.dropna().between(0, 1).all()
    both = classification.dropna(subset=["auroc"])
    assert (both.auroc_ci_low <= both.auroc).all() and (both.auroc <= both.auroc_ci_high).all()
    assert classification.auroc_p_permutation.dropna().between(0, 1).all()
    assert classification.threshold_few_samples.all(), "a 24-problem run has fewer than 20 hyperparams samples"


def test_phase3_steering_chooses_on_hyperparams_and_reports_validation_once(pipeline):
    layout, _, _ = pipeline
    chosen = pd.read_parquet(layout.table_file("phase3_steering_coefficients")).set_index("direction")
    sweep = pd.read_parquet(layout.phase3_dir() / "steering_sweep_tests.parquet")
    assert set(sweep.split) == {"hyperparams"} and set(sweep.coefficient) <= {0.5, 1.0}
    assert set(chosen.coefficient) <= {0.5, 1.0}
    tests = pd.read_parquet(layout.phase3_dir() / "steering_tests.parquet")
    assert set(tests.split) == {"validation"}
    for row in tests.itertuples():  # only the chosen coefficient of each latent's direction ran on validation
        assert row.coefficient == chosen.coefficient[row.direction]
        assert row.ci_low <= row.rate <= row.ci_high and row.p_holm >= row.p_paired
    assert {"correction", "preservation", "corruption"} >= set(tests.experiment) and len(tests) >= 2
    effects = pd.read_parquet(layout.phase3_dir() / "steering_effects.parquet")
    assert set(effects.kind) == {"target", "control"} and (effects.split == "validation").all()
    # The unsteered rerun (the baseline every effect is measured against) labels the problems as Phase 1.0
    # did: batched greedy generation of this model was measured batch-invariant (shared notes).
    noise = pd.read_parquet(layout.phase3_dir() / "steering_noise.parquet")
    assert noise.n.sum() > 0 and noise.label_changed.sum() == 0
    report = (layout.phase3_dir() / "report.md").read_text()
    assert report.startswith("# Does the model know")
    assert "steering on the validation split (confirmatory)" in report and "Exploratory: coefficient sweep" in report
