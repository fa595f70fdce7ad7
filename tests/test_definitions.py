"""The Definitions load in both profiles; the study profile differs only in resource values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pva_dagster.profiles import PROFILES, load_profile

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_have_every_phase_and_check():
    from pva_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"mbpp_problems", "difficulty_mapping", "problem_splits", "phase1_0_solutions", "phase1_2_solutions",
            "general_text_frequency", "phase2", "top_latents", "phase3_classification", "phase3_steering_coefficients",
            "phase3_steering", "phase3_report"} <= keys
    assert len(list(graph.asset_check_keys)) == 2
    for job in ("prepare", "phase1_0", "phase1_2", "analysis"):
        defs.resolve_job_def(job)


def test_phase2_star_selects_only_unpartitioned_assets():
    """`dagster asset materialize --select 'phase2*'` needs one partitions definition for the whole selection."""
    from pva_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    selected = dg.AssetSelection.from_string("phase2*").resolve(graph)
    assert {k.to_user_string() for k in selected} == {
        "phase2", "top_latents", "phase3_classification", "phase3_steering_coefficients", "phase3_steering",
        "phase3_report",
    }
    assert all(graph.get(key).partitions_def is None for key in selected)


def test_study_profile_uses_the_same_resource_types_with_the_real_study_values():
    embedded, study = load_profile("embedded"), load_profile("study")
    assert embedded.resources.keys() == study.resources.keys()
    for name in embedded.resources:
        assert type(embedded.resources[name]) is type(study.resources[name]), name
    model, saes = study.resources["language_model"], study.resources["sae_source"]
    assert (model.source, model.name_or_path, model.max_new_tokens) == ("pretrained", "google/gemma-2-2b", 800)
    assert (saes.release, saes.sae_id.format(layer=12)) == (
        "gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical"
    )
    assert study.resources["problem_source"].source == "huggingface"
    assert len(study.task_range_partitions().get_partition_keys()) == 20  # 974 tasks, 50 a range


def test_unknown_profile_is_named():
    with pytest.raises(ValueError, match="nope"):
        load_profile("nope")
    assert set(PROFILES) == {"embedded", "study"}


@pytest.mark.parametrize("profile", ["embedded", "study"])
def test_dagster_cli_validates_the_definitions(profile):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate"],
        cwd=ROOT, env={**os.environ, "PVA_PROFILE": profile}, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "All code locations passed validation" in result.stderr + result.stdout
