"""Every path the study reads or writes, built in one place.

File names are the seed study's, so its notebooks still find them; nothing else in the package joins paths
under ``data/`` by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pva_dagster.study.domain import LABELS, SPLIT_NAMES, temperature_tag
from pva_dagster.study.outputs import (
    DIFFICULTY_MAPPING,
    EXTENDED_TESTS,
    GENERAL_TEXT_CUTOFFS,
    MBPP_PROBLEMS,
    PROBLEM_SPLITS,
)

# Where outputs go unless a DataStore says otherwise: $PVA_DATA_DIR, else <project root>/data.
DATA_DIR_ENV = "PVA_DATA_DIR"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Folder of each table-valued asset's Parquet file (the seed study's phase folders).
TABLE_FOLDERS = {
    MBPP_PROBLEMS: "phase0", DIFFICULTY_MAPPING: "phase0", EXTENDED_TESTS: "phase0", PROBLEM_SPLITS: "phase0_1",
    GENERAL_TEXT_CUTOFFS: "phase2",
}


def default_data_root() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or PROJECT_ROOT / "data")


@dataclass(frozen=True)
class DataLayout:
    root: Path

    # Phase 0 / 0.1
    def table_file(self, name: str) -> Path:
        """The Parquet file of a table-valued asset, e.g. ``phase0/difficulty_mapping.parquet``."""
        try:
            folder = TABLE_FOLDERS[name]
        except KeyError:
            raise ValueError(f"no file is laid out for table {name!r}; known: {sorted(TABLE_FOLDERS)}") from None
        return self.root / folder / f"{name}.parquet"

    @property
    def phase0_1_dir(self) -> Path:
        return self.root / "phase0_1"

    def split_file(self, split: str) -> Path:
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLIT_NAMES}")
        return self.phase0_1_dir / f"{split}_mbpp.parquet"

    @property
    def split_metadata_file(self) -> Path:
        return self.phase0_1_dir / "split_metadata.json"

    # Models and SAEs made offline for the embedded profile
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def sae_dir(self, layer: int) -> Path:
        return self.root / "saes" / f"layer_{layer}"

    @property
    def sae_spliced_loss_file(self) -> Path:
        """Each SAE's effect on next-token loss when spliced into the model, one row per layer (``sae_weights``)."""
        return self.root / "saes" / "spliced_loss.parquet"

    def sae_variant_dir(self, layer: int, seed: int) -> Path:
        """A seed variant of layer ``layer``'s SAE: outside the primary's folder, which a retraining replaces."""
        return self.root / "saes" / "variants" / f"layer_{layer}" / f"seed_{seed}"

    @property
    def sae_variant_seeds_file(self) -> Path:
        """The seeds of the seed variants the last ``sae_weights`` made current (its downstream reads them)."""
        return self.root / "saes" / "variants" / "seeds.json"

    # Phase 1.0: temperature 0, every problem
    @property
    def phase1_0_dir(self) -> Path:
        return self.root / "phase1_0"

    def phase1_0_dataset(self, partition: str) -> Path:
        return self.phase1_0_dir / f"dataset_{partition}.parquet"

    def phase1_0_activation(self, label: str, task_id: int, layer: int) -> Path:
        return self.phase1_0_dir / "activations" / _label(label) / f"{task_id}_layer_{layer}.npz"

    # Phase 1.2: validation split at several temperatures, several samples
    @property
    def phase1_2_dir(self) -> Path:
        return self.root / "phase1_2"

    def phase1_2_dataset(self, temperature: float, partition: str) -> Path:
        return self.phase1_2_dir / f"dataset_temp_{temperature_tag(temperature)}_{partition}.parquet"

    def phase1_2_activation(self, task_id: int, layer: int) -> Path:
        """A task's residual at one layer, shared by its samples at every temperature (made once per task)."""
        return self.phase1_2_dir / "activations" / f"task_{task_id:04d}_layer_{layer}.npz"

    @staticmethod
    def records_in_progress(dataset: Path) -> Path:
        """``dataset_X.parquet -> dataset_X.records.parquet``: a Phase 1 partition's records as they are made,
        after each batch (a re-run resumes from them, and keeps them for the next); the dataset file is written
        once, by the IO manager, when the partition is done."""
        return dataset.with_name(dataset.stem + ".records.parquet")

    @staticmethod
    def metadata_for(dataset: Path) -> Path:
        """``dataset_X.parquet -> dataset_X_metadata.json``."""
        return dataset.with_name(dataset.stem + "_metadata.json")

    # Phase 2 / 3
    def phase2_dir(self, split: str) -> Path:
        return self.root / "phase2" / split

    def phase2_table(self, split: str, name: str) -> Path:
        """A per-split Phase 2 table, e.g. ``phase2/sae/top_latents.parquet``."""
        return self.phase2_dir(split) / f"{name}.parquet"

    @property
    def sae_quality_file(self) -> Path:
        """How well each SAE represents the Phase 1.0 residuals, one row per layer (a table of ``phase2``)."""
        return self.root / "phase2" / "sae_quality.parquet"

    @property
    def general_text_frequency_file(self) -> Path:
        return self.root / "phase2" / "general_text_frequency.parquet"

    def phase3_dir(self) -> Path:
        return self.root / "phase3"

    def phase3_table(self, name: str) -> Path:
        """A Phase 3 table, e.g. ``phase3/classification.parquet``."""
        return self.phase3_dir() / f"{name}.parquet"

    @property
    def report_file(self) -> Path:
        return self.phase3_dir() / "report.md"

    @property
    def steering_units_dir(self) -> Path:
        """One resumable Parquet file per steering unit."""
        return self.phase3_dir() / "steering"


def _label(label: str) -> str:
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    return label
