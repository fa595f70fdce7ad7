"""The one way an asset gets the language model: claim a device from the pool, then load onto it."""

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dagster as dg
import torch

from pva_dagster.resources import DataStore, DevicePool, LanguageModel
from pva_dagster.study.layout import DataLayout

T = TypeVar("T")


@contextmanager
def model_on_device(
    context: dg.AssetExecutionContext, device_pool: DevicePool, language_model: LanguageModel, data_store: DataStore
) -> Iterator[tuple[str, Any, Any]]:
    """Yield ``(device, model, tokenizer)``; the device stays claimed (locked) until the block ends."""
    with device_pool.claim(context.run.tags, context.log.info) as device:
        model, tokenizer = language_model.load(data_store.layout, device)
        yield device, model, tokenizer


def with_model_released(
    language_model: LanguageModel, layout: DataLayout, device: str, work: Callable[[Any, Any], T]
) -> T:
    """Load the model on ``device`` (already claimed), return ``work(model, tokenizer)``, and free the model
    before returning, so that what follows runs without it. ``work`` must return only what outlives the model
    (CPU arrays, numbers): a tensor on the device or a view into the model's memory would keep it alive."""
    model, tokenizer = language_model.load(layout, device)
    try:
        return work(model, tokenizer)
    finally:
        del model, tokenizer
        release_memory(device)


def release_memory(device: str) -> None:
    """Return what freed tensors held: collect cycles (hooks, closures), then the CUDA cache on a GPU."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
