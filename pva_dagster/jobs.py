"""Jobs: the pipeline in the order one machine runs it (one partitions definition per job)."""

from __future__ import annotations

import dagster as dg

from pva_dagster.constants import GROUP_MODELS, GROUP_PROBLEMS
from pva_dagster.study.outputs import GENERAL_TEXT_FREQUENCY, PHASE1_0_SOLUTIONS, PHASE1_2_SOLUTIONS, SEPARATION_SCORES

prepare_job = dg.define_asset_job(
    "prepare",
    selection=(
        dg.AssetSelection.groups(GROUP_PROBLEMS, GROUP_MODELS) | dg.AssetSelection.assets(GENERAL_TEXT_FREQUENCY)
    ),
    description="Phase 0 and 0.1, the model and SAE weights, and how often each SAE latent fires on general text.",
)
phase1_0_job = dg.define_asset_job("phase1_0", selection=[PHASE1_0_SOLUTIONS])
phase1_2_job = dg.define_asset_job("phase1_2", selection=[PHASE1_2_SOLUTIONS])

analysis_job = dg.define_asset_job(
    "analysis", selection=dg.AssetSelection.assets(SEPARATION_SCORES).downstream(),
    description="Phase 2 and everything downstream (the same assets as --select 'phase2*').",
)

JOBS = [prepare_job, phase1_0_job, phase1_2_job, analysis_job]
# The order in which `pva-study` runs them on one machine.
JOB_ORDER = ["prepare", "phase1_0", "phase1_2", "analysis"]
