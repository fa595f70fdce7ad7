"""The steering sweep's group steps (one per problem group) on a real Dask cluster of two `dask worker
--resources GPU=1` processes: they spread over both workers, no worker runs two at once, each worker loads the
model once, and the sweep's tables equal an in-process run's."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pva_dagster.rehearsal.dask_jobs import cluster_profile, execute_on_dask, instance_home, prepare_steering_inputs
from pva_dagster.rehearsal.dask_loopback import local_dask_cluster
from pva_dagster.rehearsal.small_runs import link_embedded_model, materialize
from pva_dagster.study.layout import DataLayout

pytestmark = pytest.mark.slow  # Phases 0-2 on SmolLM2, then the sweep twice: ~15 min on the shared 2-core machine
WORKERS = {"gpu-a": "cpu", "gpu-b": "cpu"}
TABLES = [
    "phase3_steering_coefficients", "steering_sweep_tests", "steering_sweep_controls", "steering_sweep_units",
    "steering_sweep_noise",
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, embedded_model_dir):
    """Phases 0-2 once, recorded in a persistent instance that the in-process and the Dask sweep share."""
    tmp = tmp_path_factory.mktemp("steering")
    home = instance_home(tmp)
    link_embedded_model(tmp / "data", embedded_model_dir)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        problems = prepare_steering_inputs(tmp, instance)
    return tmp, home, problems


def _copy(tmp: Path, name: str) -> str:
    """A copy of the prepared data (the model link kept): both sweeps start from the same files."""
    target = tmp.parent / f"{tmp.name}_{name}"
    shutil.copytree(tmp / "data", target / "data", symlinks=True)
    return str(target)


def test_units_spread_over_two_workers_and_match_an_in_process_sweep(prepared):
    tmp, home, problems = prepared
    reference, on_dask = _copy(tmp, "in_process"), _copy(tmp, "dask")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        profile = cluster_profile(reference, problems, "", "pool")
        assert materialize(profile, ["phase3_steering_coefficients"], instance=instance).success
        with local_dask_cluster(tmp / "cluster", WORKERS) as cluster:
            result = execute_on_dask(instance, cluster.address, "steering_sweep", on_dask, problems, "")
        assert result.success
        spans: dict[str, dict] = {}
        for entry in instance.all_logs(result.run_id):
            event = entry.dagster_event
            if event is None or ".steer_units[" not in (event.step_key or ""):
                continue
            span = spans.setdefault(event.step_key, {})
            if event.event_type_value == "STEP_START":
                span["start"] = entry.timestamp
            elif event.event_type_value == "STEP_SUCCESS":
                span["end"] = entry.timestamp
            elif event.event_type_value == "STEP_OUTPUT":
                metadata = event.event_specific_data.metadata
                span["worker"], span["model"] = metadata["worker"].value, metadata["model"].value
    # One step per problem group (correct, incorrect), each holding all its units.
    assert len(spans) == 2 and all({"start", "end", "worker"} <= set(s) for s in spans.values()), spans
    assert {s["worker"] for s in spans.values()} == set(WORKERS)
    for worker in WORKERS:  # one GPU step at a time per worker
        ordered = sorted((s["start"], s["end"]) for s in spans.values() if s["worker"] == worker)
        assert all(end <= start for (_, end), (start, _) in zip(ordered, ordered[1:], strict=False)), ordered
        # Each worker loads the model for its first step and reuses it for any other (model_cache.py).
        first, *later = [s["model"] for s in sorted(spans.values(), key=lambda s: s["start"]) if s["worker"] == worker]
        assert first == "loaded" and set(later) <= {"reused"}, spans

    ours, theirs = DataLayout(Path(on_dask) / "data"), DataLayout(Path(reference) / "data")
    for table in TABLES:
        pd.testing.assert_frame_equal(
            pd.read_parquet(ours.phase3_table(table)), pd.read_parquet(theirs.phase3_table(table)), check_like=True
        )
