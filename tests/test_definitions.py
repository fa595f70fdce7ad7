"""The Definitions load in both profiles; the gemma profile differs only in resource values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import dagster as dg
import pytest

from pva_dagster.definitions import build_definitions
from pva_dagster.jobs import JOB_ORDER
from pva_dagster.profiles import PROFILES, load_profile
from pva_dagster.resources import (
    EmbeddedModel,
    EmbeddedSAEs,
    HubModel,
    HubProblems,
    LanguageModel,
    PretrainedSAEs,
    ProblemSource,
    SAESource,
)

ROOT = Path(__file__).resolve().parents[1]
PHASE_ASSETS = {
    "mbpp_problems", "difficulty_mapping", "extended_tests", "problem_splits", "phase1_0_solutions",
    "phase1_2_solutions",
    "general_text_frequency", "phase2", "top_latents", "phase3_classification", "phase3_steering_coefficients",
    "phase3_steering", "phase3_report", "phase3_readouts", "general_text_cutoffs", "sae_seed_replicates",
}


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    """What `dagster dev` loads with the default profile (Dask left off)."""
    return build_definitions(load_profile("embedded"), environ={})


def test_definitions_have_every_phase_and_check(defs):
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert PHASE_ASSETS <= keys
    assert len(list(graph.asset_check_keys)) == 2


def test_pva_study_resolves_its_jobs_without_a_warning(defs):
    """`make run` (pva-study) prints no Dagster warning when it looks its jobs up."""
    from pva_dagster.cli.run_study import jobs_in_order

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jobs = jobs_in_order(defs)
    assert [job.name for job in jobs] == JOB_ORDER
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []


def test_phase2_star_selects_only_unpartitioned_assets(defs):
    """`dagster asset materialize --select 'phase2*'` needs one partitions definition for the whole selection."""
    graph = defs.resolve_asset_graph()
    selected = dg.AssetSelection.from_string("phase2*").resolve(graph)
    assert {k.to_user_string() for k in selected} == {
        "phase2", "top_latents", "phase3_classification", "phase3_steering_coefficients", "phase3_steering",
        "phase3_report", "phase3_readouts", "general_text_cutoffs", "sae_seed_replicates",
    }
    assert all(graph.get(key).partitions_def is None for key in selected)


# What each resource key is, whichever variant a profile binds (assets take these base types).
RESOURCE_KINDS = {"language_model": LanguageModel, "sae_source": SAESource, "problem_source": ProblemSource}


def test_gemma_profile_binds_the_hub_variants_with_the_real_study_values(monkeypatch):
    monkeypatch.delenv("PVA_MODEL_DTYPE", raising=False)  # the profiles' own dtypes, not a user's override
    embedded, gemma = load_profile("embedded"), load_profile("gemma")
    assert embedded.resources.keys() == gemma.resources.keys()
    for name in embedded.resources:
        kind = RESOURCE_KINDS.get(name, type(embedded.resources[name]))
        assert isinstance(embedded.resources[name], kind) and isinstance(gemma.resources[name], kind), name
    model, saes = gemma.resources["language_model"], gemma.resources["sae_source"]
    assert isinstance(model, HubModel) and (model.model_id, model.dtype) == ("google/gemma-2-2b", "bfloat16")
    assert isinstance(saes, PretrainedSAEs) and (saes.release, saes.sae_id.format(layer=12)) == (
        "gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical"
    )
    assert isinstance(gemma.resources["problem_source"], HubProblems)
    assert (gemma.design.max_new_tokens, embedded.design.max_new_tokens) == (800, 128)
    assert isinstance(embedded.resources["language_model"], EmbeddedModel)
    assert isinstance(embedded.resources["sae_source"], EmbeddedSAEs)
    # Steering: every problem, the small-magnitude grid in both profiles, the study's own grid beside
    # it, several controls and the rank test's 19 random directions in the study.
    for design in (embedded.design, gemma.design):
        assert design.steering_max_tasks is None and design.steering_controls >= 1
        assert {0.05, 0.1, 0.2} <= set(design.steering_coefficients)
    assert {0.02, 0.5} <= set(gemma.design.steering_coefficients) and gemma.design.steering_controls >= 2
    assert {-1.0, 0.25, 1.0} <= set(gemma.design.steering_coefficients)
    assert gemma.design.steering_random_directions >= 19


def test_a_design_without_a_positive_steering_coefficient_is_refused():
    embedded = load_profile("embedded")
    with pytest.raises(ValueError, match="need a positive value"):
        embedded.with_design(steering_coefficients=[-0.5, -0.1])
    with pytest.raises(ValueError, match="steering_random_directions"):
        embedded.with_design(steering_random_directions=-1)


def test_unknown_profile_is_named():
    with pytest.raises(ValueError, match="nope"):
        load_profile("nope")
    assert set(PROFILES) == {"embedded", "gemma"}


@pytest.mark.parametrize("profile", ["embedded", "gemma"])
def test_dagster_cli_validates_the_definitions(profile):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate"],
        cwd=ROOT, env={**os.environ, "PVA_PROFILE": profile}, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "All code locations passed validation" in result.stderr + result.stdout


def test_a_bad_choice_in_config_fails_at_launch_before_any_step(defs):
    """A coefficient mode is checked when the run is launched, not after Phase 2 and a model load."""
    with pytest.raises(dg.DagsterInvalidConfigError, match="coefficient_mode"):
        dg.materialize(
            list(defs.assets), selection="phase3_steering_coefficients", resources=defs.resources,
            run_config={"ops": {"phase3_steering_coefficients": {"config": {"coefficient_mode": "percent"}}}},
        )


def test_sae_training_settings_are_asset_config_with_the_plans_defaults():
    from pva_dagster.assets.weights import SAETrainingConfig
    from pva_dagster.study.analysis.embedded_saes import SAETrainingPlan

    assert SAETrainingConfig().plan(seed=7) == SAETrainingPlan(seed=7)
    assert not {"d_sae", "k", "corpus_tokens", "training_tokens"} & set(EmbeddedSAEs.model_fields)


def _dg(*args: str) -> subprocess.CompletedProcess[str]:
    """This environment's `dg`, typed in the project root after `source .venv/bin/activate`."""
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix}
    return subprocess.run([str(Path(sys.executable).with_name("dg")), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip


def test_dg_check_defs_and_list_defs_find_every_phase():
    checked = _dg("check", "defs")
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = _dg("list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    found = json.loads(listed.stdout)
    assert PHASE_ASSETS <= {asset["asset_key"] for asset in found["assets"]}
    assert {job["name"] for job in found["jobs"]} == set(JOB_ORDER)
    assert len(found["asset_checks"]) == 2


def test_the_former_profile_name_still_loads_with_a_warning(monkeypatch):
    monkeypatch.setenv("PVA_PROFILE", "study")
    with pytest.warns(FutureWarning, match="now called 'gemma'"):
        assert load_profile().name == "gemma"
