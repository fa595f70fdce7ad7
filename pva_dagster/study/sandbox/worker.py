"""A long-lived bubblewrap sandbox that starts the solutions of one thread, one at a time.

Making and tearing down the namespaces costs about as much as the solution's own interpreter start (~20 ms,
mostly in the kernel), so each thread keeps one sandbox and only the interpreter is started per solution.
Inside, a trusted launcher (``launcher.py``) is the pid namespace's init: the kernel delivers it no signal
from inside that it has no handler for (SIGKILL and SIGSTOP included), it is not dumpable (no ptrace, no
/proc/1/mem for the solutions, which share its uid), and after each solution it kills every other process
in the namespace, reaps them, removes System V IPC objects (which outlive their processes) and empties the
folder before it answers, so each solution starts in an empty one. Anything unexpected (no answer in time,
a broken message) kills the whole sandbox: a new one is made for the next solution.

What is visible inside (``bwrap_argv``) is a list, not the host minus a list: the system's programs and
libraries (``/usr``, ``/bin``, ``/lib*``), a few files of ``/etc`` that the C library and the standard library
read, and this interpreter's own folders (its prefix, the virtual environment's, the site-packages the
runner adds), wherever they live (``/tmp``, a path with spaces, a home folder), plus the launcher and the
runner files. All of it read-only. Home folders, the project and its data, caches (Hugging Face, pip) and
every other path of the host are simply absent. The writable places are ``FOLDER``, a tmpfs of
``SandboxLimits.disk_mb``, and ``SHM`` (/dev/shm), a small tmpfs of its own.
"""

from __future__ import annotations

import json
import os
import select
import signal
import site
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

from pva_dagster.study.sandbox.containment import SandboxBroken, SandboxFailure, make_memory_cgroup
from pva_dagster.study.sandbox.isolation import RUNNER, SANDBOX_GID, SANDBOX_UID, TRANSPORT

REPORT_FD, JOB_FD = 3, 4  # where the runner finds the report pipe and its job
# For the launcher's cleanup after a solution (a solution may leave a deep or wide tree of files to remove);
# then the sandbox itself is killed.
_ANSWER_TIMEOUT_S = 30.0
_READY_TIMEOUT_S = 30.0  # for the launcher's first word: interpreter start on a loaded machine

# The trusted init of each sandbox (run by path, bound read-only inside).
LAUNCHER = Path(__file__).with_name("launcher.py")
FOLDER = "/pva-sandbox"  # inside only: the solutions' working folder, HOME and TMPDIR
SHM = "/dev/shm"  # POSIX shared memory and semaphores (multiprocessing needs them), a tmpfs of its own
_SHM_BYTES = 16 * 1024 * 1024
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What the dynamic linker, time zones, users, services and mime types need; no keys, no shadow, no ssh.
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd", "group",
        "nsswitch.conf", "hosts", "host.conf", "protocols", "services", "mime.types", "os-release")  # fmt: skip


def python_paths() -> list[str]:
    """This interpreter's folders that a solution run needs, outermost first, none under ``_SYSTEM``: its
    prefix and base prefix (standard library), the executable's real folder, the site-packages."""
    found = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *site.getsitepackages()}
    found |= {os.path.dirname(os.path.realpath(sys.executable))}
    found |= {os.path.realpath(path) for path in found}
    paths = sorted(path for path in found if os.path.isdir(path))
    kept: list[str] = []
    for path in paths:  # sorted: a parent comes before what is under it
        if not any(path == top or path.startswith(top.rstrip("/") + "/") for top in (*_SYSTEM, *kept)):
            kept.append(path)
    return kept


def bwrap_argv(bwrap: str, info_fd: int, block_fd: int, disk_bytes: int) -> list[str]:
    """bwrap's options for one sandbox; the command follows. ``info_fd`` gets the sandbox's host pid as JSON,
    and the sandbox waits for a byte on ``block_fd`` so that the caller can hold that pid safely first."""
    argv = [bwrap, "--unshare-user", "--unshare-all", "--disable-userns", "--die-with-parent", "--cap-drop", "ALL"]
    if os.geteuid() == 0:  # kept root's host uid (the interpreter may live in /root), but not uid 0 inside
        argv += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID)]
    for path in _SYSTEM:  # merged /usr: /bin and /lib are links into it
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for name in _ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in [*python_paths(), str(LAUNCHER), str(RUNNER), str(TRANSPORT)]:
        argv += ["--ro-bind", path, path]
    # bwrap mounts its binds nodev, so /dev/null & co. come from a fresh, then read-only, /dev. /proc is
    # read-only too: as root the run keeps the host's uid 0 (no capabilities), which the kernel lets write
    # /proc/sys and /proc/sysrq-trigger of the whole machine, namespace or not.
    argv += ["--dev", "/dev", "--size", str(min(disk_bytes, _SHM_BYTES)), "--tmpfs", SHM, "--proc", "/proc"]
    argv += ["--size", str(disk_bytes), "--tmpfs", FOLDER, "--chdir", FOLDER]
    # read-only last: the root (where bwrap made the mount points), /dev and /proc (not recursively: FOLDER and
    # /dev/shm, mounts of their own, stay writable)
    argv += ["--remount-ro", "/", "--remount-ro", "/dev", "--remount-ro", "/proc", "--as-pid-1"]
    return argv + ["--info-fd", str(info_fd), "--block-fd", str(block_fd), "--"]


class Worker:
    """One bwrap sandbox and its launcher; ``FOLDER`` (a tmpfs of ``disk_bytes``) and ``SHM`` are the only
    writable places inside. Raises ``SandboxFailure`` with bwrap's own message when the sandbox or its
    launcher cannot start."""

    def __init__(self, bwrap: str, max_processes: int, disk_bytes: int, memory_bytes: int,
                 make_cgroup: Callable[[int, int], Path | None],
                 kill_cgroup: Callable[[Path], None]) -> None:  # fmt: skip
        self.key = (bwrap, max_processes, disk_bytes, memory_bytes)
        self.owner = os.getpid()
        self.alive = False
        self.pidfd = -1
        self.err = tempfile.TemporaryFile()  # bwrap's and the launcher's own messages, for a failure's text
        self.sock, inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        # the processes (+ the launcher) and, where a memory hierarchy allows, the memory of everything inside
        made = (make_cgroup(max_processes + 1, memory_bytes), make_memory_cgroup(memory_bytes))
        cgroups = [c for c in made if c is not None]
        try:
            argv = bwrap_argv(bwrap, info_w, block_r, disk_bytes)
            self.proc = subprocess.Popen(
                [*argv, sys.executable, "-I", "-S", str(LAUNCHER), str(inner.fileno()), FOLDER, SHM],
                cwd="/", env={"PATH": os.defpath, "LANG": "C.UTF-8"}, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self.err, pass_fds=(inner.fileno(), info_w, block_r),
                start_new_session=True,
            )  # fmt: skip
        except BaseException:
            for fd in (info_r, info_w, block_r, block_w):
                os.close(fd)
            inner.close()
            self.sock.close()
            self.err.close()
            _remove(cgroups, kill_cgroup)
            raise
        for fd in (info_w, block_r):
            os.close(fd)
        inner.close()
        try:
            pid = _read_child_pid(info_r, self.err)
            # Held on --block-fd until released: the pid cannot have been recycled, the pidfd names it.
            self.pidfd = os.pidfd_open(pid)
            for cgroup in cgroups:  # before any fork: every process inside counts against the limits
                try:
                    (cgroup / "cgroup.procs").write_text(str(pid))
                except OSError as exc:
                    raise SandboxFailure(f"the sandbox could not start: {pid} not moved into {cgroup}: {exc}") from exc
            os.write(block_w, b"go")
            ready = select.select([self.sock], [], [], _READY_TIMEOUT_S)[0] and self.sock.recv(64)
            if ready != b"ready":
                raise SandboxFailure(f"the sandbox could not start: {self._why_not()}")
        except BaseException:
            # Killing bwrap alone while it starts strands its child (blocked before --die-with-parent
            # applies), so the child goes by its pidfd first.
            if self.pidfd >= 0:
                _kill_init(self.pidfd)
            self.proc.kill()
            self.proc.wait()
            self.sock.close()
            self.err.close()
            _remove(cgroups, kill_cgroup)
            raise
        finally:
            os.close(info_r)
            os.close(block_w)
        self.alive = True
        self._finalizer = weakref.finalize(self, _shut_down, self.sock, self.pidfd, self.proc, self.err, cgroups,
                                           kill_cgroup)  # fmt: skip

    def _why_not(self) -> str:
        """What bwrap or the launcher said on their way out (bwrap exits once its command fails)."""
        try:
            self.proc.wait(timeout=_ANSWER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        self.err.seek(0)
        said = self.err.read(4000).decode(errors="replace").strip() or "no message"
        return (
            f"bwrap exited with {self.proc.returncode}, saying: {said} -- the sandbox shows, read-only, the "
            f"system folders {', '.join(p for p in _SYSTEM if os.path.exists(p))}, this interpreter's folders "
            f"{python_paths()}, {LAUNCHER}, {RUNNER} and {TRANSPORT}; a path it names that is missing from those, or "
            f"that this user cannot read, is the cause"
        )

    def run(self, argv: list[str], env: dict[str, str], files: tuple[BinaryIO, BinaryIO, int, BinaryIO],
            wall_time_s: float) -> tuple[int, int, bool]:  # fmt: skip
        """Run ``argv`` in ``FOLDER`` with ``files`` (stdout, stderr, report pipe, job) as descriptors 1-4,
        until it ends or ``wall_time_s`` passes, then kill all it started and empty the folder.

        Returns (exit status, the runner's pid inside, timed out). Raises ``SandboxBroken`` (and kills the
        sandbox) when the launcher does not answer in time."""
        message = json.dumps({"argv": argv, "env": env, "cwd": FOLDER}).encode()
        out, err, report_w, job = files
        try:
            socket.send_fds(self.sock, [message], [out.fileno(), err.fileno(), report_w, job.fileno()])
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
            why = self._why_not() if self.proc.poll() is not None else "no answer in time"
            self.kill()
            raise SandboxBroken(f"the sandbox's launcher did not answer ({why}); the sandbox was killed")
        fields = json.loads(answer)
        if fields["status"] is None:
            self.kill()
            raise SandboxBroken(f"the sandbox's launcher lost its runner (pid {fields['pid']}); sandbox killed")
        return fields["status"], fields["pid"], timed_out

    def kill(self) -> None:
        self.alive = False
        self._finalizer()


def _shut_down(sock: socket.socket, pidfd: int, proc: subprocess.Popen, err: BinaryIO, cgroups: list[Path],
               kill_cgroup: Callable[[Path], None]) -> None:  # fmt: skip
    """Kill the launcher (the namespace's init: the kernel then kills everything in it) and clean up."""
    sock.close()
    _kill_init(pidfd)
    proc.kill()
    proc.wait()
    err.close()
    _remove(cgroups, kill_cgroup)


def _kill_init(pidfd: int) -> None:
    """SIGKILL the namespace's init and wait until it is dead, which the kernel reports only once every
    other process in the namespace is gone too; closes ``pidfd``."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    select.select([pidfd], [], [], _ANSWER_TIMEOUT_S)
    os.close(pidfd)


def _remove(cgroups: list[Path], kill_cgroup: Callable[[Path], None]) -> None:
    for cgroup in cgroups:
        kill_cgroup(cgroup)


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


def worker_for_thread(
    bwrap: str, max_processes: int, disk_bytes: int, memory_bytes: int, make_cgroup: Callable[[int, int], Path | None],
    kill_cgroup: Callable[[Path], None],
) -> Worker:
    worker = getattr(_local, "worker", None)
    if worker is not None and worker.owner != os.getpid():  # a forked copy: the sandbox is the parent's
        worker._finalizer.detach()
        worker = None
    if worker is None or not worker.alive or worker.key != (bwrap, max_processes, disk_bytes, memory_bytes):
        if worker is not None:
            worker.kill()
        worker = _local.worker = Worker(bwrap, max_processes, disk_bytes, memory_bytes, make_cgroup, kill_cgroup)
    return worker

