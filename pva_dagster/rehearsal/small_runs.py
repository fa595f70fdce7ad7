"""Small real runs of the study, offline: a few embedded problems renumbered into one task range, the embedded
profile sized down (two SAE layers, one temperature, a short sweep), and materializing from its own
Definitions. The tests, the loopback Dask cluster (``dask_jobs``) and the benchmarks build on these."""


from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import dagster as dg

from pva_dagster.definitions import build_definitions
from pva_dagster.profiles import Profile, embedded_profile
from pva_dagster.resources import DataStore, DevicePool, EmbeddedModel, LocalProblems, StudyDesign
from pva_dagster.resources.language_model import EMBEDDED_MODEL_DIR
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.problems.embedded import embedded_records
from pva_dagster.study.problems.task_ranges import task_ranges

# A small run's steering sweep: two coefficients, one small, one that breaks solutions.
SHORT_STEERING_COEFFICIENTS: tuple[float, ...] = (0.1, 0.5)
# What every small run (a test's, the rehearsal's) shares: two samples a temperature, a short steering design.
SMALL_RUN: dict[str, Any] = {
    "samples_per_temperature": 2, "steering_coefficients": list(SHORT_STEERING_COEFFICIENTS), "steering_controls": 1,
    "steering_max_tasks": 3, "steering_sweep_max_tasks": 3, "steering_random_directions": 2,
}
# The task ranges of a small run: the embedded profile's (its Definitions' partitions come from its design), on
# its own problems whatever PVA_PROBLEMS says.
EMBEDDED_DESIGN: StudyDesign = embedded_profile().design
FIRST_RANGE, SECOND_RANGE = (
    r.key for r in task_ranges(EMBEDDED_DESIGN.max_task_id, EMBEDDED_DESIGN.task_range_size)[:2]
)
# Small embedded SAEs, as run config of the sae_weights asset (its training settings are asset config).
SMALL_SAE_TRAINING = {
    "ops": {"sae_weights": {"config": {
        "d_sae": 256, "k": 16, "corpus_tokens": 3000, "training_tokens": 6000, "corpus_files": 8,
    }}}
}


def write_problems(path: Path, source_ids: list[int], task_ids: list[int] | None = None) -> Path:
    """An MBPP .jsonl of the given embedded problems, renumbered ``task_ids`` (default 1..n: the first task range)."""
    by_id = {p["task_id"]: p for p in embedded_records()}
    new_ids = task_ids or list(range(1, len(source_ids) + 1))
    with path.open("w") as handle:
        for new_id, source_id in zip(new_ids, source_ids, strict=True):
            handle.write(json.dumps({**by_id[source_id], "task_id": new_id}) + "\n")
    return path


def link_embedded_model(data_root: Path, converted: Path) -> None:
    """Put the session's converted SmolLM2 where the embedded LanguageModel looks, instead of converting again."""
    target = DataLayout(data_root).models_dir / EMBEDDED_MODEL_DIR
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(converted, target_is_directory=True)


def small_design(**changes: Any) -> StudyDesign:
    """The embedded task ranges, two SAE layers, one Phase 1.2 temperature, a few tokens, a short steering
    sweep."""
    return StudyDesign(**{
        "max_task_id": EMBEDDED_DESIGN.max_task_id, "task_range_size": EMBEDDED_DESIGN.task_range_size,
        "sae_layers": [3, 9], "temperatures": [0.3],
        "max_new_tokens": 64, **SMALL_RUN,
        # Small SAEs are dense (k = 16 of 256: 6.25 % mean density): the filter is relative to the density, as
        # in the embedded profile.
        "general_text_density_multiple": 4.0, **changes,
    })


def small_profile(tmp_path: Path, problems: Path, **overrides: Any) -> Profile:
    """The embedded profile sized for a test (``small_design``), its data under ``tmp_path``; SAE sizes:
    ``SMALL_SAE_TRAINING``. ``overrides`` replace resources by name."""
    small = {
        "data_store": DataStore(root=str(tmp_path / "data")),
        "problem_source": LocalProblems(path=str(problems)),
        "language_model": EmbeddedModel(batch_size=8),
        "study_design": small_design(),
        "device_pool": DevicePool(devices=["cpu"], lock_dir=str(tmp_path / "locks"), poll_seconds=0.2),
    }
    return embedded_profile().with_resources(**{**small, **overrides})


def materialize_in_process(
    defs: dg.Definitions, selection: str | list[str], partition: str | None = None, run_config=None,
    instance: dg.DagsterInstance | None = None, raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialize ``selection`` in this process with the Definitions' assets, checks and resources."""
    # Typed to allow cacheable assets, which this project does not define (dg.materialize takes none).
    assets = cast(list[dg.AssetsDefinition | dg.SourceAsset], [*(defs.assets or []), *(defs.asset_checks or [])])
    return dg.materialize(
        assets, selection=selection, partition_key=partition, resources=defs.resources, run_config=run_config,
        instance=instance, raise_on_error=raise_on_error,
    )


def materialize(
    profile: Profile, selection: str | list[str], partition: str | None = None, run_config=None,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize ``selection`` with the Definitions built from ``profile`` (Dask left off)."""
    return materialize_in_process(build_definitions(profile, environ={}), selection, partition, run_config, instance)


# The models, Phase 0/0.1 and the general-text frequency: what the `prepare` job makes.
PREPARE = [
    "mbpp_problems", "difficulty_mapping", "extended_tests", "problem_splits", "language_model_weights",
    "sae_weights", "general_text_frequency",
]
