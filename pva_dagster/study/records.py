"""A resumable record table: rows persisted atomically to one Parquet file, keyed so nothing duplicates.

Phase 1 appends the records of each finished batch and flushes; a run killed part-way leaves the last flushed
file intact, and the next run reads it back and skips the keys it already holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pva_dagster.study import storage


class RecordTable:
    def __init__(self, path: Path, key: Sequence[str]):
        self.path = Path(path)
        self.key = tuple(key)
        self._rows: list[dict[str, Any]] = []
        if self.path.exists():
            existing = pd.read_parquet(self.path)
            missing = set(self.key) - set(existing.columns)
            if missing:
                raise ValueError(f"{self.path} lacks the key columns {sorted(missing)}; delete it to start over")
            self._rows = existing.to_dict("records")
        self._keys = {self._key_of(row) for row in self._rows}
        if len(self._keys) != len(self._rows):
            raise ValueError(f"{self.path} holds duplicate keys {self.key}; delete it to start over")

    def _key_of(self, row: Mapping[str, Any]) -> tuple:
        return tuple(row[column] for column in self.key)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: tuple) -> bool:
        return tuple(key) in self._keys

    def add(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Add rows whose key is new; return how many were added (a repeated key is skipped, not doubled)."""
        added = 0
        for row in rows:
            key = self._key_of(row)
            if key in self._keys:
                continue
            self._keys.add(key)
            self._rows.append(dict(row))
            added += 1
        return added

    def flush(self) -> Path:
        return storage.write_parquet(self.path, self.frame())

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self._rows)
        return frame.sort_values(list(self.key)).reset_index(drop=True) if len(frame) else frame
