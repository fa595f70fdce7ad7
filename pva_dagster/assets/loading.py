"""The one way an asset gets the language model: claim a device from the pool, then load onto it."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

from pva_dagster.resources import DataStore, DevicePool, LanguageModel


@contextmanager
def model_on_device(
    context: dg.AssetExecutionContext, device_pool: DevicePool, language_model: LanguageModel, data_store: DataStore
) -> Iterator[tuple[str, Any, Any]]:
    """Yield ``(device, model, tokenizer)``; the device stays claimed (locked) until the block ends."""
    with device_pool.claim(context.run.tags, context.log.info) as device:
        model, tokenizer = language_model.load(data_store.layout, device)
        yield device, model, tokenizer
