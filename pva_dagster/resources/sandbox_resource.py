"""Limits and required isolation for running model-generated code (hostile input) in the sandbox."""

from typing import Literal

import dagster as dg
from pydantic import Field

from pva_dagster.study.sandbox.execution import SandboxLimits, check, probe

_LIMITS = SandboxLimits()  # the one place the limits' defaults are declared


class Sandbox(dg.ConfigurableResource):
    wall_time_s: float = Field(
        default=_LIMITS.wall_time_s, description="Wall-clock limit per solution; the process group dies after."
    )
    cpu_time_s: int = Field(default=_LIMITS.cpu_time_s, description="CPU-seconds limit (RLIMIT_CPU).")
    memory_mb: int = Field(default=_LIMITS.memory_mb, description="Address-space limit (RLIMIT_AS) in MiB.")
    disk_mb: int = Field(
        default=_LIMITS.disk_mb, description="All a solution may write to its folder, in MiB (namespaces only)."
    )
    max_workers: int | None = Field(default=None, description="Solutions run at once (default: all cores).")
    isolation: Literal["required", "warn"] = Field(
        default="required",
        description="'required': a run fails unless solutions run in namespaces (only the interpreter and "
        "system libraries visible, read-only; a size-capped folder of their own; no network); "
        "'warn': it goes on with a warning and weaker isolation.",
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        assert context.log is not None  # Dagster gives every resource set-up a log manager
        found = check(required=self.isolation == "required", warn=context.log.warning)
        context.log.info(f"sandbox isolation: {found.describe()}")  # in the run's own log too

    @property
    def limits(self) -> SandboxLimits:
        return SandboxLimits(
            wall_time_s=self.wall_time_s, cpu_time_s=self.cpu_time_s, memory_mb=self.memory_mb, disk_mb=self.disk_mb
        )

    @property
    def isolation_level(self) -> str:
        """What solutions actually run in here (``isolation.Isolation``'s values), for dataset metadata."""
        return probe().level.value
