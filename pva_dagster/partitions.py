"""Partitions of the study, all built here: task-ID ranges for Phase 1.0, temperature x task range for 1.2.

A task range is one unit of work a backfill hands out (to one GPU). Keys are readable zero-padded task-ID
ranges such as ``0000-0049``; they are fixed by the problem set's largest task ID and the range size, both
set by the run profile's ``StudyDesign`` (the Phase 1 asset factory passes them in), so the same key always
means the same tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from pva_dagster.study.domain import temperature_tag
from pva_dagster.study.problems.task_ranges import TaskRange, task_ranges

TASK_RANGE_DIM = "task_range"
TEMPERATURE_DIM = "temperature"
__all__ = [
    "TaskRange",
    "task_range_partitions",
    "task_ranges",
    "temperature_by_task_range",
    "dimension_keys",
    "typed_partition_key",
]


def task_range_partitions(max_task_id: int, range_size: int) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([r.key for r in task_ranges(max_task_id, range_size)])


def temperature_partitions(temperatures: Sequence[float]) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([temperature_tag(t) for t in temperatures])


def temperature_by_task_range(
    temperatures: Sequence[float], max_task_id: int, range_size: int
) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {
            TEMPERATURE_DIM: temperature_partitions(temperatures),
            TASK_RANGE_DIM: task_range_partitions(max_task_id, range_size),
        }
    )



def typed_partition_key(partitions_def: dg.PartitionsDefinition, key: str) -> str | dg.MultiPartitionKey:
    """A multi-dimensional key as MultiPartitionKey (its dimensions by name); any other key as it is."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition) and not isinstance(key, dg.MultiPartitionKey):
        return partitions_def.get_partition_key_from_str(key)
    return key


def dimension_keys(partitions_def: dg.PartitionsDefinition | None, key: str) -> dict[str, str]:
    """The keys by dimension of a multi-dimensional partition key; raises naming the key when it is not one."""
    typed = typed_partition_key(partitions_def, key) if partitions_def else key
    if not isinstance(typed, dg.MultiPartitionKey):
        raise ValueError(f"partition {key!r} is not a multi-dimensional key ({TEMPERATURE_DIM}|{TASK_RANGE_DIM})")
    return dict(typed.keys_by_dimension)
