"""One loaded language model per process, reused by the steps that run one after another in it.

A Dask worker runs step after step in one process (each steering unit, each Phase 1 partition), and so does
``pva-study`` (its runs execute in-process): without this, every step loads the same weights again. The cache
holds at most one model, keyed by what was loaded (weights, dtype, device, and for a local folder the size and
mtime of its files, so rewritten weights load again); asking for another key frees the held one first, so a
device never carries two.

Freeing is explicit: :meth:`ModelCache.release` drops the held model, and a borrow with ``keep=False`` takes the
model out of the cache for its block (Phase 2 frees the model before its SAEs load). A borrowed model is lent to
one block at a time, and any forward hook left on it when the block ends (a steering vector not removed) makes
the cache drop it, so no hook ever reaches the next step.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class ModelKey:
    weights: str  # a folder or a hub id
    dtype: str
    device: str
    files: tuple[tuple[str, int, int], ...] = ()  # (name, size, mtime_ns) of a local folder's files

    @classmethod
    def of(cls, weights: str, dtype: str, device: str) -> ModelKey:
        folder = Path(weights).expanduser()
        files = tuple(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()
        ) if folder.is_dir() else ()
        return cls(weights, dtype, device, files)


def hook_count(model: Any) -> int:
    """Forward (pre-)hooks registered on the model's modules: torch keeps them in these private dicts only."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def release_memory(device: str) -> None:
    """Return what freed tensors held: collect cycles (hooks, closures), then the CUDA cache on a GPU."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


class ModelCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: ModelKey | None = None
        self._entry: tuple[Any, Any] | None = None
        self._hooks = 0  # hooks the model had when loaded (transformers may register its own)
        self._lent = False
        self.loads = 0  # models loaded by this cache (tests and logs read it)

    @property
    def held(self) -> ModelKey | None:
        return self._key

    def release(self) -> None:
        """Drop the held model (if any) and return its memory."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        key, self._key, self._entry = self._key, None, None
        if key is not None:
            release_memory(key.device)

    @contextmanager
    def borrow(
        self, key: ModelKey, load: Callable[[], tuple[Any, Any]], keep: bool = True
    ) -> Iterator[tuple[Any, Any]]:
        """Yield ``(model, tokenizer)`` for ``key``, loading it unless held. ``keep=False``: the cache lets go of it
        (the caller drops its names, then calls :func:`release_memory`)."""
        with self._lock:
            if self._lent:
                raise RuntimeError(
                    "the process's language model is lent to another step: one step at a time per process "
                    "(start Dask workers with --nthreads 1)"
                )
            if self._key != key:
                self._drop()  # first: never two models on a device
                self._entry, self._key = load(), key
                self._hooks = hook_count(self._entry[0])
                self.loads += 1
            entry, self._lent = self._entry, True
            if not keep:
                self._key = self._entry = None
        assert entry is not None
        failed = False
        try:
            yield entry
        except BaseException:
            failed = True
            raise
        finally:
            with self._lock:
                self._lent = False
                leaked = hook_count(entry[0]) - self._hooks
                if leaked and self._entry is entry:
                    self._drop()
            del entry  # with keep=False the caller frees the model: release_memory once its names are gone
            if leaked and not failed:
                raise RuntimeError(f"{leaked} forward hook(s) were left on {key.weights}; the model was dropped")


# The process's cache: a Dask worker's and pva-study's steps share it.
MODELS = ModelCache()
