"""A three-way dynamic fan-out, as the steering sweep's units are, light enough for a Dask worker to load fast."""

from __future__ import annotations

import os

import dagster as dg
from dagster_dask import dask_executor as upstream_dask_executor

from pva_dagster.cluster import dask_executor


@dg.op(out=dg.DynamicOut())
def plan():
    for i in range(3):
        yield dg.DynamicOutput(i, mapping_key=f"unit_{i}")


@dg.op(tags={"dagster-dask/resource_requirements": {"GPU": 1}})
def unit(i: int) -> tuple[int, int]:
    return i * i, os.getpid()


@dg.op
def combine(results: list[tuple[int, int]]) -> int:
    return sum(square for square, _ in results)


@dg.graph
def fan_out():
    combine(plan().map(unit).collect())


def fan_out_job(upstream: bool = False) -> dg.JobDefinition:
    executor = upstream_dask_executor if upstream else dask_executor
    return fan_out.to_job(name="fan_out", executor_def=executor, resource_defs={"io_manager": dg.FilesystemIOManager()})
