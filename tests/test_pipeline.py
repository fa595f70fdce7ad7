"""End to end on the embedded default: every phase materializes in-process with Dagster on real code paths
(the SmolLM2 forward passes, the sandbox subprocesses, SAELens training and DuckDB queries)."""

from __future__ import annotations

import dagster as dg
import pytest

from pva_dagster.study.domain import SHORT_STEERING_COEFFICIENTS
from pva_dagster.study.layout import DataLayout
from tests.helpers import (
    FIRST_RANGE,
    SMALL_SAE_TRAINING,
    check_phase0,
    check_phase1,
    check_phase2_scores_and_duckdb_recount,
    check_phase3_classification,
    check_phase3_steering,
    link_embedded_model,
    materialize,
    small_resources,
    write_problems,
)

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
            run_config=SMALL_SAE_TRAINING,
        ),
        "phase1_0": materialize(resources, "phase1_0_solutions", partition=FIRST_RANGE),
        "phase1_2": materialize(
            resources,
            "phase1_2_solutions",
            partition=dg.MultiPartitionKey({"temperature": "0.3", "task_range": FIRST_RANGE}),
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
    check_phase0(pipeline[0], list(range(1, 25)))


def test_phase1_labels_and_activations(pipeline):
    check_phase1(pipeline[0], FIRST_RANGE, list(range(1, 25)), n_layers=30, d_model=576)


def test_phase2_scores_and_an_independent_duckdb_recount(pipeline):
    check_phase2_scores_and_duckdb_recount(pipeline[0], FIRST_RANGE)


def test_phase3_classification_has_intervals_and_flags(pipeline):
    check_phase3_classification(pipeline[0])


def test_phase3_steering_chooses_on_hyperparams_and_reports_validation_once(pipeline):
    check_phase3_steering(pipeline[0], set(SHORT_STEERING_COEFFICIENTS))
