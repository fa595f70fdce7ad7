"""The cluster instance across hosts: cluster/postgres/dagster.yaml on a real PostgreSQL server on 127.0.0.1, a
Phase 1 partition run on a real Dask cluster (a scheduler and two workers) whose workers record their steps' events
in PostgreSQL, a worker killed mid-step, the partition run again, and everything read back through a second
Dagster instance, as the web UI on another host reads it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from pva_dagster.rehearsal.dask_jobs import cluster_profile, execute_on_dask
from pva_dagster.rehearsal.dask_loopback import ROOT, local_dask_cluster
from pva_dagster.rehearsal.postgres_loopback import local_postgres
from pva_dagster.rehearsal.small_runs import FIRST_RANGE, materialize, write_problems
from pva_dagster.study.layout import DataLayout

pytestmark = pytest.mark.slow  # ~3 min: a PostgreSQL server, a Dask cluster, two runs of one partition
CLUSTER_INSTANCE = ROOT / "cluster" / "postgres" / "dagster.yaml"
WORKERS = {"gpu-a": "cpu", "gpu-b": "cpu"}
RUN_TIMEOUT_S = 400
PHASE1 = dg.AssetKey("phase1_0_solutions")


def _home(folder: Path) -> Path:
    """A Dagster home with the cluster's instance file, its local folders (compute logs) moved under ``folder``:
    each host of a cluster has its own disk, and a test leaves nothing in the checkout."""
    config = yaml.safe_load(CLUSTER_INSTANCE.read_text())
    config["local_artifact_storage"]["config"]["base_dir"] = str(folder / "artifacts")
    config["compute_logs"]["config"]["base_dir"] = str(folder / "compute_logs")
    folder.mkdir(parents=True)
    (folder / "dagster.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_gemma2_dir):
    tmp = tmp_path_factory.mktemp("dask_postgres")
    with local_postgres() as server, pytest.MonkeyPatch.context() as env:
        for name, value in server.environment().items():  # before the workers start: they inherit them
            env.setenv(name, value)
        home = _home(tmp / "host_a")
        with dg.DagsterInstance.from_config(str(home)):
            pass  # creates the tables once, before two processes would race to
        problems = write_problems(tmp / "problems.jsonl", list(range(1, 25)))
        with local_dask_cluster(tmp / "cluster", WORKERS) as running:
            yield {"cluster": running, "server": server, "tmp": tmp, "home": home, "problems": str(problems),
                   "model": str(tiny_gemma2_dir)}


def test_the_cluster_instance_file_stores_everything_in_postgres(cluster):
    storage = yaml.safe_load(CLUSTER_INSTANCE.read_text())["storage"]
    assert list(storage) == ["postgres"]
    settings = storage["postgres"]["postgres_db"]
    assert {value["env"] for value in settings.values() if isinstance(value, dict)} == set(
        cluster["server"].environment()
    )
    with dg.DagsterInstance.from_config(str(cluster["home"])) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert not any(cluster["home"].rglob("*.db")), "no SQLite file beside the instance"


def _run_in_subprocess(cluster, tmp: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pva_dagster.rehearsal.dask_jobs", "--dagster-home", str(cluster["home"]),
         "--address", cluster["cluster"].address, "--job", "phase1_0", "--tmp", tmp, "--problems", cluster["problems"],
         "--model", cluster["model"], "--partition", FIRST_RANGE],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_a_run_with_a_killed_worker_lands_in_postgres_and_another_host_reads_it(cluster):
    running, tmp = cluster["cluster"], str(cluster["tmp"] / "data_root")
    profile = cluster_profile(tmp, cluster["problems"], cluster["model"], device_source="pool")
    assert materialize(profile, ["mbpp_problems", "extended_tests"]).success
    dataset = DataLayout.records_in_progress(DataLayout(Path(tmp) / "data").phase1_0_dataset(FIRST_RANGE))

    killed_run = _run_in_subprocess(cluster, tmp)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (dataset.exists() and len(pd.read_parquet(dataset)) >= 2):
        assert killed_run.poll() is None and time.monotonic() < deadline, "the run ended before a worker was killed"
        time.sleep(0.05)
    (victim,) = running.busy_workers()
    running.kill(victim)  # SIGKILL, mid-partition
    output = killed_run.communicate(timeout=RUN_TIMEOUT_S)[0]
    first_run_id = output.strip().splitlines()[-1].split()[1]
    running.start_worker(victim, WORKERS[victim])
    running.wait_for(set(WORKERS))
    with dg.DagsterInstance.from_config(str(cluster["home"])) as instance:
        result = execute_on_dask(
            instance, running.address, "phase1_0", tmp, cluster["problems"], cluster["model"], FIRST_RANGE
        )
    assert result.success

    # Another host: its own home (own local folders), the same PostgreSQL settings.
    with dg.DagsterInstance.from_config(str(_home(cluster["tmp"] / "host_b"))) as elsewhere:
        assert isinstance(elsewhere.event_log_storage, PostgresEventLogStorage)
        runs = {record.dagster_run.run_id: record.dagster_run for record in elsewhere.get_run_records()}
        assert {first_run_id, result.run_id} <= set(runs)
        assert runs[result.run_id].status == dg.DagsterRunStatus.SUCCESS
        assert runs[result.run_id].tags["dagster/partition"] == FIRST_RANGE
        materialized = elsewhere.fetch_materializations(PHASE1, limit=10).records
        ours = [m for m in materialized if m.run_id == result.run_id]
        assert len(ours) == 1 and ours[0].partition_key == FIRST_RANGE
        metadata = ours[0].asset_materialization.metadata  # written by the Dask worker that ran the step
        assert metadata["worker"].value in WORKERS and metadata["worker_pid"].value != os.getpid()
        assert FIRST_RANGE in elsewhere.get_materialized_partitions(PHASE1)

    # The same rows, read with SQL from the server itself.
    connection = cluster["server"].connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT run_id FROM runs")
            assert {first_run_id, result.run_id} <= {row[0] for row in cursor.fetchall()}
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                (result.run_id,),
            )
            assert cursor.fetchone()[0] == 1
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'STEP_START'",
                (first_run_id,),
            )
            assert cursor.fetchone()[0] >= 1  # the killed run's step started on a worker and was recorded
    finally:
        connection.close()
    records = pd.read_parquet(DataLayout(Path(tmp) / "data").phase1_0_dataset(FIRST_RANGE))
    assert sorted(records.task_id) == list(range(1, 25)) and not records.duplicated(["task_id", "sample"]).any()
