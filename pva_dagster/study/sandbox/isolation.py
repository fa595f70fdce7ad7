"""The isolation levels the sandbox can give model-written code (``execution.probe()`` finds which this machine allows).

Levels, best first:

- ``namespaces``: each run is started through bubblewrap (``bwrap``) in new user, mount, pid, network, ipc
  and uts namespaces. Only what a run needs is visible, read-only (``worker.bwrap_argv``: the system's
  programs and libraries, a few files of ``/etc``, this interpreter's folders and site-packages, the
  launcher and the runner); home folders, the project, its data, caches, ``/tmp`` and ``/run`` (and the
  host's UNIX sockets in them) are absent. ``/dev`` is a minimal read-only one (null, zero, urandom, ...),
  the run's own folder, a tmpfs of ``disk_mb``, and a small /dev/shm are the only writable places, the
  network has nothing but a loopback of its own, other processes are invisible, and capabilities and further
  user namespaces are dropped. The uid inside is ``nobody`` when the pipeline is root.
- ``uid-drop``: root where user namespaces are refused (e.g. Docker's default seccomp profile) and the
  interpreter and the trusted runner (``runner.py``) are readable by ``nobody``: the solution runs as
  ``nobody`` and can write only where ``nobody`` may (its folder and world-writable places such as
  ``/tmp``) and read what ``nobody`` may read; the network is open; its folder's size is not capped.
- ``none``: the solution runs as the pipeline's user, with the pipeline's rights, network included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

# The trusted runner every sandboxed interpreter starts with (run by path, so whoever runs it must read it).
RUNNER = Path(__file__).with_name("runner.py")
TRANSPORT = RUNNER.with_name("transport.py")  # loaded by the runner from beside it
SANDBOX_UID = SANDBOX_GID = 65534  # nobody/nogroup: what root drops to; owns nothing on a normal system
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
            return (
                f"namespaces via {self.bwrap}: only the interpreter and system libraries visible, read-only; "
                "a size-capped folder of its own; no network"
            )
        what = (
            "as nobody (uid-drop): files of other users protected"
            if self.level is Isolation.UID_DROP
            else ("none: solutions run with the pipeline's own rights")
        )
        return f"{what}; the network is NOT isolated; namespaces unavailable because {self.missing}"


@cache
def uid_drop_works() -> bool:
    """Root, and this very interpreter (not another one found on the way) runs as ``nobody`` and can read the
    trusted runner (a project under a private home folder cannot run there)."""
    if os.geteuid() != 0:
        return False
    try:
        check_runs = "import json, sys; [open(p, 'rb').close() for p in sys.argv[1:]]; print(sys.version)"
        done = subprocess.run([sys.executable, "-I", "-S", "-c", check_runs, str(RUNNER), str(TRANSPORT)],
                              capture_output=True, text=True, timeout=30, check=False,
                              user=SANDBOX_UID, group=SANDBOX_GID, extra_groups=[])  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == sys.version
