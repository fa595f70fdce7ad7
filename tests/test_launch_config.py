"""A run config that sets one field of a resource (``--config-json``, the launchpad) keeps every other value the
profile set: the fields Dagster fills in are the profile's, not the class defaults."""

from __future__ import annotations

import dagster as dg
from dagster._core.system_config.objects import ResolvedRunConfig

from pva_dagster.definitions import build_definitions
from pva_dagster.profiles import load_profile
from pva_dagster.resources import DevicePool, PretrainedSAEs, Sandbox, StudyDesign


@dg.asset
def resource_values(study_design: StudyDesign, sandbox: Sandbox, device_pool: DevicePool) -> dict:
    """What a step receives, to compare with the profile."""
    return {"study_design": study_design.model_dump(), "sandbox": sandbox.model_dump(),
            "device_pool": device_pool.model_dump()}


def _one_field_changed(profile_name: str) -> tuple[dict, dict]:
    profile = load_profile(profile_name)
    defs = build_definitions(profile, environ={})
    run_config = {"resources": {
        "study_design": {"config": {"seed": 7}},
        "sandbox": {"config": {"wall_time_s": 3.5}},
        "device_pool": {"config": {"poll_seconds": 0.25}},
    }}
    result = dg.materialize(
        [resource_values], resources={**defs.resources, "io_manager": dg.mem_io_manager}, run_config=run_config
    )
    expected = {
        "study_design": {**profile.design.model_dump(), "seed": 7},
        "sandbox": {**profile.resources["sandbox"].model_dump(), "wall_time_s": 3.5},
        "device_pool": {**profile.resources["device_pool"].model_dump(), "poll_seconds": 0.25},
    }
    return result.output_for_node("resource_values"), expected


def test_one_field_from_the_run_config_keeps_the_embedded_profiles_other_values():
    received, expected = _one_field_changed("embedded")
    assert received == expected
    # The values that differ from the class defaults are the ones a whole-block replacement would lose.
    design = received["study_design"]
    assert (design["max_task_id"], design["task_range_size"], design["max_new_tokens"]) == (200, 101, 128)
    assert design["sae_layers"] == [6, 12, 18, 24] != StudyDesign().sae_layers
    assert received["sandbox"]["isolation"] == "warn" != Sandbox().isolation


def test_one_field_from_the_run_config_keeps_the_gemma_profiles_other_values():
    received, expected = _one_field_changed("gemma")
    assert received == expected
    assert received["study_design"]["sae_layers"] == list(range(26))
    assert received["sandbox"]["isolation"] == "required"


@dg.asset
def sae_source_values(sae_source: PretrainedSAEs) -> dict:
    """The SAE source a step receives, with each variant as the type the resource declares."""
    return {**sae_source.model_dump(), "variant_types": [type(v).__name__ for v in sae_source.variants]}


def test_one_field_of_the_gemma_sae_source_keeps_its_variants():
    profile = load_profile("gemma")
    defs = build_definitions(profile, environ={})
    changed = {"resources": {"sae_source": {"config": {"sae_id": "layer_{layer}/width_65k/canonical"}}}}
    runs = (({}, profile.resources["sae_source"].sae_id), (changed, "layer_{layer}/width_65k/canonical"))
    for run_config, sae_id in runs:
        resources = {**defs.resources, "io_manager": dg.mem_io_manager}
        result = dg.materialize([sae_source_values], resources=resources, run_config=run_config)
        received = result.output_for_node("sae_source_values")
        assert received == {
            **profile.resources["sae_source"].model_dump(), "sae_id": sae_id,
            "variant_types": ["PretrainedVariant", "PretrainedVariant"],
        }


def test_a_jobs_launch_config_resolves_to_the_profile_with_one_field_changed():
    """What `dagster asset materialize --config-json` and the launchpad resolve for a job of the real Definitions."""
    profile = load_profile("embedded")
    job = build_definitions(profile, environ={}).resolve_job_def("phase1_0")
    changed = ResolvedRunConfig.build(job, {"resources": {"study_design": {"config": {"max_new_tokens": 32}}}})
    assert changed.resources["study_design"].config == {**profile.design.model_dump(), "max_new_tokens": 32}
    # With no run config (the launchpad's scaffold), the profile's values.
    assert ResolvedRunConfig.build(job, {}).resources["study_design"].config == profile.design.model_dump()
