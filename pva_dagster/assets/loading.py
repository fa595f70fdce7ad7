"""The one way an asset gets a device and the language model: claim a device (from the pool, or the Dask worker's
own), then load the model onto it. Every such step records where it ran (worker, host, pid), which is how a
cluster run is read."""

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dagster as dg
import torch

from pva_dagster.resources import DataStore, DeviceSource, LanguageModel
from pva_dagster.resources.devices import worker_identity
from pva_dagster.study.layout import DataLayout

T = TypeVar("T")
StepContext = dg.AssetExecutionContext | dg.OpExecutionContext


@contextmanager
def claimed_device(context: StepContext, device_pool: DeviceSource, keep_model: bool = False) -> Iterator[str]:
    """Yield the step's device, claimed until the block ends, and record where the step runs."""
    with device_pool.claim(context.run.tags, context.log.info) as device:
        where = worker_identity()
        context.add_output_metadata(
            {"worker": where["worker"], "worker_host": where["host"], "worker_pid": where["pid"]}
        )
        yield device


@contextmanager
def model_on_device(
    context: StepContext, device_pool: DeviceSource, language_model: LanguageModel, data_store: DataStore
) -> Iterator[tuple[str, Any, Any]]:
    """Yield ``(device, model, tokenizer)``; the device stays claimed (locked) until the block ends."""
    with claimed_device(context, device_pool, keep_model=True) as device:
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
