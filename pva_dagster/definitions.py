"""The Dagster Definitions of pva-dagster, found by ``dg`` and ``dagster dev`` through ``[tool.dg]`` in
pyproject.toml (and by ``dagster asset materialize`` through .venv/bin/activate, see the Makefile).

``build_definitions(profile)`` makes them from one ``Profile`` value: its study design fixes the Phase 1
partitions, its resources and executor are bound, and ``PVA_DASK_SCHEDULER`` or ``PVA_DASK_CONFIG`` in
``environ`` picks the Dask executor instead (cluster.py). ``defs`` builds them, when Dagster loads this
module, for the profile that ``PVA_PROFILE`` names; a test or ``pva-rehearse`` builds its own from its own
profile.
"""

# ruff: noqa: E402  (the offline defaults are set before the assets import transformers and huggingface_hub)
from __future__ import annotations

from pva_dagster.study.runtime import apply_offline_defaults

apply_offline_defaults()

import os
from collections.abc import Mapping

import dagster as dg

from pva_dagster.assets import (
    latents,
    problems,
    readouts,
    seed_replicates,
    solutions,
    splits,
    steering,
    validation,
    weights,
)
from pva_dagster.cluster import for_cluster
from pva_dagster.jobs import JOBS
from pva_dagster.profiles import Profile, load_profile
from pva_dagster.resources.launch_defaults import keep_all_values_at_launch


def build_definitions(profile: Profile, environ: Mapping[str, str] = os.environ) -> dg.Definitions:
    """Assets (partitioned as ``profile.design`` says), checks, jobs, resources and executor of one profile.

    A run config that sets some fields of a resource (``--config-json``, the launchpad) keeps the profile's values
    of the others (resources/launch_defaults.py)."""
    executor, resources = for_cluster(profile.resources, environ)
    executor = executor or profile.executor
    return dg.Definitions(
        assets=[
            *dg.load_assets_from_modules(
                [problems, splits, weights, latents, validation, readouts, seed_replicates, steering]
            ),
            *solutions.phase1_assets(profile.design),
        ],
        asset_checks=dg.load_asset_checks_from_modules([splits]),
        jobs=JOBS,
        resources=keep_all_values_at_launch(resources),
        executor=executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The Definitions of the profile ``PVA_PROFILE`` names (default ``embedded``), built when Dagster loads them."""
    return build_definitions(load_profile())
