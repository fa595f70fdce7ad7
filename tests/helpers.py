"""Builders shared by the Dagster-level tests: small real problem sets and resource sets in a temp folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg

from pva_dagster.profiles import load_profile
from pva_dagster.resources import DataStore, DevicePool, LanguageModel, ProblemSource, SAESource, StudyDesign
from pva_dagster.resources.language_model import EMBEDDED_MODEL_DIR
from pva_dagster.resources.parquet_io import ParquetIOManager
from pva_dagster.study.embedded_problems import embedded_records
from pva_dagster.study.layout import DataLayout

FIRST_RANGE = "0000-0024"


def write_problems(path: Path, source_ids: list[int]) -> Path:
    """An MBPP .jsonl of the given embedded problems, renumbered 1..n so they fall in the first task range."""
    by_id = {p["task_id"]: p for p in embedded_records()}
    with path.open("w") as handle:
        for new_id, source_id in enumerate(source_ids, start=1):
            handle.write(json.dumps({**by_id[source_id], "task_id": new_id}) + "\n")
    return path


def link_embedded_model(data_root: Path, converted: Path) -> None:
    """Put the session's converted SmolLM2 where the embedded LanguageModel looks, instead of converting again."""
    target = DataLayout(data_root).models_dir / EMBEDDED_MODEL_DIR
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(converted, target_is_directory=True)


def small_resources(tmp_path: Path, problems: Path, **overrides: Any) -> dict[str, Any]:
    """The embedded profile's resources, sized for a test: one task range, small SAEs, a few tokens."""
    data_store = DataStore(root=str(tmp_path / "data"))
    resources = {
        **load_profile("embedded").resources,
        "data_store": data_store,
        "io_manager": ParquetIOManager(store=data_store),
        "problem_source": ProblemSource(source="local", path=str(problems)),
        "language_model": LanguageModel(source="embedded", max_new_tokens=64, batch_size=8),
        "sae_source": SAESource(
            source="embedded", d_sae=256, k=16, corpus_tokens=3000, training_tokens=6000, corpus_files=8
        ),
        "study_design": StudyDesign(
            max_task_id=24, task_range_size=25, sae_layers=[3, 9], temperatures=[0.3], samples_per_temperature=2,
            steering_coefficients=[0.5, 1.0], steering_controls=1, steering_max_tasks=3,
        ),
        "device_pool": DevicePool(devices=["cpu"], lock_dir=str(tmp_path / "locks"), poll_seconds=0.2),
    }
    resources.update(overrides)
    return resources


def materialize(resources: dict[str, Any], selection: str | list[str], partition: str | None = None, run_config=None):
    from pva_dagster.definitions import defs

    assets = list(defs.assets)
    checks = list(defs.asset_checks or [])
    return dg.materialize(
        [*assets, *checks], selection=selection, partition_key=partition, resources=resources,
        run_config=run_config,
    )
