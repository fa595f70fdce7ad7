"""Every asset value is stored where the data layout says, written atomically, and handed to downstream assets
as their inputs: no asset opens another asset's file by path.

A value is a DataFrame (one Parquet file), a dict of named DataFrames (one file per name: a table per split,
or the several tables of one step) or a str (a markdown page). A partitioned asset stores one file per
partition; an unpartitioned asset that reads it gets every partition the Dagster instance has materialized, as
a mapping ``partition key -> frame`` (Dagster's convention for a multi-partition input) whose frames are read
when first asked for, so that Phase 2 run on the sae split alone never reads Phase 1.2. Which partitions were
read is logged; the web UI shows any partition still missing.
"""

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import dagster as dg
import pandas as pd

from pva_dagster.partitions import TASK_RANGE_DIM, TEMPERATURE_DIM, dimension_keys, typed_partition_key
from pva_dagster.resources.data_store import DataStore
from pva_dagster.study import outputs, storage
from pva_dagster.study.layout import SPLIT_NAMES, DataLayout


def _phase2_file(layout: DataLayout, name: str) -> Path:
    """Phase 2's separation scores of a split, or its SAE quality table over every task."""
    if name == outputs.SAE_QUALITY_TABLE:
        return layout.sae_quality_file
    return layout.phase2_table(name, outputs.SCORES_TABLE)


# Assets whose value is a dict of named tables: the names it may hold and the file of each.
NAMED_TABLES: dict[str, tuple[tuple[str, ...], Callable[[DataLayout, str], Path]]] = {
    outputs.SEPARATION_SCORES: ((*SPLIT_NAMES, *outputs.PHASE2_SHARED_TABLES), _phase2_file),
    outputs.TOP_LATENTS: (SPLIT_NAMES, lambda layout, split: layout.phase2_table(split, outputs.TOP_TABLE)),
    outputs.CLASSIFICATION: (outputs.CLASSIFICATION_TABLES, DataLayout.phase3_table),
    outputs.READOUTS: (outputs.READOUT_TABLES, DataLayout.phase3_table),
    outputs.SAE_SEED_REPLICATES: (outputs.SAE_SEED_TABLES, DataLayout.phase3_table),
    outputs.STEERING_COEFFICIENTS: (outputs.STEERING_COEFFICIENT_TABLES, DataLayout.phase3_table),
    outputs.STEERING: (outputs.STEERING_TABLES, DataLayout.phase3_table),
}
# Assets whose value is one file outside TABLE_FOLDERS.
SINGLE_FILES: dict[str, Callable[[DataLayout], Path]] = {
    outputs.GENERAL_TEXT_FREQUENCY: lambda layout: layout.general_text_frequency_file,
    outputs.REPORT: lambda layout: layout.report_file,
}


def partition_file(layout: DataLayout, asset: str, key: str | dg.MultiPartitionKey) -> Path:
    """The Phase 1 dataset file of one partition (``0000-0024``, or ``task_range|temperature``)."""
    if asset == outputs.PHASE1_0_SOLUTIONS:
        return layout.phase1_0_dataset(str(key))
    if asset == outputs.PHASE1_2_SOLUTIONS:
        dims = dimension_keys(None, key)
        return layout.phase1_2_dataset(float(dims[TEMPERATURE_DIM]), dims[TASK_RANGE_DIM])
    raise ValueError(f"no partitioned file is laid out for asset {asset!r}")


class PartitionFrames(Mapping[str, pd.DataFrame]):
    """``partition key -> frame`` over the materialized partitions of a Phase 1 asset, each read on first access."""

    def __init__(self, asset: str, files: Mapping[str, Path]):
        self.asset, self.files = asset, dict(sorted(files.items()))
        self._read: dict[str, pd.DataFrame] = {}

    def __getitem__(self, key: str) -> pd.DataFrame:
        if key not in self._read:
            path = self.files[key]
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: materialize partition {key} of {self.asset} first")
            self._read[key] = pd.read_parquet(path)
        return self._read[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def _read_table(path: Path, asset: str) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: materialize {asset} first")
    return pd.read_parquet(path)


def _single_file(layout: DataLayout, asset: str) -> Path:
    return SINGLE_FILES[asset](layout) if asset in SINGLE_FILES else layout.table_file(asset)


def stored_value(layout: DataLayout, asset: str) -> object:
    """The value an unpartitioned asset stored, as its downstream assets get it (and as a step that finds nothing
    changed hands it on, assets/reuse.py)."""
    if asset in NAMED_TABLES:
        names, file_of = NAMED_TABLES[asset]
        found = {name: path for name in names if (path := file_of(layout, name)).exists()}
        if not found:
            raise FileNotFoundError(f"no table of {asset} under {layout.root}: materialize {asset} first")
        return {name: pd.read_parquet(path) for name, path in found.items()}
    path = _single_file(layout, asset)
    if path.suffix == ".md":
        return path.read_text(encoding="utf-8")
    return _read_table(path, asset)


class ParquetIOManager(dg.ConfigurableIOManager):
    store: DataStore

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        asset, layout = context.asset_key.path[-1], self.store.layout
        if context.has_asset_partitions:
            written = self._write_partitions(layout, asset, context, obj)
        elif asset in NAMED_TABLES:
            written = self._write_named(layout, asset, obj)
        elif isinstance(obj, str):
            written = {"": storage.write_text(SINGLE_FILES[asset](layout), obj)}
        else:
            written = {"": self._write_frame(_single_file(layout, asset), obj, asset)}
        context.add_output_metadata(
            {f"path {key}".strip(): dg.MetadataValue.path(str(path)) for key, path in written.items()}
        )

    def load_input(self, context: dg.InputContext) -> object:
        asset, layout = context.asset_key.path[-1], self.store.layout
        if context.has_asset_partitions:
            done = context.instance.get_materialized_partitions(context.asset_key)
            partitions_def = context.asset_partitions_def
            keys = [typed_partition_key(partitions_def, key) for key in context.asset_partition_keys if key in done]
            context.log.info(f"{asset}: {len(keys)} of {len(context.asset_partition_keys)} partitions materialized")
            return PartitionFrames(asset, {str(key): partition_file(layout, asset, key) for key in keys})
        return stored_value(layout, asset)

    @staticmethod
    def _write_frame(path: Path, obj: object, asset: str) -> Path:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{asset} returned {type(obj).__name__}, not a DataFrame")
        return storage.write_parquet(path, obj)

    def _write_partitions(
        self, layout: DataLayout, asset: str, context: dg.OutputContext, frames: object
    ) -> dict[str, Path]:
        """One file per partition of the run (one, or a single-run backfill's range): ``frames`` maps each key to
        its frame, and must hold exactly the run's keys."""
        keys = {str(key): key for key in context.asset_partition_keys}
        if not isinstance(frames, Mapping) or set(frames) != set(keys):
            raise TypeError(
                f"{asset} must return a dict partition key -> DataFrame for the partitions {sorted(keys)}, "
                f"got {frames!r:.200}"
            )
        return {
            key: self._write_frame(
                partition_file(layout, asset, typed_partition_key(context.asset_partitions_def, key)), frame, asset
            )
            for key, frame in frames.items()
        }

    def _write_named(self, layout: DataLayout, asset: str, tables: object) -> dict[str, Path]:
        names, file_of = NAMED_TABLES[asset]
        if not isinstance(tables, Mapping) or not tables or set(tables) - set(names):
            raise TypeError(f"{asset} must return a dict of DataFrames named from {names}, got {tables!r:.200}")
        written = {name: self._write_frame(file_of(layout, name), frame, asset) for name, frame in tables.items()}
        for name in set(names) - set(tables):  # a table of an earlier run's other choice is not this value's
            file_of(layout, name).unlink(missing_ok=True)
        return written
