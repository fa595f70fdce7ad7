"""Where the study's files live: one root, one layout."""


import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from pva_dagster.constants import DATA_DIR_ENV
from pva_dagster.study.layout import DataLayout

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> str:
    return os.environ.get(DATA_DIR_ENV, str(PROJECT_ROOT / "data"))


class DataStore(dg.ConfigurableResource):
    root: str = Field(
        default_factory=default_data_dir,
        description=f"Folder for every output of the study (default <project>/data, or ${DATA_DIR_ENV}).",
    )

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.root).resolve())
