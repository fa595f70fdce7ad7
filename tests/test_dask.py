"""Phase 1 on a real Dask cluster (a `dask scheduler` and `dask worker --resources GPU=1` processes on 127.0.0.1):
partitions spread over the workers, one GPU step per worker at a time, the same records as an in-process run,
a worker killed mid-step loses and duplicates nothing, and a worker without its device fails by naming it.

The tests share one cluster and run in file order: the last one replaces the workers with a broken one.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pva_dagster.rehearsal.dask_jobs import cluster_profile, execute_on_dask, instance_home
from pva_dagster.rehearsal.dask_loopback import ROOT, local_dask_cluster
from pva_dagster.rehearsal.small_runs import FIRST_RANGE, SECOND_RANGE, materialize, write_problems
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.problems.task_ranges import TaskRange

pytestmark = pytest.mark.slow  # ~6 min on the shared 2-core machine: a cluster, three runs and a reference run
PARTITIONS = [FIRST_RANGE, SECOND_RANGE]  # 24 and 12 problems of the file below
SECOND_FIRST_ID = TaskRange.parse(SECOND_RANGE).first
WORKERS = {"gpu-a": "cpu", "gpu-b": "cpu"}
RUN_TIMEOUT_S = 400
COMPARED = ["task_id", "sample", "completion", "generated_code", "passed", "outcome", "n_new_tokens", "layers"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_gemma2_dir):
    tmp = tmp_path_factory.mktemp("dask")
    home = instance_home(tmp)
    task_ids = [*range(1, 25), *range(SECOND_FIRST_ID, SECOND_FIRST_ID + 12)]
    problems = write_problems(tmp / "problems.jsonl", list(range(1, 37)), task_ids)
    with local_dask_cluster(tmp / "cluster", WORKERS) as running:
        yield {"cluster": running, "tmp": tmp, "home": home, "problems": str(problems), "model": str(tiny_gemma2_dir)}


@pytest.fixture(scope="module")
def in_process(cluster):
    """The reference: both partitions in-process with the lock-file device pool."""
    tmp = cluster["tmp"] / "in_process"
    profile = cluster_profile(str(tmp), cluster["problems"], cluster["model"], device_source="pool")
    assert materialize(profile, ["mbpp_problems", "extended_tests"]).success
    for partition in PARTITIONS:
        assert materialize(profile, ["phase1_0_solutions"], partition=partition).success
    return DataLayout(tmp / "data")


def _prepared(cluster, name: str) -> str:
    tmp = cluster["tmp"] / name
    profile = cluster_profile(str(tmp), cluster["problems"], cluster["model"], device_source="pool")
    assert materialize(profile, ["mbpp_problems", "extended_tests"]).success
    return str(tmp)


def _run_in_subprocess(cluster, tmp: str, partition: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pva_dagster.rehearsal.dask_jobs", "--dagster-home", str(cluster["home"]),
         "--address", cluster["cluster"].address, "--job", "phase1_0", "--tmp", tmp, "--problems", cluster["problems"],
         "--model", cluster["model"], "--partition", partition],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _gpu_steps(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    """Per Phase 1 step of the run: the worker and pid from its materialization, and when it started and ended."""
    steps: dict[str, dict] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key != "phase1_0_solutions":
            continue
        step = steps.setdefault(event.step_key, {})
        if event.event_type_value == "STEP_START":
            step["start"] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            step["end"] = entry.timestamp
        elif event.event_type_value == "ASSET_MATERIALIZATION":
            metadata = event.event_specific_data.materialization.metadata
            step["worker"], step["pid"] = metadata["worker"].value, metadata["worker_pid"].value
    return list(steps.values())


def _records(layout: DataLayout, partition: str) -> pd.DataFrame:
    frame = pd.read_parquet(layout.phase1_0_dataset(partition)).sort_values(["task_id", "sample"])
    return frame.reset_index(drop=True)


def test_partitions_spread_over_workers_one_gpu_step_at_a_time_same_records(cluster, in_process):
    tmp = _prepared(cluster, "two_runs")
    runs = [_run_in_subprocess(cluster, tmp, partition) for partition in PARTITIONS]  # two runs at once
    outputs = [run.communicate(timeout=RUN_TIMEOUT_S)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    run_ids = [out.strip().splitlines()[-1].split()[1] for out in outputs]

    with dg.DagsterInstance.from_config(str(cluster["home"])) as instance:
        steps = [step for run_id in run_ids for step in _gpu_steps(instance, run_id)]
    assert len(steps) == 2
    assert {s["worker"] for s in steps} == set(WORKERS), steps
    assert len({s["pid"] for s in steps}) == 2
    for worker in WORKERS:  # no worker ran two GPU steps at once
        spans = sorted((s["start"], s["end"]) for s in steps if s["worker"] == worker)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False)), spans

    layout = DataLayout(Path(tmp) / "data")
    for partition in PARTITIONS:
        on_dask, reference = _records(layout, partition), _records(in_process, partition)
        pd.testing.assert_frame_equal(on_dask[COMPARED], reference[COMPARED])
        for ours, theirs in zip(on_dask.activation_files, reference.activation_files, strict=True):
            for a, b in zip(ours, theirs, strict=True):
                with np.load(a) as x, np.load(b) as y:
                    np.testing.assert_array_equal(x["residual"], y["residual"])


def test_worker_killed_mid_step_then_rematerialized_loses_and_duplicates_nothing(cluster, in_process):
    running, tmp = cluster["cluster"], _prepared(cluster, "killed")
    # The records the partition saves after each batch (the dataset file itself is written when it is done).
    dataset = DataLayout.records_in_progress(DataLayout(Path(tmp) / "data").phase1_0_dataset(PARTITIONS[0]))
    run = _run_in_subprocess(cluster, tmp, PARTITIONS[0])
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (dataset.exists() and len(pd.read_parquet(dataset)) >= 2):
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before a worker could be killed"
        time.sleep(0.05)
    busy = running.busy_workers()
    assert len(busy) == 1
    victim = busy.pop()
    running.kill(victim)  # SIGKILL, mid-partition
    saved_at_kill = len(pd.read_parquet(dataset))
    assert 2 <= saved_at_kill < 24
    run.communicate(timeout=RUN_TIMEOUT_S)  # Dask may hand the step to the other worker, or the run fails

    running.start_worker(victim, WORKERS[victim])
    running.wait_for(set(WORKERS))
    with dg.DagsterInstance.from_config(str(cluster["home"])) as instance:
        result = execute_on_dask(
            instance, running.address, "phase1_0", tmp, cluster["problems"], cluster["model"], PARTITIONS[0]
        )
    assert result.success
    records = _records(DataLayout(Path(tmp) / "data"), PARTITIONS[0])
    assert records.task_id.tolist() == _records(in_process, PARTITIONS[0]).task_id.tolist() == list(range(1, 25))
    assert not records.duplicated(["task_id", "sample"]).any()
    npz = list((Path(tmp) / "data/phase1_0/activations").rglob("*.npz"))
    assert len(npz) == 24 * 4, "no stale or duplicate activation files"


def test_worker_without_its_device_fails_the_step_naming_it(cluster):
    running, tmp = cluster["cluster"], _prepared(cluster, "bad_device")
    for name in list(running.workers):
        running.kill(name)
    running.start_worker("gpu-missing", "cuda:7")
    running.wait_for({"gpu-missing"})
    with dg.DagsterInstance.from_config(str(cluster["home"])) as instance:
        result = execute_on_dask(
            instance, running.address, "phase1_0", tmp, cluster["problems"], cluster["model"], PARTITIONS[1]
        )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1 and failures[0].step_key == "phase1_0_solutions"
    message = failures[0].step_failure_data.error.to_string()
    assert "cuda:7" in message and "gpu-missing" in message
