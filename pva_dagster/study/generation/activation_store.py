"""Where Phase 1 stores the residual stream at the last prompt token, one NPZ file per layer.

Two layouts, one class each:

- ``PerRecordActivations`` (Phase 1.0: one greedy sample per task): a file per (record, layer) under the
  record's label folder, as in the seed study.
- ``SharedTaskActivations`` (Phase 1.2): the residual at the last prompt token depends on the prompt and the
  model only, not on the temperature or the sample, so a file per (task, layer) is shared by every sample of
  every temperature partition; each record's ``activation_files`` points at those shared files. A file carries
  a fingerprint of what made it (``made_by``: the prompt, the model, the prompt truncation, the hook point),
  so a partition reuses a file made the same way and rewrites one made from another prompt or model.
"""

from __future__ import annotations

import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pva_dagster.study import storage
from pva_dagster.study.domain import CORRECT, INCORRECT
from pva_dagster.study.generation.residual import hook_name
from pva_dagster.study.records import fingerprint

MADE_BY = "made_by"  # the NPZ entry holding the fingerprint of what made a shared file
# (label, task_id, sample, layer) -> the file of one record's residual at one layer
RecordPath = Callable[[str, int, int, int], Path]
# (task_id, layer) -> the file of one task's residual at one layer
TaskPath = Callable[[int, int], Path]


class ActivationStore(ABC):
    """Writes a record's residuals [n_layers, d_model] and returns the files, one per layer, in layer order."""

    @abstractmethod
    def producer(self) -> dict[str, Any]:
        """What this layout adds to the records' fingerprint (a record pointing at another layout is stale)."""

    @abstractmethod
    def save(
        self, record: dict[str, Any], residuals: np.ndarray, layers: Sequence[int], source: str
    ) -> list[str]:
        """``source``: fingerprint of what the record's prompt residuals depend on (``residual_source``)."""

    @abstractmethod
    def files_for(self, record: dict[str, Any], layers: Sequence[int]) -> list[Path]:
        """Where this store keeps the record's residual at each of ``layers``."""

    def relocated(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """A resumed record pointed at this store's files, or None where they are missing (the record is then
        made again). Its files may lie elsewhere: in the data folder it was copied from (the copies here are
        used), or under the label it had before it was judged again (they are moved here)."""
        files = self.files_for(record, [int(layer) for layer in record["layers"]])
        stored = [Path(f) for f in record["activation_files"]]
        if files == stored:
            return record
        if not all(f.is_file() for f in files):
            if not all(f.is_file() for f in stored):
                return None
            for source, target in zip(stored, files, strict=True):
                target.parent.mkdir(parents=True, exist_ok=True)
                source.replace(target)  # one folder tree: an atomic rename
        return {**record, "activation_files": [str(f) for f in files]}


class PerRecordActivations(ActivationStore):
    def __init__(self, path: RecordPath):
        self.path = path

    def producer(self) -> dict[str, Any]:
        return {}  # the seed study's layout, one file per record and layer

    def files_for(self, record: dict[str, Any], layers: Sequence[int]) -> list[Path]:
        return [self.path(record["label"], record["task_id"], record["sample"], layer) for layer in layers]

    def save(
        self, record: dict[str, Any], residuals: np.ndarray, layers: Sequence[int], source: str
    ) -> list[str]:
        """One file per layer under the record's label; drop a stale copy under the other label."""
        paths = []
        other = INCORRECT if record["label"] == CORRECT else CORRECT
        for row, (layer, path) in enumerate(zip(layers, self.files_for(record, layers), strict=True)):
            storage.write_npz(path, residual=residuals[row].astype(np.float32), layer=np.int64(layer))
            self.path(other, record["task_id"], record["sample"], layer).unlink(missing_ok=True)
            paths.append(str(path))
        return paths


class SharedTaskActivations(ActivationStore):
    """One file per (task, layer), written once and shared by every sample and temperature of the task.

    Partitions of different temperatures may run at once (on different devices) and race to write the same
    file. That is harmless: the write is atomic (a temporary file renamed over the target), so a reader sees
    one whole file, and every writer holds the same residual with the same ``made_by``. The residual is read in
    the prefill, which sees the prompt only: nothing sampled enters it, and the batches of a Phase 1.2
    partition are formed from its prompts alone (``batched.batch_order``: the prompt list, rows per batch,
    sorting by length), never from the temperature, so every temperature prefills the same batches. Where the
    rows per batch differ (a batch size chosen from another device's free memory), only the left padding
    beside a prompt differs, which the attention mask hides: the files agree to float rounding.
    """

    def __init__(self, path: TaskPath):
        self.path = path
        self._current: set[Path] = set()  # files this store wrote or found current: not read again

    def producer(self) -> dict[str, Any]:
        return {"activation_files": "one per task and layer, shared by samples and temperatures"}

    def files_for(self, record: dict[str, Any], layers: Sequence[int]) -> list[Path]:
        return [self.path(int(record["task_id"]), layer) for layer in layers]

    def save(
        self, record: dict[str, Any], residuals: np.ndarray, layers: Sequence[int], source: str
    ) -> list[str]:
        """Reuse each (task, layer) file made the same way; write it when absent or made otherwise."""
        paths = []
        for row, (layer, path) in enumerate(zip(layers, self.files_for(record, layers), strict=True)):
            made_by = fingerprint(source, hook_name(layer))
            if path not in self._current and made_by_of(path) != made_by:
                storage.write_npz(
                    path, residual=residuals[row].astype(np.float32), layer=np.int64(layer), made_by=np.str_(made_by)
                )
            self._current.add(path)
            paths.append(str(path))
        return paths


def made_by_of(path: Path) -> str | None:
    """The ``made_by`` fingerprint of a shared file; None if it is absent, lacks one, or cannot be read."""
    try:
        with np.load(path) as npz:
            return str(npz[MADE_BY])
    except (FileNotFoundError, KeyError, zipfile.BadZipFile, EOFError, ValueError, OSError):
        return None  # absent, without a fingerprint, or unreadable: rewritten, never reused


def residual_source(prompt: str, model: Any, max_prompt_tokens: int, dtype: str) -> str:
    """What a prompt's residuals depend on: the prompt, the model (identity, dtype) and the prompt truncation.

    Not the temperature, seed or sample: those act only after the prefill that the residual is read from.
    """
    return fingerprint(prompt, model, max_prompt_tokens, dtype)
