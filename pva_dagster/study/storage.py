"""Atomic writes: every file the study produces is written to a temporary sibling, then renamed.

A crash mid-write therefore leaves either the old file or no file, never a truncated one, which is what lets a
re-run resume from what is on disk. Files get the mode the process's umask gives a new file (0644 under the usual
022), as ``open`` would: on a cluster, the workers that read a file are often other processes or users than the
one that wrote it (``mkstemp``'s private 0600 would lock them out).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is fsynced and renamed onto ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    # O_EXCL: a fresh name no other writer holds; 0o666 & ~umask: the mode any new file of this process gets.
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_with(target: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    return _write_with(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(target: str | os.PathLike[str], payload: Any) -> Path:
    return write_text(target, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(target: str | os.PathLike[str], frame: pd.DataFrame) -> Path:
    return _write_with(target, lambda tmp: frame.to_parquet(tmp, index=False))


def write_npz(target: str | os.PathLike[str], **arrays: ArrayLike) -> Path:
    # np.savez appends ".npz" to names without it; writing through an open handle keeps the temp name.
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub lets **arrays fill allow_pickle

    return _write_with(target, write)

