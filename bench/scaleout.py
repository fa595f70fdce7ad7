"""The steering sweep (phase3_steering_coefficients: a plan, one step per unit, a combining step) on a Dask cluster
of 1 worker vs 2 workers, each `dask worker --resources GPU=1 --nthreads 1` on 127.0.0.1: wall times and their
ratio, from one run of this script.

Phases 0-2 run first, in-process, on the embedded SmolLM2 and 24 embedded problems (as tests/test_pipeline.py);
then the sweep runs once per cluster size from scratch (its unit files are removed in between, else the second
run would only resume). Each worker here is a CPU process: on a machine with fewer free cores than workers the
ratio shows the orchestration working, not a GPU speed-up; on a GPU machine start it with --devices cuda:0,cuda:1.

    .venv/bin/python bench/scaleout.py [--workdir DIR] [--devices cpu,cpu]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pva_dagster.study.runtime import apply_offline_defaults  # noqa: E402

apply_offline_defaults()

import dagster as dg  # noqa: E402

from pva_dagster.rehearsal.dask_jobs import execute_on_dask, prepare_steering_inputs  # noqa: E402
from pva_dagster.rehearsal.dask_loopback import local_dask_cluster  # noqa: E402
from pva_dagster.study.layout import DataLayout  # noqa: E402


def sweep_on(workers: dict[str, str], workdir: Path, problems: str, home: Path) -> tuple[float, set[str], int]:
    """Wall time of one sweep run on a fresh cluster of ``workers``; the workers that ran units; the unit count."""
    layout = DataLayout(workdir / "data")
    shutil.rmtree(layout.steering_units_dir, ignore_errors=True)
    shutil.rmtree(layout.root / "dagster_steps", ignore_errors=True)
    with local_dask_cluster(workdir / f"cluster_{len(workers)}", workers) as cluster:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            started = time.perf_counter()
            result = execute_on_dask(instance, cluster.address, "steering_sweep", str(workdir), problems, "")
            seconds = time.perf_counter() - started
            if not result.success:
                raise RuntimeError(f"the sweep failed on {len(workers)} worker(s); logs in {workdir}")
            used = {
                e.event_specific_data.metadata["worker"].value
                for e in result.all_events
                if e.event_type_value == "STEP_OUTPUT" and ".steer_units[" in (e.step_key or "")
            }
            units = sum(1 for e in result.all_events if e.event_type_value == "STEP_SUCCESS"
                        and ".steer_units[" in (e.step_key or ""))
    return seconds, used, units


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, default=None,
        help="where to run (default: a new temp folder); one prepared before skips Phases 0-2",
    )
    parser.add_argument("--devices", default="cpu,cpu", help="the two workers' PVA_DEVICES (default cpu,cpu)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pva_scaleout_"))
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    devices = args.devices.split(",")
    if len(devices) != 2:
        parser.error("--devices names the two workers' devices, e.g. cuda:0,cuda:1")

    started = time.perf_counter()
    if DataLayout(workdir / "data").phase2_table("sae", "top_latents").exists():
        problems = str(workdir / "problems.jsonl")  # a --workdir prepared by an earlier run (same instance)
        print(f"Phases 0-2 already in {workdir}", flush=True)
    else:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            problems = prepare_steering_inputs(workdir, instance)
        print(f"Phases 0-2 in-process: {time.perf_counter() - started:.0f} s", flush=True)
    one = sweep_on({"gpu-0": devices[0]}, workdir, problems, home)
    print(f"sweep on 1 worker:  {one[0]:7.1f} s, {one[2]} unit steps on {sorted(one[1])}", flush=True)
    two = sweep_on({"gpu-0": devices[0], "gpu-1": devices[1]}, workdir, problems, home)
    print(f"sweep on 2 workers: {two[0]:7.1f} s, {two[2]} unit steps on {sorted(two[1])}", flush=True)
    print(f"speed-up 2 vs 1 worker: {one[0] / two[0]:.2f}x (wall time, same sweep, from scratch each time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
