"""Phase 3 steering of a finished embedded run again under other steering settings, from one commit.

Re-materializes ``phase3_steering_coefficients``, ``phase3_steering`` and the report on a finished run's data
folder with the embedded design changed as asked: ``--random-directions 19`` runs the exploratory rank test the
embedded profile leaves off for time; ``--coefficients 0.5 1.0 --max-tasks 8`` is the older design (large
coefficients on a few problems).
Steering units already on disk with the same inputs resume from their files, so only what the change adds is
generated. Prints the chosen coefficients, the validation tests and the seconds it took.

It runs in place, in the run's own Dagster instance ($DAGSTER_HOME, which knows the Phase 1 partitions): a copy
of the data folder would generate every unit again (a unit's fingerprint names the model's weights by path), and
it rewrites the folder's Phase 3 steering tables and report, so save ``data/phase3`` first to keep them.

    DAGSTER_HOME=$PWD .venv/bin/python bench/steering_design.py --data data [--random-directions 19]
        [--controls 1] [--coefficients 0.5 1.0] [--max-tasks 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pva_dagster.study.runtime import apply_offline_defaults

apply_offline_defaults()

import dagster as dg  # noqa: E402
import pandas as pd  # noqa: E402

from pva_dagster.profiles import embedded_profile  # noqa: E402
from pva_dagster.rehearsal.small_runs import materialize  # noqa: E402
from pva_dagster.resources import DataStore  # noqa: E402
from pva_dagster.study import outputs  # noqa: E402

TEST_COLUMNS = [
    "experiment", "layer", "latent", "coefficient", "n", "successes", "control_rate", "discordant", "p_paired",
    "minimum_detectable_effect", "breakage_difference", "breakage_ci_high", "non_inferior", "random_directions",
    "random_rate", "p_rank",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a finished embedded run's data folder")
    parser.add_argument("--random-directions", type=int, help="steering_random_directions")
    parser.add_argument("--controls", type=int, help="steering_controls")
    parser.add_argument("--coefficients", type=float, nargs="+", help="steering_coefficients")
    parser.add_argument("--max-tasks", type=int, help="steering_max_tasks and steering_sweep_max_tasks")
    args = parser.parse_args(argv)
    if not (args.data / "phase3" / f"{outputs.STEERING_TESTS}.parquet").exists():
        parser.error(f"{args.data} holds no finished steering run ({outputs.STEERING_TESTS}.parquet missing)")
    changes = {
        name: value for name, value in {
            "steering_random_directions": args.random_directions, "steering_controls": args.controls,
            "steering_coefficients": args.coefficients, "steering_max_tasks": args.max_tasks,
            "steering_sweep_max_tasks": args.max_tasks,
        }.items() if value is not None
    }
    profile = embedded_profile().with_resources(data_store=DataStore(root=str(args.data.resolve())))
    # As `--config-json` would: the changed fields only; the profile keeps the rest.
    run_config = {"resources": {"study_design": {"config": changes}}}
    start = time.perf_counter()
    with dg.DagsterInstance.get() as instance:  # the run's: it records which Phase 1 partitions exist
        materialize(
            profile, [outputs.STEERING_COEFFICIENTS, outputs.STEERING, outputs.REPORT], run_config=run_config,
            instance=instance,
        )
    seconds = time.perf_counter() - start
    layout = profile.data_store.layout
    chosen = pd.read_parquet(layout.phase3_table(outputs.CHOSEN_COEFFICIENTS)).drop(columns="rule")
    tests = pd.read_parquet(layout.phase3_table(outputs.STEERING_TESTS))
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(f"design changes: {changes}")
        print(chosen.to_string(index=False))
        print(tests[TEST_COLUMNS].to_string(index=False))
    print(f"steering and report: {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
