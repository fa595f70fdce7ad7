"""Run model-generated code (hostile input) against MBPP asserts in a separate, limited, killable process.

Each run is a fresh ``python -I`` in its own session, in an empty folder, with stdin closed, stdout/stderr
written to unnamed files and read back only up to a cap, and rlimits on CPU time, address space, file size,
processes and POSIX message queues. A trusted runner (``runner.py``, run by path, read-only inside the
namespaces) runs the setup code, then judges the solution from a separate process: the solution runs in a
fork that can only send back plain values, and the asserts' comparisons run in the runner, which alone
holds the report pipe and the run's random nonce. A run has passed only if the runner reported so, never
because of an exit code, and no code of the solution can write that report (``runner.py`` says how).

Isolation (``isolation.py`` says what each level means; ``probe()`` finds the best this machine allows by
running a real solution through it): with ``namespaces`` the runner is started by the thread's long-lived
bubblewrap sandbox (``worker.py``: only the interpreter and system libraries visible, read-only; a
size-capped folder of its own; no network; its own pid namespace, whose init kills every other process in
it and empties the folder after each run). Otherwise it is a child of this process in a fresh folder, for
``uid-drop`` switching to ``nobody`` after joining its cgroup and setting its rlimits. Fork containment
(``fork_containment()``, ``containment.py``): a ``pids`` cgroup where root can make one, else RLIMIT_NPROC
(counted inside the sandbox's own user namespace), and the pid namespace or the process group to kill what
is left.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import BinaryIO

from pva_dagster.study.sandbox import containment
from pva_dagster.study.sandbox.containment import SandboxBroken, SandboxFailure
from pva_dagster.study.sandbox.isolation import (
    HOW_TO_GET,
    RUNNER,
    SANDBOX_GID,
    SANDBOX_UID,
    Isolation,
    IsolationProbe,
    IsolationUnavailable,
    uid_drop_works,
)
from pva_dagster.study.sandbox.judging import judged_tests
from pva_dagster.study.sandbox.limits import SandboxLimits, available_mib, fit_to_host
from pva_dagster.study.sandbox.verdict import Outcome, SandboxJob, SandboxResult, read_capped, read_report, verdict
from pva_dagster.study.sandbox.worker import FOLDER, JOB_FD, REPORT_FD, worker_for_thread

log = logging.getLogger(__name__)

__all__ = ["Outcome", "SandboxFailure", "SandboxJob", "SandboxLimits", "SandboxResult", "check", "fork_containment",
           "probe", "run_many", "run_solution"]  # fmt: skip

_MAX_FILE_BYTES = 64 * 1024 * 1024  # RLIMIT_FSIZE: a solution printing forever fills no disk
_MIB = 1024 * 1024
_SANDBOX_OVERHEAD_MB = 256  # the launcher, the tmpfs folders (charged to the cgroup) and slack


def fork_containment(isolation: Isolation | None = None) -> str:
    """How forks are limited and leftovers killed: ``cgroup-pids``, ``pid-namespace`` (RLIMIT_NPROC counted
    in the run's own user namespace, everything killed with the namespace), ``rlimit-nproc`` or
    ``process-group``."""
    level = _level(isolation)
    if containment.pids_cgroup_root() is not None:
        return "cgroup-pids"
    if level is Isolation.NAMESPACES and os.geteuid() != 0:
        return "pid-namespace"
    return "rlimit-nproc" if _run_uid(level) != 0 else "process-group"


def _level(isolation: Isolation | None) -> Isolation:
    """``isolation``, or the best this machine allows; asking for more than it allows is an error."""
    best = probe()
    if isolation is None:
        return best.level
    order = list(Isolation)  # best first
    if order.index(isolation) < order.index(best.level):
        raise IsolationUnavailable(f"sandbox isolation '{isolation.value}' asked for, but {best.describe()}")
    if isolation is Isolation.UID_DROP and not uid_drop_works():
        raise IsolationUnavailable("sandbox isolation 'uid-drop' asked for, but this Python does not run as nobody")
    return isolation


def _run_uid(level: Isolation) -> int:
    """The host uid the solution runs as (inside namespaces root keeps kuid 0, see ``isolation.py``)."""
    return SANDBOX_UID if level is Isolation.UID_DROP else os.geteuid()


def _rlimits(limits: SandboxLimits, level: Isolation) -> list[tuple[str, tuple[int, int]]]:
    memory = limits.memory_mb * 1024 * 1024
    # RLIMIT_NPROC counts every task of the user in the user namespace the run is in: in its own namespace
    # that is the run alone; outside, without root (which it exempts), allow what the user already runs
    # plus max_processes, so a busy desktop session or a parallel run does not make threads fail.
    uid = _run_uid(level)
    if level is Isolation.NAMESPACES:
        nproc = limits.max_processes + 1  # + the sandbox's launcher (``sandbox_worker``)
    else:
        nproc = limits.max_processes if uid == 0 else containment.tasks_of_user(uid) + limits.max_processes
    return [
        ("RLIMIT_CPU", (limits.cpu_time_s, limits.cpu_time_s + 1)),  # soft: SIGXCPU, hard: SIGKILL
        ("RLIMIT_AS", (memory, memory)),
        ("RLIMIT_FSIZE", (_MAX_FILE_BYTES, _MAX_FILE_BYTES)),
        ("RLIMIT_NPROC", (nproc, nproc)),
        ("RLIMIT_CORE", (0, 0)),
        ("RLIMIT_MSGQUEUE", (0, 0)),  # POSIX message queues outlive their processes: none may be made
    ]


def run_solution(
    solution: str,
    test_list: Sequence[str],
    setup_code: str = "",
    limits: SandboxLimits = SandboxLimits(),  # frozen, so one shared default is safe
    isolation: Isolation | None = None,
) -> SandboxResult:
    """Run ``setup_code``, then ``solution``, then each assert of ``test_list`` in a sandboxed interpreter.

    ``isolation`` defaults to the best the machine allows (``probe()``); a lower level may be asked for
    (the benchmark compares against ``none``), a higher one raises ``IsolationUnavailable``."""
    if isinstance(test_list, str):
        raise TypeError("test_list must be a sequence of assert statements, not one string")
    level = _level(isolation)
    return _judge(SandboxJob(solution, tuple(test_list), setup_code), host_limits(limits, 1, level), level,
                  probe().bwrap)  # fmt: skip


@cache
def host_limits(limits: SandboxLimits, runs: int, level: Isolation) -> SandboxLimits:
    """``limits`` as this host bounds the memory of ``runs`` runs at once (``limits.py``); logged once each."""
    if level is Isolation.NAMESPACES and containment.memory_cgroup_root() is not None:
        cap = 2 * limits.memory_mb + _SANDBOX_OVERHEAD_MB
        log.info("sandbox memory: a cgroup caps all of a run's processes together at %d MiB", cap)
        return limits
    fitted, guarantee = fit_to_host(limits, runs, available_mib())
    log.info("sandbox memory: %s", guarantee)
    return fitted


def _judge(job: SandboxJob, limits: SandboxLimits, level: Isolation, bwrap: str | None) -> SandboxResult:
    nonce = secrets.token_hex(16)
    head = {
        "rlimits": _rlimits(limits, level), "cgroup": "", "site_packages": site.getsitepackages(),
        "drop_to": [SANDBOX_UID, SANDBOX_GID] if level is Isolation.UID_DROP else None,
        "setup": job.setup_code, "solution": job.solution,
    }  # fmt: skip
    tail = {  # read by the runner only after the solution's process is forked off
        "nonce": nonce, "tests": list(job.test_list),
        "judged": [[test.prelude, test.body] for test in judged_tests(job.setup_code, job.solution, job.test_list)],
    }  # fmt: skip
    try:
        return _attempt((head, tail), nonce, limits, level, bwrap)
    except SandboxBroken as first:
        log.warning("the sandbox broke running a solution (%s); running it once more in a fresh one", first)
    start = time.monotonic()
    try:
        return _attempt((head, tail), nonce, limits, level, bwrap)
    except SandboxBroken as second:  # twice, in two fresh sandboxes: the solution is what breaks them
        message = f"the sandbox broke twice running this solution, the second time: {second}"
        return SandboxResult(Outcome.ERROR, "SandboxBroken", message, "", "", time.monotonic() - start)


def _attempt(fields: _Job, nonce: str, limits: SandboxLimits, level: Isolation, bwrap: str | None) -> SandboxResult:
    report_r, report_w = os.pipe()
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            if level is Isolation.NAMESPACES:
                assert bwrap is not None  # the probe found it
                ran = _run_in_worker(fields, out, err, report_w, limits, bwrap)
            else:
                ran = _run_directly(fields, out, err, report_w, limits, level)
            returncode, runner_pid, timed_out, duration = ran
            os.close(report_w)  # only now: the runner's copy is what a read sees the end of
            report_w = -1
            report = read_report(report_r, nonce, runner_pid)
            if report is not None and report["status"] == "sandbox":
                raise SandboxFailure(f"the sandbox could not start: {report['message']}")
            outcome, error_type, message = verdict(report, returncode, timed_out, limits)
            stdout, stderr = read_capped(out, limits.output_bytes), read_capped(err, limits.output_bytes)
            return SandboxResult(outcome, error_type, message, stdout, stderr, duration)
    finally:
        for fd in (report_r, report_w):
            if fd >= 0:
                os.close(fd)


_Ran = tuple[int, int, bool, float]  # exit status, the runner's pid as it saw it, timed out, seconds
_Job = tuple[dict, dict]  # what the runner reads before it forks the solution's process, what after


def _env(folder: str) -> dict[str, str]:
    return {"PATH": os.defpath, "HOME": folder, "TMPDIR": folder, "LANG": "C.UTF-8"}


def _runner_argv(job_fd: int) -> list[str]:
    """The runner's command line; its last word, a fresh label, is in every process the run starts (forks
    keep it), so that a test can tell whether any of them outlived the run."""
    return [sys.executable, "-I", "-S", "-X", "utf8", str(RUNNER), str(job_fd), f"pva-run-{secrets.token_hex(8)}"]


def _job_file(head: dict, tail: dict) -> BinaryIO:
    """The job as an unnamed file, handed to the runner as a descriptor (nothing on disk to find):
    ``<10-digit length of head><head><tail>``, so that the runner can read the head alone (``runner.py``)."""
    job = tempfile.TemporaryFile()
    first = json.dumps(head).encode()
    job.write(b"%010d" % len(first) + first + json.dumps(tail).encode())
    job.seek(0)
    return job


def _run_in_worker(fields: _Job, out: BinaryIO, err: BinaryIO, report_w: int, limits: SandboxLimits,
                   bwrap: str) -> _Ran:  # fmt: skip
    """In this thread's long-lived namespaces (``worker.py``), in its emptied folder."""
    # The whole sandbox's memory: the judge's and the solution's processes may each use memory_mb.
    memory_bytes = _MIB * (2 * limits.memory_mb + _SANDBOX_OVERHEAD_MB)
    worker = worker_for_thread(bwrap, limits.max_processes, _MIB * limits.disk_mb, memory_bytes,
                               containment.make_cgroup, containment.kill_cgroup)  # fmt: skip
    head, tail = fields
    with _job_file({**head, "report_fd": REPORT_FD}, tail) as job:
        start = time.monotonic()
        status, pid, timed_out = worker.run(_runner_argv(JOB_FD), _env(FOLDER), (out, err, report_w, job),
                                            limits.wall_time_s)  # fmt: skip
    return status, pid, timed_out, time.monotonic() - start


def _run_directly(fields: _Job, out: BinaryIO, err: BinaryIO, report_w: int, limits: SandboxLimits,
                  level: Isolation) -> _Ran:  # fmt: skip
    """A child of this process, in a fresh folder (as ``nobody`` for ``uid-drop``)."""
    workdir = tempfile.mkdtemp(prefix="pva-sandbox-")
    cgroup = None
    try:
        if level is Isolation.UID_DROP:
            os.chown(workdir, SANDBOX_UID, SANDBOX_GID)
        cgroup = containment.make_cgroup(limits.max_processes)
        head, tail = fields
        with _job_file({**head, "report_fd": report_w, "cgroup": str(cgroup) if cgroup else ""}, tail) as job:
            start = time.monotonic()
            proc = subprocess.Popen(
                _runner_argv(job.fileno()), cwd=workdir, env=_env(workdir), stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, pass_fds=(report_w, job.fileno()), start_new_session=True,
            )  # fmt: skip
        try:
            timed_out = not containment.wait_exited(proc.pid, limits.wall_time_s)
            duration = time.monotonic() - start
        finally:  # also on KeyboardInterrupt: nothing the solution started outlives this call
            containment.kill_leftovers(proc.pid, cgroup)
            cgroup = None
            returncode = proc.wait()
        return returncode, proc.pid, timed_out, duration
    finally:
        if cgroup is not None:
            containment.kill_cgroup(cgroup)
        shutil.rmtree(workdir, onerror=containment.make_removable)


def run_many(
    jobs: Sequence[SandboxJob],
    limits: SandboxLimits = SandboxLimits(),
    max_workers: int | None = None,
    isolation: Isolation | None = None,
) -> list[SandboxResult]:
    """Run every job (in parallel, one thread driving each child process); results in input order."""
    if max_workers is not None and max_workers < 1:
        raise ValueError(f"max_workers must be positive, got {max_workers}")
    workers = max_workers or os.cpu_count() or 1
    limits = host_limits(limits, min(workers, max(len(jobs), 1)), _level(isolation))

    def run(job: SandboxJob) -> SandboxResult:
        return run_solution(job.solution, job.test_list, job.setup_code, limits, isolation)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(run, jobs))


@cache
def probe() -> IsolationProbe:
    """The best isolation this machine allows, found once per process by judging a known-good solution
    exactly as every run is judged (the same bwrap options, interpreter, launcher and runner), and logged."""
    bwrap = shutil.which("bwrap")
    missing = _namespaces_fail(bwrap) if bwrap else "bubblewrap (bwrap) is not installed"
    if not missing:
        found = IsolationProbe(Isolation.NAMESPACES, bwrap, "")
    else:
        found = IsolationProbe(Isolation.UID_DROP if uid_drop_works() else Isolation.NONE, None, missing)
    log.info("sandbox isolation: %s", found.describe())
    return found


def _namespaces_fail(bwrap: str) -> str:
    """'' if a known-good solution passes in the bwrap sandbox, else what went wrong, in bwrap's words."""
    known_good = SandboxJob("x = 1\n", ("assert x == 1",))
    try:
        result = _judge(known_good, SandboxLimits(wall_time_s=30.0), Isolation.NAMESPACES, bwrap)
    except (OSError, SandboxFailure) as exc:
        return f"{bwrap} could not run a solution: {exc}"
    if not result.passed:
        return f"{bwrap} ran a known-good solution, judged {result.outcome.value}: {result.message} {result.stderr}"
    return ""


def check(required: bool, warn: Callable[[str], None]) -> IsolationProbe:
    """The probe's result; below ``namespaces`` raises ``IsolationUnavailable``, or calls ``warn``."""
    found = probe()
    if found.level is not Isolation.NAMESPACES:
        message = (
            f"sandbox isolation is only '{found.level.value}' ({found.describe()}); model-written code could "
            f"overwrite the pipeline's files, read the user's secrets or reach the network. To get it: "
            f"{HOW_TO_GET}."
        )
        if required:
            raise IsolationUnavailable(message + " (Or set the sandbox resource's isolation to 'warn'.)")
        warn(message)
    return found
