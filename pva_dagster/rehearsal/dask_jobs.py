"""The study's jobs on the Dask executor with a small run's profile, rebuilt by name on every Dask worker.

``build_reconstructable_job`` carries the arguments (the temp folder, the problem file, the model folder) to the
workers, which call :func:`study_job` again to rebuild the same job. ``python -m pva_dagster.rehearsal.dask_jobs``
runs one job in its own process, as the run queue would (the tests start two at once); bench/scaleout.py uses it
too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from pva_dagster.cluster import dask_executor
from pva_dagster.definitions import build_definitions
from pva_dagster.profiles import Profile
from pva_dagster.rehearsal.small_runs import (
    FIRST_RANGE,
    PREPARE,
    SMALL_SAE_TRAINING,
    materialize,
    small_design,
    small_profile,
    write_problems,
)
from pva_dagster.resources import EmbeddedModel, LocalModel, WorkerDevice

# The steering sweep alone (Phase 2 done before): what bench/scaleout.py times on 1 and on 2 workers.
STEERING_SWEEP_JOB = dg.define_asset_job("steering_sweep", selection=["phase3_steering_coefficients"])
# Embedded problems SmolLM2 mostly gets right and mostly gets wrong (tests/test_pipeline.py): both labels.
STEERING_SOURCE_IDS = [*range(1, 13), *range(60, 72)]


def instance_home(folder: Path) -> Path:
    """A Dagster home under ``folder`` (telemetry off) whose storage exists before runs start at the same moment;
    runs of one test share it, so the partition-aware IO manager finds what earlier runs materialized."""
    home = folder / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)):
        pass
    return home


def cluster_profile(tmp: str, problems: str, model_dir: str, device_source: str = "worker") -> Profile:
    """``small_profile`` with the random-weight Gemma 2 of tests/conftest.py writing a few tokens per solution
    (``model_dir=""``: the embedded SmolLM2, in float32: a Dask worker runs torch on one thread and the test's
    process on more, and only float32 gives the same greedy tokens either way); the device from the Dask worker
    (or the lock-file pool)."""
    tiny = {
        "language_model": LocalModel(path=model_dir, batch_size=2),
        "study_design": small_design(max_new_tokens=24, stop_at_function_end=False),
    }
    embedded = {"language_model": EmbeddedModel(batch_size=8, dtype="float32")}
    profile = small_profile(Path(tmp), Path(problems), **(tiny if model_dir else embedded))
    return profile.with_resources(device_pool=WorkerDevice()) if device_source == "worker" else profile


def study_job(job_name: str, tmp: str, problems: str, model_dir: str) -> dg.JobDefinition:
    defs = build_definitions(cluster_profile(tmp, problems, model_dir), environ={})
    return dg.Definitions(
        assets=list(defs.assets or []), jobs=[*(defs.jobs or []), STEERING_SWEEP_JOB],
        resources=defs.resources, executor=dask_executor,
    ).resolve_job_def(job_name)


def execute_on_dask(
    instance: dg.DagsterInstance, address: str, job_name: str, tmp: str, problems: str, model_dir: str,
    partition: str | None = None,
) -> dg.ExecutionResult:
    job = dg.build_reconstructable_job(
        "pva_dagster.rehearsal.dask_jobs", "study_job",
        reconstructable_kwargs={"job_name": job_name, "tmp": tmp, "problems": problems, "model_dir": model_dir},
        reconstructor_working_directory=str(Path(__file__).resolve().parents[2]),
    )
    return dg.execute_job(
        job, instance=instance, tags={"dagster/partition": partition} if partition else None,
        run_config={"execution": {"config": {"cluster": {"existing": {"address": address}}}}},
        raise_on_error=False,
    )


def prepare_steering_inputs(tmp: Path, instance: dg.DagsterInstance) -> str:
    """Phases 0, 1.0 and 2 (sae split: what steering reads) in-process on the embedded model, recorded in
    ``instance`` (the sweep reads the Phase 1.0 partitions it lists), as tests/test_pipeline.py runs them; returns
    the problem file. The steering sweep then has its latents, problems and SAEs."""
    problems = write_problems(tmp / "problems.jsonl", STEERING_SOURCE_IDS)
    profile = cluster_profile(str(tmp), str(problems), "", device_source="pool")
    general = {"general_text_frequency": {"config": {"general_documents": 300}}}
    steps: list[tuple[list[str], str | None, dict[str, Any] | None]] = [
        (PREPARE, None, {"ops": {**SMALL_SAE_TRAINING["ops"], **general}}),
        (["phase1_0_solutions"], FIRST_RANGE, None),
        (["phase2", "top_latents"], None, {"ops": {"phase2": {"config": {"splits": ["sae"]}}}}),
    ]
    for selection, partition, config in steps:
        if not materialize(profile, selection, partition=partition, run_config=config, instance=instance).success:
            raise RuntimeError(f"preparing the steering inputs: {selection} failed")
    return str(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one pva-dagster job on a Dask cluster (test resources).")
    for name in ("dagster-home", "address", "job", "tmp", "problems", "model"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--partition")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.from_config(args.dagster_home) as instance:
        result = execute_on_dask(
            instance, args.address, args.job, args.tmp, args.problems, args.model, args.partition
        )
    print(f"run {result.run_id} success={result.success}", flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
