"""Task-ID ranges: the unit of work of Phase 1 (one partition, one GPU at a time)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskRange:
    first: int
    last: int  # inclusive

    @property
    def key(self) -> str:
        return f"{self.first:04d}-{self.last:04d}"

    @classmethod
    def parse(cls, key: str) -> TaskRange:
        try:
            first, last = (int(part) for part in key.split("-"))
        except ValueError as error:
            raise ValueError(f"task range key {key!r} is not of the form 0000-0049") from error
        if first > last:
            raise ValueError(f"task range key {key!r} starts after it ends")
        return cls(first, last)


def task_ranges(max_task_id: int, range_size: int) -> list[TaskRange]:
    """Ranges ``[0, size-1], [size, 2*size-1], ...`` covering task IDs 0..max_task_id."""
    if range_size < 1 or max_task_id < 0:
        raise ValueError(f"need range_size >= 1 and max_task_id >= 0, got {range_size}, {max_task_id}")
    return [
        TaskRange(start, start + range_size - 1) for start in range(0, max_task_id + 1, range_size)
    ]
