"""``pva-study``: materialize the whole pipeline on one machine, in order, recorded in the Dagster instance.

Each job runs in-process against the instance in $DAGSTER_HOME (the project root, see .env), so every run
appears in ``dagster dev``'s web UI. Partitions already materialized are skipped unless ``--force``; on a
multi-GPU machine use a Dagster backfill instead (README, "Backfills on GPUs").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from pva_dagster.jobs import JOB_ORDER
from pva_dagster.study.layout import PROJECT_ROOT

if TYPE_CHECKING:
    import dagster as dg


def jobs_in_order(defs: dg.Definitions) -> list[dg.JobDefinition]:
    """The jobs of ``JOB_ORDER``, resolved against the Definitions' assets (``define_asset_job`` makes unresolved
    jobs; ``Definitions.get_job_def`` would resolve them too, with a UserWarning for each)."""
    return [defs.resolve_job_def(name) for name in JOB_ORDER]


def runs_of(
    defs: dg.Definitions, job: dg.JobDefinition, asset_key: dg.AssetKey | None, todo: list[str | None]
) -> list[tuple[str, dict[str, Any]]]:
    """The runs that materialize ``todo``, as (what, ``execute_in_process`` arguments): one for an unpartitioned
    job; one run over the whole range when every partition is to do and the asset's backfill policy is a single
    run (as a backfill from the web UI would); else one run per partition (a resumed run redoes none done)."""
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    if asset_key is None:
        return [("", {})]
    single = defs.resolve_assets_def(asset_key).backfill_policy == dg.BackfillPolicy.single_run()
    all_keys = job.partitions_def.get_partition_keys() if job.partitions_def else []
    if single and len(todo) > 1 and todo == all_keys:
        tags = {ASSET_PARTITION_RANGE_START_TAG: all_keys[0], ASSET_PARTITION_RANGE_END_TAG: all_keys[-1]}
        return [(f" partitions {all_keys[0]} .. {all_keys[-1]} in one run", {"tags": tags})]
    return [(f" partition {key}", {"partition_key": key}) for key in todo]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pva-study", description=__doc__)
    parser.add_argument(
        "--force", action="store_true",
        help="re-run partitions already materialized, and recompute assets whose inputs did not change",
    )
    parser.add_argument(
        "--until", choices=JOB_ORDER, default=JOB_ORDER[-1],
        help="stop after this job",
    )
    parser.add_argument(
        "--problems", metavar="SET",
        help="embedded, mbpp, mbppplus, humaneval or a path to an MBPP-format .jsonl (default: $PVA_PROBLEMS, "
             "else the profile's)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT))

    import dagster as dg

    from pva_dagster.assets.reuse import RECOMPUTE_TAG
    from pva_dagster.definitions import build_definitions
    from pva_dagster.profiles import load_profile

    try:  # the problem set is read and checked here, before any model loads
        profile = load_profile(problems=args.problems)
    except ValueError as error:  # ProblemDataError included: one line naming the setting, the line and the field
        print(f"pva-study: {error}", file=sys.stderr)
        return 2
    print(f"[pva-study] profile {profile.name}, problems {profile.resources['problem_source'].describe()}", flush=True)
    defs = build_definitions(profile)
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        for job in jobs_in_order(defs):
            job_name = job.name
            keys = job.partitions_def.get_partition_keys() if job.partitions_def else [None]
            asset_key = next(iter(job.asset_layer.executable_asset_keys)) if job.partitions_def else None
            done = (
                instance.get_materialized_partitions(asset_key) if asset_key and not args.force else set()
            )
            for key in sorted(done & set(keys)):
                print(f"[pva-study] {job_name} {key}: already materialized, skipped", flush=True)
            for what, run_kwargs in runs_of(defs, job, asset_key, [key for key in keys if key not in done]):
                print(f"[pva-study] {job_name}{what} ...", flush=True)
                if args.force:  # nothing handed on from an earlier run either (assets/reuse.py)
                    run_kwargs["tags"] = {**run_kwargs.get("tags", {}), RECOMPUTE_TAG: "true"}
                result = job.execute_in_process(instance=instance, raise_on_error=False, **run_kwargs)
                if not result.success:
                    print(f"[pva-study] {job_name}{what} failed; see `dagster dev` for the logs", file=sys.stderr)
                    return 1
            if job_name == args.until:
                break
    print(f"[pva-study] done in {time.perf_counter() - started:.0f} s; outputs under data/; "
          "browse them with `make ui`", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
