"""The bubblewrap sandbox's trusted launcher: the pid namespace's init, run by path as
``python -I -S launcher.py SOCKET_FD FOLDER...`` (``worker.py``). It says ``ready`` once it runs (so a sandbox
that cannot start is told by bwrap's own message, not by a silence later). For each job received on the
socket it starts the runner (``runner.py``) with the job's descriptors as stdout, stderr, report pipe and
job file, waits until it ends or the caller says time is up, kills and reaps every other process of the
namespace, removes its System V IPC objects, empties the keyrings of the sandbox's user (keys outlive their
processes too; the launcher starts with a session keyring of its own, so the host's is out of reach),
empties the FOLDERs (the size-capped tmpfs that are the solutions' only writable places: their folder and
/dev/shm) and answers with the runner's exit status.

Standard library only, and nothing of ``pva_dagster``: it runs under ``-I -S`` inside the sandbox.
"""

import ctypes
import json
import os
import select
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)
REMOVE = {  # IPC_RMID = 0
    "shm": lambda i: libc.shmctl(i, 0, None),
    "sem": lambda i: libc.semctl(i, 0, 0),
    "msg": lambda i: libc.msgctl(i, 0, None),
}


# keyctl(2) has no libc wrapper; its number per architecture (a new one fails the sandbox's start, loudly).
KEYCTL = {"x86_64": 250, "aarch64": 219}[os.uname().machine]
JOIN_SESSION_KEYRING, SETPERM, CLEAR, GET_PERSISTENT = 1, 5, 7, 22
SESSION, USER, USER_SESSION = -3, -4, -5  # KEY_SPEC_* keyrings
ALL_RIGHTS = 0x3F3F0000  # possessor and owner: view, read, write, search, link, setattr


def forget_keys() -> None:
    """Empty every keyring a solution could leave keys in, or fail (the sandbox is then replaced): the
    persistent one too, which outlives sessions. A solution shares our uid and may have taken write permission
    off a keyring it owns, so the rights are given back first (the owner may always do that; the persistent
    keyring is not ours, nor the solution's, to change, and stays writable for its possessors)."""
    persistent = libc.syscall(KEYCTL, GET_PERSISTENT, -1, SESSION)
    for keyring in ([persistent] if persistent > 0 else []) + [SESSION, USER, USER_SESSION]:
        libc.syscall(KEYCTL, SETPERM, keyring, ALL_RIGHTS)
        if libc.syscall(KEYCTL, CLEAR, keyring) < 0:
            raise OSError(ctypes.get_errno(), f"keyring {keyring} could not be emptied")


def remove_ipc() -> None:
    # System V objects outlive their processes: none may reach the next solution (this IPC namespace's only)
    for kind, remove in REMOVE.items():
        with open("/proc/sysvipc/" + kind) as fh:
            for line in list(fh)[1:]:
                remove(int(line.split()[1]))


def clean(runner: int) -> int | None:
    # pid 1 of the namespace: -1 reaches every process in it but this one
    try:
        os.kill(-1, 9)
    except ProcessLookupError:
        pass
    status = None
    while True:
        try:
            pid, raw = os.waitpid(-1, 0)
        except ChildProcessError:
            remove_ipc()
            return status
        if pid == runner:
            status = os.waitstatus_to_exitcode(raw)


def empty(folder: str) -> None:
    """Remove what one solution wrote, so that none of it reaches the next: depth first, one folder at a time
    by relative names (no recursion, no path length or descriptor count to overflow, however deep the tree);
    folders it locked are opened first (same uid as ours). The folder itself gets its mode, times and extended
    attributes reset (it stays: it is the mount point)."""
    os.chdir(folder)
    os.chmod(".", 0o700)
    for name in os.listxattr("."):
        os.removexattr(".", name)
    names: list[str] = []  # the path from ``folder`` down to where we are
    while True:
        down = None
        with os.scandir(".") as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    down = entry.name
                    break
                os.unlink(entry.name)
        if down is not None:
            os.chmod(down, 0o700)
            os.chdir(down)
            names.append(down)
        elif names:
            os.chdir("..")
            os.rmdir(names.pop())
        else:
            break
    os.utime(".", (0, 0))


def serve(sock: socket.socket, folders: list[str]) -> None:
    sock.send(b"ready")
    while True:
        data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 4)
        if not data:
            os._exit(0)
        if data == b"kill":  # crossed the answer for a solution that had just ended
            for fd in fds:
                os.close(fd)
            continue
        job = json.loads(data)
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                os.dup2(fds[0], 1)
                os.dup2(fds[1], 2)
                os.dup2(fds[2], 3)
                os.dup2(fds[3], 4)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.closerange(5, 65536)
                libc.syscall(KEYCTL, JOIN_SESSION_KEYRING, None)  # a session keyring of the run's own
                os.chdir(job["cwd"])
                os.execve(job["argv"][0], job["argv"], job["env"])
            finally:
                os._exit(127)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        select.select([pidfd, sock.fileno()], [], [])  # the runner ended, or the caller says time is up
        os.close(pidfd)
        status = clean(pid)
        forget_keys()
        for folder in folders:
            empty(folder)
        sock.send(json.dumps({"pid": pid, "status": status}).encode())


if __name__ == "__main__":
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0, before anything else: no ptrace, no /proc/1/mem
    if libc.syscall(KEYCTL, JOIN_SESSION_KEYRING, None) < 0:  # a new, anonymous session keyring
        raise OSError(ctypes.get_errno(), "keyctl(JOIN_SESSION_KEYRING) failed")
    serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2:])
