"""Table-valued assets are stored as Parquet where the data layout says, written atomically."""


import dagster as dg
import pandas as pd

from pva_dagster.resources.data_store import DataStore
from pva_dagster.study import storage


class ParquetIOManager(dg.ConfigurableIOManager):
    store: DataStore

    def _path(self, context: dg.OutputContext | dg.InputContext):
        return self.store.layout.table_file(context.asset_key.path[-1])

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} returned {type(obj).__name__}, not a DataFrame")
        path = storage.write_parquet(self._path(context), obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path)), "rows": len(obj)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: materialize {context.asset_key.to_user_string()} first")
        return pd.read_parquet(path)
