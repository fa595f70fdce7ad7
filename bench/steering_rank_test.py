"""The exploratory random-direction rank test on a finished embedded run, and what it costs.

The embedded profile leaves the rank test off (``steering_random_directions`` 0) to keep the README run within
its time budget. This re-materializes ``phase3_steering`` (and the report) on a finished run's data folder with
``--directions`` random directions: the baseline, target and control units resume from their files, so only the
random directions are generated. It prints, per experiment, the target's successes, the random directions' mean
rate and the rank p-value, and the seconds the extra generations took. It rewrites that folder's validation
steering tables and report (run it on a copy to keep the originals).

    .venv/bin/python bench/steering_rank_test.py --data data [--directions 19]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a finished embedded run's data folder")
    parser.add_argument("--directions", type=int, default=19, help="random directions (default 19)")
    args = parser.parse_args(argv)
    if not (args.data / "phase3" / f"{outputs.STEERING_TESTS}.parquet").exists():
        parser.error(f"{args.data} holds no finished steering run ({outputs.STEERING_TESTS}.parquet missing)")
    profile = embedded_profile().with_resources(data_store=DataStore(root=str(args.data.resolve())))
    profile = profile.with_design(steering_random_directions=args.directions)
    start = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        materialize(profile, [outputs.STEERING, outputs.REPORT], instance=instance)
    seconds = time.perf_counter() - start
    tests = pd.read_parquet(profile.data_store.layout.phase3_table(outputs.STEERING_TESTS))
    ranked = tests[tests.random_directions > 0]
    columns = ["experiment", "layer", "latent", "coefficient", "n", "successes", "random_directions", "random_rate",
               "p_rank"]
    print(ranked[columns].to_string(index=False))
    print(f"{args.directions} random directions on validation: {seconds:.0f} s (phase3_steering and the report)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
