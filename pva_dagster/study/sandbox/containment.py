"""Keeping what a sandboxed run starts countable and killable: pids cgroups, process groups, and cleanup.

Plain functions shared by ``sandbox`` (runs started directly) and ``sandbox_worker`` (runs in a long-lived
namespace sandbox). RLIMIT_NPROC counts per user and the kernel exempts root, so where a writable ``pids``
cgroup exists (root) a run gets its own with ``pids.max``, and everything left in it is killed afterwards.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import signal
import time
from functools import cache
from pathlib import Path


class SandboxFailure(RuntimeError):
    """The sandbox itself could not run a solution (not a verdict on the solution)."""


class SandboxBroken(SandboxFailure):
    """A sandbox that had started broke while running a solution (its launcher stopped answering): the
    solution may be the cause, so ``execution.py`` runs it once more in a fresh sandbox before judging it."""


@cache
def cgroup_root(controller: str) -> Path | None:
    """A cgroup directory (v1 ``controller`` hierarchy or v2 with it delegated) this process may create in."""
    if os.geteuid() != 0:
        return None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point, (fs_type, _source, options) = line.split()[4], line.split(" - ")[1].split()[:3]
        root = Path(mount_point)
        v1 = fs_type == "cgroup" and controller in options.split(",")
        v2 = fs_type == "cgroup2" and controller in _read(root / "cgroup.subtree_control").split()
        if (v1 or v2) and os.access(root, os.W_OK):
            return root
    return None


def pids_cgroup_root() -> Path | None:
    return cgroup_root("pids")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def memory_cgroup_root() -> Path | None:
    """A hierarchy where the sandbox can cap memory: v1 ``memory``, or v2 with ``memory`` delegated."""
    return cgroup_root("memory")


def make_cgroup(max_processes: int, memory_bytes: int | None = None) -> Path | None:
    """A ``pids`` cgroup; on cgroup v2 with ``memory`` delegated in the same hierarchy it also caps the memory of
    all it holds at ``memory_bytes`` (a process can be in one v2 cgroup only, so one cgroup does both)."""
    root = pids_cgroup_root()
    if root is None:
        return None
    cgroup = root / f"pva-sandbox-{os.getpid()}-{secrets.token_hex(8)}"
    cgroup.mkdir()
    (cgroup / "pids.max").write_text(str(max_processes))
    if memory_bytes is not None and memory_cgroup_root() == root:
        (cgroup / "memory.max").write_text(str(memory_bytes))
        if (cgroup / "memory.swap.max").exists():
            (cgroup / "memory.swap.max").write_text("0")  # over the cap it is killed, not swapped
    return cgroup


def make_memory_cgroup(memory_bytes: int) -> Path | None:
    """Where memory is a cgroup v1 hierarchy of its own (root only): a cgroup capping the memory of all it
    holds at ``memory_bytes`` (its OOM killer then kills inside it, not elsewhere on the machine). None
    elsewhere: on cgroup v2 the pids cgroup caps the memory too (:func:`make_cgroup`)."""
    root = memory_cgroup_root()
    if root is None or root == pids_cgroup_root():
        return None
    cgroup = root / f"pva-sandbox-{os.getpid()}-{secrets.token_hex(8)}"
    cgroup.mkdir()
    (cgroup / "memory.limit_in_bytes").write_text(str(memory_bytes))
    return cgroup


def kill_cgroup(cgroup: Path) -> None:
    """SIGKILL everything in ``cgroup`` until it is empty, then remove it."""
    for _ in range(1000):
        pids = [int(pid) for pid in _read(cgroup / "cgroup.procs").split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)
    for _ in range(200):  # rmdir is refused while dying tasks are still being torn down
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    raise SandboxFailure(f"sandbox cgroup {cgroup} could not be emptied and removed")


def tasks_of_user(uid: int) -> int:
    """Processes and threads this uid runs now: what RLIMIT_NPROC counts against."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:  # exited while we looked
            continue
        if int(fields["Uid"].split()[0]) == uid:
            count += int(fields["Threads"])
    return count


def kill_leftovers(leader: int, cgroup: Path | None) -> None:
    """SIGKILL everything the run started and return once it is dead (zombies at most).

    The cgroup holds every descendant; without one, the process group is killed until no live member is
    left. The leader is not reaped yet, so its pid still names the group and cannot have been recycled.
    """
    if cgroup is not None:
        kill_cgroup(cgroup)
        return
    deadline = time.monotonic() + 5.0
    while True:
        try:
            os.killpg(leader, signal.SIGKILL)  # again each round: a fork may have raced the last one
        except ProcessLookupError:
            return
        if not _live_members(leader):  # SIGKILL is asynchronous: wait until they are zombies or gone
            return
        if time.monotonic() > deadline:
            raise SandboxFailure(f"process group {leader} survived SIGKILL for 5 s")
        time.sleep(0.002)


def _live_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except OSError:  # exited while we looked
            continue
        if int(group) == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def wait_exited(pid: int, timeout_s: float) -> bool:
    """Block until ``pid`` exits (without reaping it) or ``timeout_s`` passes; True if it exited."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout_s)
        return bool(ready)
    finally:
        os.close(pidfd)


def make_removable(_function: object, path: str, _exc: object) -> None:
    """rmtree hook: the solution may have left read-only folders; open them up and retry once."""
    os.chmod(os.path.dirname(path), 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        shutil.rmtree(path)
    else:
        os.unlink(path)
