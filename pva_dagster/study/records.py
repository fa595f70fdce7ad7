"""A resumable record table: rows persisted atomically to one Parquet file, keyed so nothing duplicates.

Phase 1 appends the records of each finished batch and flushes; a run killed part-way leaves the last flushed
file intact, and the next run reads it back and skips the keys it already holds. Given the fingerprint each
key must have (a hash of what produces its record: the task, the model, the settings), a row stored under
another fingerprint, or under a key no longer asked for, is dropped, so a changed input is recomputed and never
resumed from an old record. The fingerprints travel in the Parquet file's metadata (``attrs``), beside the rows.

A record may also carry a second fingerprint, of what its label depends on (the tests, the judge's version): a
row whose record is current but whose label is not is handed back as ``stale_labels``, for the caller to judge
again from what it stored and ``add`` back, rather than made anew.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pva_dagster.study import storage

FINGERPRINTS = "fingerprints"  # the attrs entry: "key1|key2" -> fingerprint of the row's producer
LABEL_FINGERPRINTS = "label_fingerprints"  # the attrs entry: "key1|key2" -> fingerprint of what labelled it


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (dict keys sorted), e.g. a task and the settings that run it."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _key_text(key: tuple) -> str:
    return "|".join(map(str, key))


class RecordTable:
    def __init__(
        self, path: Path, key: Sequence[str], fingerprints: Mapping[tuple, str] | None = None,
        label_fingerprints: Mapping[tuple, str] | None = None,
    ):
        """``fingerprints``: key -> the fingerprint its record must have; None keeps every stored row.
        ``label_fingerprints``: key -> the fingerprint its label must have (with ``fingerprints`` only)."""
        if label_fingerprints is not None and fingerprints is None:
            raise ValueError("label fingerprints need record fingerprints beside them")
        self.path = Path(path)
        self.key = tuple(key)
        self._expected = None if fingerprints is None else {_key_text(k): v for k, v in fingerprints.items()}
        self._expected_labels = (
            None if label_fingerprints is None else {_key_text(k): v for k, v in label_fingerprints.items()}
        )
        self._rows: list[dict[str, Any]] = []
        self._fingerprints: dict[str, str] = {}
        self._label_fingerprints: dict[str, str] = {}
        self.dropped = 0  # stored rows left out: made by another producer, or no longer asked for
        self.stale_labels: list[dict[str, Any]] = []  # current rows whose label is not: to judge again
        if self.path.exists():
            existing = pd.read_parquet(self.path)
            missing = set(self.key) - set(existing.columns)
            if missing:
                raise ValueError(f"{self.path} lacks the key columns {sorted(missing)}; delete it to start over")
            self._rows = existing.to_dict("records")
            self._fingerprints = dict(existing.attrs.get(FINGERPRINTS, {}))
            self._label_fingerprints = dict(existing.attrs.get(LABEL_FINGERPRINTS, {}))
        self._keys = {self._key_of(row) for row in self._rows}
        if len(self._keys) != len(self._rows):
            raise ValueError(f"{self.path} holds duplicate keys {self.key}; delete it to start over")
        if self._expected is not None:
            kept = [row for row in self._rows if self._current(_key_text(self._key_of(row)))]
            self.dropped = len(self._rows) - len(kept)
            self._rows = kept
            self._keys = {self._key_of(row) for row in kept}
            self._fingerprints = {k: v for k, v in self._fingerprints.items() if self._current(k)}
        if self._expected_labels is not None:
            fresh: list[dict[str, Any]] = []
            for row in self._rows:
                key = _key_text(self._key_of(row))
                current = self._label_fingerprints.get(key) == self._expected_labels.get(key)
                (fresh if current else self.stale_labels).append(row)
            self._rows = fresh
            self._keys = {self._key_of(row) for row in fresh}
            self._label_fingerprints = {_key_text(self._key_of(r)): self._expected_labels[_key_text(self._key_of(r))]
                                        for r in fresh}  # fmt: skip

    def _current(self, key: str) -> bool:
        assert self._expected is not None
        return key in self._expected and self._fingerprints.get(key) == self._expected[key]

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
            if self._expected is not None:
                self._fingerprints[_key_text(key)] = self._expected[_key_text(key)]
            if self._expected_labels is not None:
                self._label_fingerprints[_key_text(key)] = self._expected_labels[_key_text(key)]
            added += 1
        return added

    def revise(self, revised: Callable[[dict[str, Any]], dict[str, Any] | None]) -> int:
        """Pass each kept row through ``revised``: the row it returns replaces it, None drops it (so it is made
        again). Returns how many rows changed or were dropped."""
        changed, kept = 0, []
        for row in self._rows:
            new = revised(row)
            changed += new is not row  # a revision is a new row; an unchanged one is returned as it is
            if new is None:
                key = _key_text(self._key_of(row))
                self._fingerprints.pop(key, None)
                self._label_fingerprints.pop(key, None)
            else:
                kept.append(new)
        self._rows = kept
        self._keys = {self._key_of(row) for row in kept}
        return changed

    def flush(self) -> Path:
        return storage.write_parquet(self.path, self.frame())

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self._rows)
        frame = frame.sort_values(list(self.key)).reset_index(drop=True) if len(frame) else frame
        if self._expected is not None:
            frame.attrs[FINGERPRINTS] = dict(sorted(self._fingerprints.items()))
        if self._expected_labels is not None:
            frame.attrs[LABEL_FINGERPRINTS] = dict(sorted(self._label_fingerprints.items()))
        return frame
