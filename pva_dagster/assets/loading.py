"""The one way an asset gets the language model: claim a device (from the pool, or the Dask worker's own), then
load onto it. Every such step records where it ran (worker, host, pid), which is how a cluster run is read."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

from pva_dagster.resources import DataStore, DeviceSource, LanguageModel
from pva_dagster.resources.devices import worker_identity


@contextmanager
def model_on_device(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    device_pool: DeviceSource,
    language_model: LanguageModel,
    data_store: DataStore,
) -> Iterator[tuple[str, Any, Any]]:
    """Yield ``(device, model, tokenizer)``; the device stays claimed (locked) until the block ends."""
    with device_pool.claim(context.run.tags, context.log.info) as device:
        where = worker_identity()
        context.add_output_metadata(
            {"worker": where["worker"], "worker_host": where["host"], "worker_pid": where["pid"]}
        )
        model, tokenizer = language_model.load(data_store.layout, device)
        yield device, model, tokenizer
