"""End to end on the embedded default: every phase materializes in-process with Dagster on real code paths
(the SmolLM2 forward passes, the sandbox subprocesses, SAELens training and DuckDB queries).

The module runs in float32 and again in the default dtype where that is another (bfloat16 on a CPU that
computes it natively). Greedy tokens differ between the two, and bfloat16 tokens differ between CPUs and between
batch compositions, so nothing here asserts a particular label or latent: only what holds in either numerics,
plus, in float32 alone, that a task generated again alone reproduces its batched record."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from pva_dagster.definitions import build_definitions
from pva_dagster.profiles import Profile
from pva_dagster.rehearsal.small_runs import (
    FIRST_RANGE,
    PREPARE,
    SHORT_STEERING_COEFFICIENTS,
    SMALL_SAE_TRAINING,
    link_embedded_model,
    materialize,
    small_design,
    small_profile,
    write_problems,
)
from pva_dagster.resources import EmbeddedModel
from pva_dagster.study import storage
from pva_dagster.study.analysis.embedded_saes import SAETrainingPlan
from pva_dagster.study.generation.model_loading import AUTO_DTYPE, choose_dtype
from pva_dagster.study.layout import DataLayout
from tests.helpers import (
    check_phase0,
    check_phase1,
    check_phase2_scores_and_duckdb_recount,
    check_phase3_classification,
    check_phase3_readouts,
    check_phase3_steering,
    check_sae_seed_replicates,
)

# Embedded problems the model mostly gets right (one-liners) and mostly wrong (loops, branches), renumbered
# 1..24 so that they form one task range; both labels are needed for Phases 2 and 3.
SOURCE_IDS = [*range(1, 13), *range(60, 72)]


DEFAULT_DTYPE = choose_dtype(AUTO_DTYPE, "cpu")[0]


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def pipeline(request, tmp_path_factory, embedded_model_dir):
    dtype = request.param
    if dtype != "float32" and dtype != DEFAULT_DTYPE:
        pytest.skip(f"this CPU's default dtype is {DEFAULT_DTYPE}: {dtype} would be emulated")
    tmp = tmp_path_factory.mktemp(f"pipeline_{dtype}")
    instance = dg.DagsterInstance.ephemeral()  # one run history, as `dagster dev` keeps it: staleness is read from it
    model = EmbeddedModel(batch_size=8, dtype=dtype)
    profile = small_profile(tmp, write_problems(tmp / "problems.jsonl", SOURCE_IDS), language_model=model)
    link_embedded_model(tmp / "data", embedded_model_dir)
    general = {"ops": {"general_text_frequency": {"config": {"general_documents": 300}}}}
    sampled = dg.MultiPartitionKey({"temperature": "0.3", "task_range": FIRST_RANGE})
    results = {
        "prepare": materialize(
            profile, PREPARE, run_config={"ops": {**SMALL_SAE_TRAINING["ops"], **general["ops"]}}, instance=instance
        ),
        "phase1_0": materialize(profile, "phase1_0_solutions", partition=FIRST_RANGE, instance=instance),
        "phase1_2": materialize(profile, "phase1_2_solutions", partition=sampled, instance=instance),
    }
    results["analysis"] = materialize(profile, "phase2*", instance=instance)
    return DataLayout(tmp / "data"), profile, results, instance


def test_every_run_succeeds(pipeline):
    _, _, results, _ = pipeline
    assert all(result.success for result in results.values())


def test_phase0_files_and_splits(pipeline):
    check_phase0(pipeline[0], list(range(1, 25)))


def test_phase1_labels_and_activations(pipeline):
    check_phase1(pipeline[0], FIRST_RANGE, list(range(1, 25)), n_layers=30, d_model=576)


def test_phase2_scores_and_an_independent_duckdb_recount(pipeline):
    check_phase2_scores_and_duckdb_recount(pipeline[0], FIRST_RANGE)


def test_phase3_classification_has_intervals_and_flags(pipeline):
    check_phase3_classification(pipeline[0])


def test_phase3_readouts_put_baselines_probes_and_latents_side_by_side(pipeline):
    check_phase3_readouts(pipeline[0], n_layers=30, sae_layers=small_design().sae_layers)


def test_sae_seed_variants_redo_the_selection_and_are_matched_by_decoder_direction(pipeline):
    check_sae_seed_replicates(pipeline[0], small_design().sae_layers, variants=SAETrainingPlan.seed_variants)


def test_phase3_steering_chooses_over_non_validation_problems_and_reports_validation_once(pipeline):
    check_phase3_steering(pipeline[0], set(SHORT_STEERING_COEFFICIENTS))


def _stale(instance: dg.DagsterInstance, profile: Profile, key: str) -> StaleStatus:
    """What the web UI shows for an asset: Dagster's own stale-status resolver over the instance."""
    assets = build_definitions(profile, environ={}).assets or []
    return get_stale_status_resolver(instance, list(assets)).get_status(dg.AssetKey(key))


# The assets that compute for long on their inputs; the rest are quick tables made from these.
HEAVY_ANALYSIS = ("phase2", "phase3_classification", "phase3_readouts", "sae_seed_replicates")


def _handed_on(result: dg.ExecuteInProcessResult, key: str) -> bool:
    [materialization] = result.asset_materializations_for_node(key)
    return "handed on from run" in materialization.metadata


def test_phase2_star_again_with_nothing_new_hands_on_every_heavy_value_and_changes_no_output(pipeline):
    layout, profile, _, instance = pipeline
    before = {path: path.read_bytes() for path in layout.phase3_dir().glob("*.parquet")}
    result = materialize(profile, "phase2*", instance=instance)
    assert result.success
    assert all(_handed_on(result, key) for key in HEAVY_ANALYSIS)
    assert {path: path.read_bytes() for path in layout.phase3_dir().glob("*.parquet")} == before
    for key in (*HEAVY_ANALYSIS, "phase3_report"):
        assert _stale(instance, profile, key) == StaleStatus.FRESH, key


def _variants_run(variants: int) -> dict:
    """The prepare job's run config with ``variants`` seed variants per layer."""
    training = SMALL_SAE_TRAINING["ops"]["sae_weights"]["config"]
    return {"ops": {"sae_weights": {"config": {**training, "seed_variants": variants}},
                    "general_text_frequency": {"config": {"general_documents": 300}}}}  # fmt: skip


def _sae_weights_version(instance: dg.DagsterInstance) -> str | None:
    event = instance.get_latest_materialization_event(dg.AssetKey("sae_weights"))
    return event.asset_materialization.tags.get("dagster/data_version") if event else None


def test_another_set_of_seed_variants_is_a_new_input_of_the_seed_replicates(pipeline):
    """One more seed variant per layer: the primaries stay (not retrained), sae_weights gets another data version,
    and the seed replicates are computed again with the new variant, never handed on; back to the default after."""
    layout, profile, _, instance = pipeline
    primaries = {
        path: path.stat().st_mtime_ns for layer in profile.design.sae_layers for path in layout.sae_dir(layer).iterdir()
    }
    assert primaries
    before = _sae_weights_version(instance)
    more = SAETrainingPlan.seed_variants + 1
    assert materialize(profile, ["sae_weights", "general_text_frequency"], run_config=_variants_run(more),
                       instance=instance).success  # fmt: skip
    assert _sae_weights_version(instance) != before
    assert {path: path.stat().st_mtime_ns for path in primaries} == primaries
    result = materialize(profile, "sae_seed_replicates", instance=instance)
    assert result.success and not _handed_on(result, "sae_seed_replicates")
    quality = pd.read_parquet(layout.phase3_table("sae_seed_quality"))
    assert quality.seed.nunique() == more
    restored = _variants_run(SAETrainingPlan.seed_variants)
    assert materialize(profile, ["sae_weights", "general_text_frequency"], run_config=restored,
                       instance=instance).success  # fmt: skip
    assert _sae_weights_version(instance) == before
    assert materialize(profile, "phase2*", instance=instance).success


def test_a_changed_phase1_record_makes_downstream_stale_and_reruns_only_the_steering_units_it_feeds(pipeline):
    """Runs last (it changes the pipeline's data): edit one Phase 1.0 record, re-materialize its partition (which
    resumes every record, the edit included), then Phase 3 steering: only the units holding that task run it."""
    layout, profile, _, instance = pipeline
    for key in ("phase2", "top_latents", "phase3_steering", "phase3_report"):
        assert _stale(instance, profile, key) == StaleStatus.FRESH, key
    units = layout.steering_units_dir
    before = {path.name: (path.stat().st_mtime_ns, pd.read_parquet(path)) for path in units.glob("*.parquet")}
    group = next(label for label in ("incorrect", "correct") if f"validation_baseline_on_{label}.parquet" in before)
    task_id = int(before[f"validation_baseline_on_{group}.parquet"][1].task_id.iloc[0])
    # The records Phase 1 resumes from, with their fingerprints (attrs): the edited record is resumed as it is.
    dataset = layout.records_in_progress(layout.phase1_0_dataset(FIRST_RANGE))
    records = pd.read_parquet(dataset)
    edited_prompt = "# edited\n" + records.prompt[records.task_id == task_id].iloc[0]
    records.loc[records.task_id == task_id, "prompt"] = edited_prompt
    storage.write_parquet(dataset, records)

    assert materialize(profile, "phase1_0_solutions", partition=FIRST_RANGE, instance=instance).success
    for key in ("phase2", "phase3_classification", "phase3_steering_coefficients", "phase3_steering"):
        assert _stale(instance, profile, key) == StaleStatus.STALE, key  # Phase 1.0's data version changed
    assert materialize(profile, ["phase3_steering_coefficients", "phase3_steering"], instance=instance).success
    recomputed = materialize(profile, "phase2", instance=instance)
    assert recomputed.success and not _handed_on(recomputed, "phase2")  # its input changed: never handed on

    affected = [name for name, (_, frame) in before.items() if task_id in set(frame.task_id)]
    assert f"validation_baseline_on_{group}.parquet" in affected and len(affected) < len(before)
    for name, (mtime, old) in before.items():
        new = pd.read_parquet(units / name)
        if name not in affected:
            assert (units / name).stat().st_mtime_ns == mtime, f"{name} holds no edited task but was rewritten"
            continue
        assert new.prompt[new.task_id == task_id].tolist() == [edited_prompt], name  # generated again
        kept_old, kept_new = old[old.task_id != task_id], new[new.task_id != task_id]
        # The other problems' records were resumed as they were (their wall-clock times included).
        assert kept_new.reset_index(drop=True).equals(kept_old.reset_index(drop=True)), name
    assert _stale(instance, profile, "phase3_steering") == StaleStatus.FRESH

    # Restoring the record restores the outputs: the unsteered reruns are generated again (alone this time). In
    # float32 they agree with the first run, as greedy generation does across batches; in bfloat16 a batch's
    # padding changes the rounding, so only the problems and prompts are compared there.
    records.loc[records.task_id == task_id, "prompt"] = edited_prompt.removeprefix("# edited\n")
    storage.write_parquet(dataset, records)
    assert materialize(profile, "phase1_0_solutions", partition=FIRST_RANGE, instance=instance).success
    assert materialize(profile, ["phase3_steering_coefficients", "phase3_steering"], instance=instance).success
    timing = ["generation_seconds", "sandbox_seconds"]
    for label in ("correct", "incorrect"):
        name = f"validation_baseline_on_{label}.parquet"
        if name in before:
            restored, first = pd.read_parquet(units / name).drop(columns=timing), before[name][1].drop(columns=timing)
            if profile.resources["language_model"].dtype == "float32":
                assert restored.equals(first), name
            else:
                assert restored[["task_id", "prompt"]].equals(first[["task_id", "prompt"]]), name
