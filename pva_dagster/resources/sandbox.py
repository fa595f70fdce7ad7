"""Limits for running model-generated code (hostile input) in the sandbox."""


import dagster as dg
from pydantic import Field

from pva_dagster.study.sandbox import SandboxLimits


class Sandbox(dg.ConfigurableResource):
    wall_time_s: float = Field(default=10.0, description="Wall-clock limit per solution; the process group dies after.")
    cpu_time_s: int = Field(default=10, description="CPU-seconds limit (RLIMIT_CPU).")
    memory_mb: int = Field(default=1024, description="Address-space limit (RLIMIT_AS) in MiB.")
    max_workers: int | None = Field(default=None, description="Solutions run at once (default: all cores).")

    @property
    def limits(self) -> SandboxLimits:
        return SandboxLimits(wall_time_s=self.wall_time_s, cpu_time_s=self.cpu_time_s, memory_mb=self.memory_mb)
