"""The Dagster Definitions of pva-dagster, found by ``dg`` and ``dagster dev`` through ``[tool.dg]`` in
pyproject.toml (and by ``dagster asset materialize`` through .venv/bin/activate, see the Makefile).
``PVA_PROFILE`` picks the resources (see profiles.py); ``PVA_DASK_SCHEDULER`` or ``PVA_DASK_CONFIG`` runs the
steps on a Dask cluster (see cluster.py)."""

# ruff: noqa: E402  (the offline defaults are set before the assets import transformers and huggingface_hub)
from __future__ import annotations

from pva_dagster.study.runtime import apply_offline_defaults

apply_offline_defaults()

import dagster as dg

from pva_dagster.assets import models, phase0, phase0_1, phase1, phase2, phase3, phase3_steering
from pva_dagster.cluster import for_cluster
from pva_dagster.jobs import JOBS
from pva_dagster.profiles import ACTIVE

executor, resources = for_cluster(ACTIVE.resources)
defs = dg.Definitions(
    assets=dg.load_assets_from_modules([phase0, phase0_1, models, phase1, phase2, phase3, phase3_steering]),
    asset_checks=dg.load_asset_checks_from_modules([phase0_1]),
    jobs=JOBS,
    resources=resources,
    executor=executor,
)
