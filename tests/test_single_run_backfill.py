"""A Phase 1.2 backfill is one run: every temperature and task range in one step with one model load, the same
records as one run per partition, one file per partition; a resumed run does only the partitions left."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from pva_dagster.cli.run_study import runs_of
from pva_dagster.definitions import build_definitions
from pva_dagster.rehearsal.small_runs import materialize, small_design, small_profile, write_problems
from pva_dagster.resources import LocalModel
from pva_dagster.study.domain import TIMING_COLUMNS
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.outputs import PHASE1_2_SOLUTIONS

PHASE1_2 = dg.AssetKey(PHASE1_2_SOLUTIONS)


def _prepared(root: Path, model_dir: Path) -> dg.Definitions:
    """Phase 0 and 0.1 of 24 problems spread over the first two task ranges, and the Definitions to go on."""
    problems = write_problems(
        root / "problems.jsonl", list(range(1, 25)), task_ids=[*range(1, 13), *range(150, 162)]
    )
    profile = small_profile(
        root, problems, language_model=LocalModel(path=str(model_dir), batch_size=4, dtype="float32"),
        study_design=small_design(temperatures=[0.3, 0.6], max_new_tokens=12),
    )
    assert materialize(profile, ["mbpp_problems", "difficulty_mapping", "extended_tests", "problem_splits"]).success
    return build_definitions(profile, environ={})


def _records(root: Path, keys: list[dg.MultiPartitionKey]) -> pd.DataFrame:
    layout, frames = DataLayout(root / "data"), []
    for key in keys:
        dims = key.keys_by_dimension
        frames.append(pd.read_parquet(layout.phase1_2_dataset(float(dims["temperature"]), dims["task_range"])))
    records = pd.concat(frames, ignore_index=True).drop(columns=list(TIMING_COLUMNS), errors="ignore")
    return records.drop(columns=["activation_files"])  # absolute paths under each run's own root


def test_one_run_generates_every_partition_as_runs_per_partition_do(tmp_path, tiny_gemma2_dir):
    single_root, per_partition_root = tmp_path / "single", tmp_path / "each"
    single_root.mkdir(), per_partition_root.mkdir()

    defs = _prepared(single_root, tiny_gemma2_dir)
    job = defs.resolve_job_def("phase1_2")
    keys = job.partitions_def.get_partition_keys()
    assert len(keys) == 4  # 2 temperatures x 2 task ranges
    [(what, kwargs)] = runs_of(defs, job, PHASE1_2, list(keys))
    assert "in one run" in what
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, **kwargs)
        assert result.success and instance.get_materialized_partitions(PHASE1_2) == set(keys)
    steps = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS]
    assert len(steps) == 1
    [materialization] = result.asset_materializations_for_node(PHASE1_2_SOLUTIONS)[:1]
    assert materialization.metadata["model"].value == "loaded"  # once, for the four partitions

    job = _prepared(per_partition_root, tiny_gemma2_dir).resolve_job_def("phase1_2")
    with dg.instance_for_test() as instance:
        for key in keys:
            assert job.execute_in_process(instance=instance, partition_key=key).success
    pd.testing.assert_frame_equal(_records(single_root, keys), _records(per_partition_root, keys))


def test_a_resumed_or_partial_backfill_runs_each_partition_left(tmp_path, tiny_gemma2_dir):
    defs = _prepared(tmp_path, tiny_gemma2_dir)
    job = defs.resolve_job_def("phase1_2")
    keys = list(job.partitions_def.get_partition_keys())
    runs = runs_of(defs, job, PHASE1_2, keys[1:])
    assert [kwargs for _, kwargs in runs] == [{"partition_key": key} for key in keys[1:]]
    [(_, unpartitioned)] = runs_of(defs, defs.resolve_job_def("analysis"), None, [None])
    assert unpartitioned == {}
