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
        resources, "phase2*", run_config={"ops": {"phase2": {"config": {"general_tokens": 2000}}}}
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


def test_phase3_metrics_in_range_and_coefficient_zero_is_unsteered(pipeline):
    layout, _, _ = pipeline
    classification = pd.read_parquet(layout.phase3_dir() / "classification.parquet")
    for column in ("f1", "precision", "recall"):
        assert classification[column].between(0, 1).all()
    assert classification.auroc.dropna().between(0, 1).all()
    effects = pd.read_parquet(layout.phase3_dir() / "steering_effects.parquet")
    at_zero = effects[effects.coefficient == 0.0]
    assert (at_zero.identical_completions == at_zero.n_tasks).all(), "coefficient 0 must reproduce Phase 1.0"
    assert (layout.phase3_dir() / "report.md").read_text().startswith("# Does the model know")
