"""Which isolation the sandbox can give model-written code on this machine, probed once, not assumed.

Levels, best first:

- ``namespaces``: each run is started through bubblewrap (``bwrap``) in new user, mount, pid, network, ipc
  and uts namespaces. ``/`` is bound read-only, ``/tmp``, ``/run`` and ``/var/tmp`` are empty read-only
  tmpfs (they hold the host's UNIX sockets, which a network namespace does not cover), ``/dev`` is a
  minimal read-only one (null, zero, urandom, ...), the run's own folder is the only writable place, the
  network has nothing but a loopback of its own, other processes are invisible, and capabilities and
  further user namespaces are dropped. The uid inside is ``nobody`` when the pipeline is root. Reading is
  not restricted beyond the pipeline user's own rights.
- ``uid-drop``: root where user namespaces are refused (e.g. Docker's default seccomp profile) and the
  interpreter and the trusted runner (``runner.py``) are readable by ``nobody``: the solution runs as
  ``nobody`` and can write only where ``nobody`` may (its folder and world-writable places such as
  ``/tmp``); the network is open.
- ``none``: the solution runs as the pipeline's user, with the pipeline's rights, network included.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

# The trusted runner every sandboxed interpreter starts with (run by path, so whoever runs it must read it).
RUNNER = Path(__file__).with_name("runner.py")
SANDBOX_UID = SANDBOX_GID = 65534  # nobody/nogroup: what root drops to; owns nothing on a normal system
_TMPFS_BYTES = 1024 * 1024  # the hidden /tmp etc. are read-only anyway; this only bounds a tmpfs's size
_HIDDEN = ("/tmp", "/run", "/var/tmp")  # host sockets and shared scratch space live here
HOW_TO_GET = (
    "install bubblewrap (as root: `make install`, which runs `apt-get install -y bubblewrap`; otherwise "
    "`sudo apt-get install bubblewrap`) on a kernel that allows user namespaces "
    "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0; in Docker run with "
    "--security-opt seccomp=unconfined or a profile that allows unshare/clone of namespaces)"
)


class Isolation(StrEnum):
    NAMESPACES = "namespaces"
    UID_DROP = "uid-drop"
    NONE = "none"


class IsolationUnavailable(RuntimeError):
    """The isolation a run requires is not available on this machine."""


@dataclass(frozen=True)
class IsolationProbe:
    level: Isolation
    bwrap: str | None  # the binary, when ``level`` is namespaces
    missing: str  # why namespaces are not available ("" when they are)

    def describe(self) -> str:
        if self.level is Isolation.NAMESPACES:
            return f"namespaces via {self.bwrap}: read-only filesystem but the run's folder, no network"
        what = "as nobody (uid-drop): files of other users protected" if self.level is Isolation.UID_DROP else (
            "none: solutions run with the pipeline's own rights"
        )
        return f"{what}; the network is NOT isolated; namespaces unavailable because {self.missing}"


def bwrap_argv(bwrap: str, workdir: str, info_fd: int, block_fd: int, as_pid_1: bool = False) -> list[str]:
    """bwrap's options for one run; the command follows. ``info_fd`` gets the sandbox's host pid as JSON,
    and the sandbox waits for a byte on ``block_fd`` so that the caller can hold that pid safely first."""
    argv = [bwrap, "--unshare-user", "--unshare-all", "--disable-userns", "--die-with-parent", "--cap-drop", "ALL"]
    if os.geteuid() == 0:  # kept root's host uid (the interpreter may live in /root), but not uid 0 inside
        argv += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID)]
    # bwrap mounts its binds nodev, so /dev/null & co. come from a fresh, then read-only, /dev. /proc is
    # read-only too: as root the run keeps the host's uid 0 (no capabilities), which the kernel lets write
    # /proc/sys and /proc/sysrq-trigger of the whole machine, namespace or not.
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--remount-ro", "/dev", "--proc", "/proc", "--remount-ro", "/proc"]
    hidden = [path for path in _HIDDEN if os.path.isdir(path) and not os.path.islink(path)]
    for path in hidden:
        argv += ["--size", str(_TMPFS_BYTES), "--tmpfs", path]
    argv += ["--bind", workdir, workdir]  # its mount point may be made in a tmpfs above; bwrap keeps the cwd
    for path in hidden:  # read-only only now: remounting does not reach the folder bound inside
        argv += ["--remount-ro", path]
    argv += ["--as-pid-1"] if as_pid_1 else []  # the command is the namespace's init, not bwrap's reaper
    return argv + ["--info-fd", str(info_fd), "--block-fd", str(block_fd), "--"]


def _try_bwrap(bwrap: str) -> str:
    """Run ``true`` the way a solution would run; '' if that worked, else what went wrong."""
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    try:
        with tempfile.TemporaryDirectory(prefix="pva-sandbox-probe-") as workdir:
            os.write(block_w, b"x")
            argv = bwrap_argv(bwrap, workdir, info_w, block_r, as_pid_1=True) + ["true"]
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=30, pass_fds=(info_w, block_r), check=False
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} could not be run: {exc}"
    finally:
        for fd in (info_r, info_w, block_r, block_w):
            os.close(fd)
    if done.returncode != 0:
        return f"{bwrap} failed (exit {done.returncode}): {done.stderr.strip() or 'no message'}"
    return ""


@cache
def uid_drop_works() -> bool:
    """Root, and this very interpreter (not another one found on the way) runs as ``nobody`` and can read the
    trusted runner (a project under a private home folder cannot run there)."""
    if os.geteuid() != 0:
        return False
    try:
        check_runs = "import json, sys; open(sys.argv[1], 'rb').close(); print(sys.version)"
        done = subprocess.run([sys.executable, "-I", "-S", "-c", check_runs, str(RUNNER)],
                              capture_output=True, text=True, timeout=30, check=False,
                              user=SANDBOX_UID, group=SANDBOX_GID, extra_groups=[])  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == sys.version


@cache
def probe() -> IsolationProbe:
    """The best isolation this machine allows, tried for real once per process and logged once."""
    bwrap = shutil.which("bwrap")
    missing = _try_bwrap(bwrap) if bwrap else "bubblewrap (bwrap) is not installed"
    if not missing:
        found = IsolationProbe(Isolation.NAMESPACES, bwrap, "")
    else:
        found = IsolationProbe(Isolation.UID_DROP if uid_drop_works() else Isolation.NONE, None, missing)
    log.info("sandbox isolation: %s", found.describe())
    return found


def check(required: bool, warn: Callable[[str], None]) -> IsolationProbe:
    """The probe's result; below ``namespaces`` raises ``IsolationUnavailable``, or calls ``warn``."""
    found = probe()
    if found.level is not Isolation.NAMESPACES:
        message = (
            f"sandbox isolation is only '{found.level.value}' ({found.describe()}); model-written code could "
            f"overwrite the pipeline's files or reach the network. To get it: {HOW_TO_GET}."
        )
        if required:
            raise IsolationUnavailable(message + " (Or set the sandbox resource's isolation to 'warn'.)")
        warn(message)
    return found
