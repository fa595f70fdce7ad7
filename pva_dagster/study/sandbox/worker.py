"""A long-lived bubblewrap sandbox that starts the solutions of one thread, one at a time.

Making and tearing down the namespaces costs about as much as the solution's own interpreter start (~20 ms,
mostly in the kernel), so each thread keeps one sandbox and only the interpreter is started per solution.
Inside, a trusted launcher (``launcher.py``) is the pid namespace's init: the kernel delivers it no signal
from inside that it has no handler for (SIGKILL and SIGSTOP included), it is not dumpable (no ptrace, no
/proc/1/mem for the solutions, which share its uid), and after each solution it kills every other process
in the namespace and reaps them before it answers. Between solutions this side empties the folder, so each
solution starts in an empty one. Anything unexpected (no answer in time, a broken message) kills the whole
sandbox: a new one is made for the next solution. System V IPC objects, which outlive their processes, are
removed after each solution too.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pva_dagster.study.sandbox.containment import SandboxFailure, make_removable
from pva_dagster.study.sandbox.isolation import bwrap_argv, probe

REPORT_FD = 3  # where the runner finds the report pipe
_ANSWER_TIMEOUT_S = 5.0  # for the launcher's cleanup after a solution; then the sandbox itself is killed

# The trusted init of each sandbox (run by path; bwrap binds / read-only, so the file is readable inside).
LAUNCHER = Path(__file__).with_name("launcher.py")


class Worker:
    """One bwrap sandbox and its launcher; ``folder`` is the only writable place inside."""

    def __init__(self, max_processes: int, make_cgroup: Callable[[int], Path | None],
                 kill_cgroup: Callable[[Path], None]) -> None:  # fmt: skip
        self.max_processes = max_processes
        self.owner = os.getpid()
        self.folder = Path(tempfile.mkdtemp(prefix="pva-sandbox-"))
        self.alive = False
        self.pidfd = -1
        self.sock, inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        cgroup = make_cgroup(max_processes + 1)  # + the launcher
        with tempfile.TemporaryFile() as err:
            try:
                argv = bwrap_argv(str(probe().bwrap), str(self.folder), info_w, block_r, as_pid_1=True)
                self.proc = subprocess.Popen(
                    [*argv, sys.executable, "-I", "-S", str(LAUNCHER), str(inner.fileno())],
                    cwd=self.folder, env={"PATH": os.defpath, "LANG": "C.UTF-8"}, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=err, pass_fds=(inner.fileno(), info_w, block_r),
                    start_new_session=True,
                )  # fmt: skip
            except BaseException:
                for fd in (info_r, info_w, block_r, block_w):
                    os.close(fd)
                inner.close()
                self.sock.close()
                _remove(self.folder, cgroup, kill_cgroup)
                raise
            for fd in (info_w, block_r):
                os.close(fd)
            inner.close()
            try:
                pid = _read_child_pid(info_r, err)
                # Held on --block-fd until released: the pid cannot have been recycled, the pidfd names it.
                self.pidfd = os.pidfd_open(pid)
                if cgroup is not None:  # before any fork: every process inside counts against pids.max
                    try:
                        (cgroup / "cgroup.procs").write_text(str(pid))
                    except OSError as exc:
                        raise SandboxFailure(
                            f"the sandbox could not start: {pid} not moved into {cgroup}: {exc}"
                        ) from exc
                os.write(block_w, b"go")
            except BaseException:
                # Killing bwrap alone while it starts strands its child (blocked before --die-with-parent
                # applies), so the child goes by its pidfd first.
                if self.pidfd >= 0:
                    _kill_init(self.pidfd)
                self.proc.kill()
                self.proc.wait()
                self.sock.close()
                _remove(self.folder, cgroup, kill_cgroup)
                raise
            finally:
                os.close(info_r)
                os.close(block_w)
        self.alive = True
        self._finalizer = weakref.finalize(
            self, _shut_down, self.sock, self.pidfd, self.proc, self.folder, cgroup, kill_cgroup
        )

    def run(self, argv: list[str], env: dict[str, str], out: BinaryIO, err: BinaryIO, report_w: int,
            wall_time_s: float) -> tuple[int, int, bool]:  # fmt: skip
        """Run ``argv`` in the folder until it ends or ``wall_time_s`` passes, then kill all it started.

        Returns (exit status, the runner's pid inside, timed out). Raises ``SandboxFailure`` (and kills the
        sandbox) when the launcher does not answer in time."""
        message = json.dumps({"argv": argv, "env": env, "cwd": str(self.folder)}).encode()
        try:
            socket.send_fds(self.sock, [message], [out.fileno(), err.fileno(), report_w])
            timed_out = not select.select([self.sock], [], [], wall_time_s)[0]
            if timed_out:
                self.sock.send(b"kill")
            answer = self.sock.recv(4096) if select.select([self.sock], [], [], _ANSWER_TIMEOUT_S)[0] else b""
        except OSError:
            answer = b""
        except BaseException:  # e.g. KeyboardInterrupt mid-run: where the launcher is, is unknown now
            self.kill()
            raise
        if not answer:
            self.kill()
            raise SandboxFailure("the sandbox's launcher did not answer; the sandbox was killed")
        fields = json.loads(answer)
        if fields["status"] is None:
            self.kill()
            raise SandboxFailure(f"the sandbox's launcher lost its runner (pid {fields['pid']}); sandbox killed")
        return fields["status"], fields["pid"], timed_out

    def empty_folder(self) -> None:
        """Remove what the last solution left (everything in the sandbox is dead by now)."""
        self.folder.chmod(0o700)  # the solution may have locked its own folder
        for entry in self.folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, onerror=make_removable)
            else:
                entry.unlink()

    def kill(self) -> None:
        self.alive = False
        self._finalizer()


def _shut_down(sock: socket.socket, pidfd: int, proc: subprocess.Popen, folder: Path, cgroup: Path | None,
               kill_cgroup: Callable[[Path], None]) -> None:  # fmt: skip
    """Kill the launcher (the namespace's init: the kernel then kills everything in it) and clean up."""
    sock.close()
    _kill_init(pidfd)
    proc.kill()
    proc.wait()
    _remove(folder, cgroup, kill_cgroup)


def _kill_init(pidfd: int) -> None:
    """SIGKILL the namespace's init and wait until it is dead, which the kernel reports only once every
    other process in the namespace is gone too; closes ``pidfd``."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    select.select([pidfd], [], [], _ANSWER_TIMEOUT_S)
    os.close(pidfd)


def _remove(folder: Path, cgroup: Path | None, kill_cgroup: Callable[[Path], None]) -> None:
    if cgroup is not None:
        kill_cgroup(cgroup)
    shutil.rmtree(folder, onerror=make_removable)


def _read_child_pid(info_r: int, err: BinaryIO) -> int:
    """The host pid of the namespace's first process, from bwrap's ``--info-fd`` JSON."""
    data = b""
    deadline = time.monotonic() + 10.0
    while (left := deadline - time.monotonic()) > 0 and select.select([info_r], [], [], left)[0]:
        chunk = os.read(info_r, 4096)
        if not chunk:
            break
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except ValueError:  # not all of it yet
            continue
    err.seek(0)
    message = err.read(2000).decode(errors="replace").strip() or "no message"
    raise SandboxFailure(f"the sandbox could not start: bwrap says {message}")


_local = threading.local()  # a thread's worker dies with the thread (bwrap --die-with-parent)


def worker_for_thread(max_processes: int, make_cgroup: Callable[[int], Path | None],
                      kill_cgroup: Callable[[Path], None]) -> Worker:  # fmt: skip
    worker = getattr(_local, "worker", None)
    if worker is not None and worker.owner != os.getpid():  # a forked copy: the sandbox is the parent's
        worker._finalizer.detach()
        worker = None
    if worker is None or not worker.alive or worker.max_processes != max_processes:
        if worker is not None:
            worker.kill()
        worker = _local.worker = Worker(max_processes, make_cgroup, kill_cgroup)
    return worker


def release_thread_sandbox() -> None:
    """Kill this thread's sandbox now, not when the thread or the process ends (e.g. before ``os._exit``)."""
    worker = getattr(_local, "worker", None)
    if worker is not None and worker.owner == os.getpid():
        worker.kill()
    _local.worker = None
