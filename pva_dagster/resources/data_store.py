"""Where the study's files live: one root, one layout."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from pva_dagster.study.layout import DATA_DIR_ENV, DataLayout, default_data_root


class DataStore(dg.ConfigurableResource):
    root: str = Field(
        default_factory=lambda: str(default_data_root()),
        description=f"Folder for every output of the study (default <project>/data, or ${DATA_DIR_ENV}).",
    )

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.root).resolve())
