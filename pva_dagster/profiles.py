"""Run profiles in one table: ``embedded`` (offline, on a laptop CPU) and ``study`` (the real study).

A profile is one value: its resources, the study design among them. ``definitions.build_definitions(profile)``
makes the Definitions from it, partitions included, so two profiles give two Definitions in one process. Pick
one with ``PVA_PROFILE=embedded|study`` (default ``embedded``) before starting Dagster, and its problem set with
``PVA_PROBLEMS`` (``Profile.with_problems``); a small run (a test, ``pva-rehearse``) derives its own profile with
``Profile.with_design`` / ``with_resources``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from pva_dagster.constants import DEFAULT_PROFILE, DEVICES_ENV, MODEL_DTYPE_ENV, PROBLEMS_ENV, PROFILE_ENV
from pva_dagster.resources import (
    DataStore,
    DevicePool,
    EmbeddedModel,
    EmbeddedProblems,
    EmbeddedSAEs,
    HubModel,
    HubProblems,
    PretrainedSAEs,
    PretrainedVariant,
    Sandbox,
    StudyDesign,
)
from pva_dagster.resources.parquet_io import ParquetIOManager
from pva_dagster.resources.problem_source import problem_source_named
from pva_dagster.study.analysis.release_variants import L0_CHOICES
from pva_dagster.study.problems.embedded import EMBEDDED_MAX_TASK_ID

# GemmaScope's residual SAEs of every L0 level (the canonical release holds one per width): {l0} is filled per
# layer from SAELens's table, since the levels differ between layers.
GEMMASCOPE_L0_LEVELS = "layer_{layer}/width_16k/average_l0_{l0}"

# The embedded profile's steering grid: the middle of the small grid. On the embedded model 0.02 changed no label
# and at 0.5 the controls break every correct solution (docs/runs.md).
EMBEDDED_STEERING_COEFFICIENTS: tuple[float, ...] = (0.05, 0.1, 0.2)


@dataclass(frozen=True)
class Profile:
    name: str
    resources: dict[str, Any]
    # How a launched run executes its steps (None: Dagster's multiprocess default); Dask replaces it when the
    # environment names a cluster (cluster.py).
    executor: dg.ExecutorDefinition | None = None

    @property
    def design(self) -> StudyDesign:
        return self.resources["study_design"]

    @property
    def data_store(self) -> DataStore:
        return self.resources["data_store"]

    def with_resources(self, **overrides: Any) -> Profile:
        """This profile with some resources replaced; a new ``data_store`` moves every store that lives in it."""
        resources = {**self.resources, **overrides}
        if "data_store" in overrides:
            resources = {**resources, **_stores(overrides["data_store"]), **overrides}
        return replace(self, resources=resources)

    def with_design(self, **changes: Any) -> Profile:
        """This profile with some study-design fields changed (validated as a new ``StudyDesign``)."""
        return self.with_resources(study_design=StudyDesign(**{**self.design.model_dump(), **changes}))

    def with_problems(self, spec: str) -> Profile:
        """This profile on the problem set ``spec`` names (``problem_source_named``), its partitions covering the
        set's task IDs; the task-range size and the rest of the design stay the profile's."""
        source, max_task_id = problem_source_named(spec)
        return self.with_resources(problem_source=source).with_design(max_task_id=max_task_id)


def step_io_manager(data_store: DataStore) -> dg.FilesystemIOManager:
    """Values passed between the steps of a graph asset (the steering units), beside the data every worker sees."""
    return dg.FilesystemIOManager(base_dir=str(data_store.layout.root / "dagster_steps"))


def _stores(data_store: DataStore) -> dict[str, Any]:
    """The resources that keep their files under the data store's root."""
    return {
        "data_store": data_store,
        "io_manager": ParquetIOManager(store=data_store),
        "step_io_manager": step_io_manager(data_store),
    }


def _shared(data_store: DataStore) -> dict[str, Any]:
    return {**_stores(data_store), "duckdb": DuckDBResource(database=":memory:")}


# The embedded run's exploratory rank test needs 19 random directions on every validation problem of its
# experiments (about 1,500 more generations than the rest of steering together): more than the README run's time
# budget allows on a 2-core CPU. Off here, on in the gemma profile (docs/runs.md has one embedded run with it).
EMBEDDED_RANDOM_DIRECTIONS = 0
# Problems per label in the embedded coefficient sweep (see the design below).
EMBEDDED_SWEEP_TASKS_PER_LABEL = 16


def embedded_profile() -> Profile:
    data_store = DataStore()
    return Profile(
        "embedded",
        {
            **_shared(data_store),
            "problem_source": EmbeddedProblems(),
            # A laptop may lack bubblewrap or user namespaces: run, but say so (README "Safety and crash
            # behaviour"). The gemma profile requires the isolation.
            "sandbox": Sandbox(isolation="warn"),
            # batch_size None: the measured CPU size (batched.CPU_BATCH_SIZE). dtype auto: bfloat16 on a CPU
            # that computes it natively (2.5x the float32 throughput of Phase 1 here), else float32.
            "language_model": EmbeddedModel(dtype=os.environ.get(MODEL_DTYPE_ENV, "auto")),
            # Trained by the sae_weights asset with its config's settings (SAETrainingConfig).
            "sae_source": EmbeddedSAEs(),
            "study_design": StudyDesign(
                # Sized so that the README's run finishes on a 2-core CPU (see README "Profiles").
                max_new_tokens=128,
                max_task_id=EMBEDDED_MAX_TASK_ID,
                # Two partitions of 100 tasks (IDs 1-200): Phase 1.2's partitions then hold ~40 validation
                # rows, so its batches of 32 fill (ranges of 25 left 9-13 rows a batch, at ~60 % of the rate).
                task_range_size=101,
                sae_layers=[6, 12, 18, 24],
                # One sample per temperature: with 200 problems (80 validation), Phase 1.2 is 320 generations,
                # about what 84 problems x 2 samples were; the gemma profile samples 5.
                samples_per_temperature=1,
                # Small multiples of the residual norm (half the norm breaks every correct solution here) on every
                # validation problem, against three matched controls (a claim must hold against each; each control
                # adds about 250 generations, see docs/runs.md). The coefficient sweep runs on 16 problems per label
                # drawn from the 120 non-validation ones (about 1.6x the 20 of the hyperparams split alone; all 120
                # would take six times that); the gemma profile sweeps all of them.
                steering_coefficients=list(EMBEDDED_STEERING_COEFFICIENTS),
                steering_controls=3,
                steering_max_tasks=None,
                steering_sweep_max_tasks=EMBEDDED_SWEEP_TASKS_PER_LABEL,
                steering_random_directions=EMBEDDED_RANDOM_DIRECTIONS,
                # A TopK SAE (k = 32 of 2,048) has a mean density of 1.56 %: the study's absolute 2 % would drop
                # latents firing 1.3x as often as the average one. Dropped here: 4x the SAE's mean density.
                general_text_density_multiple=4.0,
            ),
            "device_pool": DevicePool(devices=["cpu"]),
        },
        # One CPU device: the steps that need it run one at a time anyway, so one process saves a start-up (and a
        # model load) per step.
        executor=dg.in_process_executor,
    )


def gemma_profile() -> Profile:
    data_store = DataStore()
    devices = os.environ.get(DEVICES_ENV, "cuda:0").split(",")
    return Profile(
        "gemma",
        {
            **_shared(data_store),
            "problem_source": HubProblems(),
            "sandbox": Sandbox(isolation="required"),
            "language_model": HubModel(model_id="google/gemma-2-2b", dtype=os.environ.get(MODEL_DTYPE_ENV, "bfloat16")),
            "sae_source": PretrainedSAEs(
                release="gemma-scope-2b-pt-res-canonical",
                sae_id="layer_{layer}/width_16k/canonical",
                # GemmaScope trains each width and L0 from one seed: its replicates of the primary are the same
                # width at the sparsest and densest L0 it publishes for each layer.
                variants=[
                    PretrainedVariant(release="gemma-scope-2b-pt-res", sae_id=GEMMASCOPE_L0_LEVELS, l0=level)
                    for level in L0_CHOICES
                ],
            ),
            # Gemma-2-2B has 26 blocks and GemmaScope an SAE for each.
            "study_design": StudyDesign(max_task_id=974, task_range_size=50, sae_layers=list(range(26))),
            "device_pool": DevicePool(devices=devices),
        },
    )


PROFILES = {"embedded": embedded_profile, "gemma": gemma_profile}
# Former names, still read (with a warning) so that existing shells and job scripts keep working.
RENAMED_PROFILES = {"study": "gemma"}


def load_profile(name: str | None = None, problems: str | None = None) -> Profile:
    """The profile ``name`` (default ``$PVA_PROFILE``) on the problem set ``problems`` (default ``$PVA_PROBLEMS``;
    unset or empty: the profile's own)."""
    name = name or os.environ.get(PROFILE_ENV, DEFAULT_PROFILE)
    if name in RENAMED_PROFILES:
        warnings.warn(
            f"profile {name!r} is now called {RENAMED_PROFILES[name]!r}; set ${PROFILE_ENV}={RENAMED_PROFILES[name]}",
            FutureWarning, stacklevel=2,
        )
        name = RENAMED_PROFILES[name]
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (${PROFILE_ENV}); expected one of {sorted(PROFILES)}")
    profile = PROFILES[name]()
    problems = problems or os.environ.get(PROBLEMS_ENV)
    return profile.with_problems(problems) if problems else profile

