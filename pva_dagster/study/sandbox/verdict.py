"""What a sandboxed run is and what it ends as: the job, the result, and the verdict read from the runner's
report (or, where there is none, from how the run ended)."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO

from pva_dagster.study.sandbox.limits import SandboxLimits

_MAX_REPORT_BYTES = 256 * 1024


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED_ASSERTION = "failed_assertion"
    ERROR = "error"
    TIMEOUT = "timeout"
    RESOURCE_KILLED = "resource_killed"


@dataclass(frozen=True)
class SandboxResult:
    outcome: Outcome
    error_type: str | None
    message: str
    stdout: str
    stderr: str
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED


@dataclass(frozen=True)
class SandboxJob:
    solution: str
    test_list: tuple[str, ...]
    setup_code: str = ""


_STATUS_OUTCOME = {
    "passed": Outcome.PASSED,
    "assertion": Outcome.FAILED_ASSERTION,
    "error": Outcome.ERROR,
    "resource": Outcome.RESOURCE_KILLED,
    "timeout": Outcome.TIMEOUT,
}


def read_capped(handle: BinaryIO, cap: int) -> str:
    handle.seek(0)
    data = handle.read(cap + 1)
    text = data[:cap].decode("utf-8", errors="replace")
    return text + "\n[output truncated]" if len(data) > cap else text


def read_report(fd: int, nonce: str, pid: int) -> dict[str, str] | None:
    os.set_blocking(fd, False)
    chunks, size = [], 0
    while size < _MAX_REPORT_BYTES:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    for line in b"".join(chunks).decode("utf-8", errors="replace").splitlines():
        head, _, body = line.partition(" ")
        if head == nonce:
            try:
                fields = json.loads(body)
            except ValueError:  # cut off: not a report
                continue
            if fields.get("pid") == pid:  # a forked child's report does not count
                return fields
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # real-time signals have no name
        return f"signal {number}"


def verdict(
    report: dict[str, str] | None, returncode: int, timed_out: bool, limits: SandboxLimits
) -> tuple[Outcome, str | None, str]:
    if timed_out:
        return Outcome.TIMEOUT, None, f"wall-time limit of {limits.wall_time_s} s exceeded"
    if report is not None:
        return _STATUS_OUTCOME[report["status"]], report.get("error_type"), report.get("message", "")
    if returncode == -signal.SIGXCPU:
        return Outcome.TIMEOUT, None, f"CPU-time limit of {limits.cpu_time_s} s exceeded"
    if returncode < 0:
        name = _signal_name(-returncode)
        return Outcome.RESOURCE_KILLED, name, f"killed by {name} before reporting a result"
    return Outcome.ERROR, "EarlyExit", f"exited with code {returncode} before the asserts finished"
