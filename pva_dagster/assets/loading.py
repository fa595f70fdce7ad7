"""The one way an asset gets a device and the language model: claim a device (from the pool, or the Dask worker's
own), then take the model from the process's cache (resources/model_cache.py) or load it onto the device.

Every such step records where it ran (worker, host, pid), which is how a cluster run is read. A step that needs
the device but not the model (SAEs only) frees a cached model first, as the step that loads the model for a
while (:func:`with_model_released`) frees it after: the SAEs then get the memory the model had.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import dagster as dg

from pva_dagster.resources import DataStore, DeviceSource, LanguageModel, Sandbox, StudyDesign
from pva_dagster.resources.devices import worker_identity
from pva_dagster.resources.model_cache import MODELS, ModelKey, release_memory
from pva_dagster.study.generation.solutions import Generator
from pva_dagster.study.layout import DataLayout

T = TypeVar("T")
StepContext = dg.AssetExecutionContext | dg.OpExecutionContext


@contextmanager
def claimed_device(context: StepContext, device_pool: DeviceSource, keep_model: bool = False) -> Iterator[str]:
    """Yield the step's device, claimed until the block ends, and record where the step runs. Unless
    ``keep_model``, a model this process still holds is freed first (the step has the device to itself)."""
    if not keep_model:
        MODELS.release()
    with device_pool.claim(context.run.tags, context.log.info) as device:
        where = worker_identity()
        context.add_output_metadata(
            {"worker": where["worker"], "worker_host": where["host"], "worker_pid": where["pid"]}
        )
        yield device


def _key(language_model: LanguageModel, layout: DataLayout, device: str) -> ModelKey:
    return ModelKey.of(language_model.weights(layout), language_model.dtype_on(device)[0], device)


@contextmanager
def model_on_device(
    context: StepContext, device_pool: DeviceSource, language_model: LanguageModel, data_store: DataStore
) -> Iterator[tuple[str, Any, Any]]:
    """Yield ``(device, model, tokenizer)``; the device stays claimed until the block ends, and the model stays
    loaded in this process for the next step that asks for the same weights on the same device."""
    layout = data_store.layout
    with claimed_device(context, device_pool, keep_model=True) as device:
        key, loads_before = _key(language_model, layout, device), MODELS.loads
        with MODELS.borrow(key, lambda: language_model.load(layout, device)) as (model, tokenizer):
            reused = MODELS.loads == loads_before
            why = language_model.dtype_on(device)[1]
            context.log.info(
                f"model {key.weights} on {device} in {key.dtype} ({why}): "
                f"{'reused in this process' if reused else 'loaded'}"
            )
            context.add_output_metadata({"model": "reused" if reused else "loaded", "model_dtype": key.dtype})
            yield device, model, tokenizer


@dataclass(frozen=True)
class GenerationResources:
    """The resources every generating step (Phase 1, a steering group) uses together."""

    language_model: LanguageModel
    study_design: StudyDesign
    data_store: DataStore
    sandbox: Sandbox
    device_pool: DeviceSource


@contextmanager
def generator_on_device(context: StepContext, resources: GenerationResources) -> Iterator[tuple[str, Generator]]:
    """Yield ``(device, generator)``: the model on a claimed device (as :func:`model_on_device`), bundled with the
    study design's generation settings and the sandbox's limits, as Phase 1 and every steering unit use it."""
    language_model, data_store, sandbox = resources.language_model, resources.data_store, resources.sandbox
    with model_on_device(context, resources.device_pool, language_model, data_store) as (device, model, tokenizer):
        yield device, language_model.generator(
            model, tokenizer, data_store.layout, resources.study_design, sandbox.limits, sandbox.max_workers
        )


def with_model_released(
    language_model: LanguageModel, layout: DataLayout, device: str, work: Callable[[Any, Any], T]
) -> T:
    """Load the model on ``device`` (already claimed; a model this process holds is taken, not reloaded), return
    ``work(model, tokenizer)``, and free the model before returning, so that what follows runs without it.
    ``work`` must return only what outlives the model (CPU arrays, numbers): a tensor on the device or a view
    into the model's memory would keep it alive."""
    key = _key(language_model, layout, device)
    with MODELS.borrow(key, lambda: language_model.load(layout, device), keep=False) as entry:
        result = work(*entry)
        del entry
    release_memory(device)
    return result
