"""What one sandboxed run may use, and how much memory all the runs at once may take on this host.

A run's processes are limited one by one (RLIMIT_AS of ``memory_mb`` each, at most ``max_processes``). Where a
memory cgroup exists for the sandbox (a v1 ``memory`` hierarchy, or the v2 hierarchy with ``memory``
delegated), every process of a namespaced run counts against one cap, and the host is safe whatever the
solution forks. Where none exists, ``memory_mb x max_processes`` is what one run could take, and ``runs`` of
them run at once: the limits are shrunk until that fits :data:`HOST_SHARE` of the memory available now, and the
log says which guarantee holds (:func:`fit_to_host`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

HOST_SHARE = 0.5  # of the host's available memory, for every sandboxed run at once
MIN_PROCESSES = 8  # the judge, the solution, a small multiprocessing pool and its threads
MIN_MEMORY_MB = 256  # an interpreter with numpy imported fits


@dataclass(frozen=True)
class SandboxLimits:
    wall_time_s: float = 10.0
    cpu_time_s: int = 10
    memory_mb: int = 1024
    max_processes: int = 64  # processes + threads, the runner included
    output_bytes: int = 64_000  # per stream kept in the result
    disk_mb: int = 64  # all a solution may write to its folder (namespaces); past it a write fails (ENOSPC)

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise ValueError(f"SandboxLimits.{field.name} must be positive, got {value!r}")


def available_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable, the kernel's estimate of what can be allocated without swapping, in MiB."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    raise ValueError(f"{meminfo} has no MemAvailable line")


def fit_to_host(limits: SandboxLimits, runs: int, available: int) -> tuple[SandboxLimits, str]:
    """Limits whose ``memory_mb x max_processes``, ``runs`` times, fit ``HOST_SHARE`` of ``available`` MiB
    (processes first, down to MIN_PROCESSES, then memory, down to MIN_MEMORY_MB), and what holds."""
    budget = int(HOST_SHARE * available / max(runs, 1))
    fitted = limits
    if fitted.memory_mb * fitted.max_processes > budget:
        processes = min(fitted.max_processes, budget // fitted.memory_mb)
        fitted = replace(fitted, max_processes=max(MIN_PROCESSES, processes))
    if fitted.memory_mb * fitted.max_processes > budget:
        fitted = replace(fitted, memory_mb=max(MIN_MEMORY_MB, budget // fitted.max_processes))
    total = fitted.memory_mb * fitted.max_processes
    holds = "holds" if total <= budget else "does NOT hold (the host is too small for the floors)"
    shrunk = "" if fitted == limits else (
        f"; shrunk from {limits.max_processes} processes x {limits.memory_mb} MiB"
    )
    return fitted, (
        f"no memory cgroup: each run at most {fitted.max_processes} processes x {fitted.memory_mb} MiB = {total} MiB, "
        f"{runs} at once; {HOST_SHARE:.0%} of the {available} MiB available is {budget} MiB a run: the bound "
        f"{holds}{shrunk}"
    )
